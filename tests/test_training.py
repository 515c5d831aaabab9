"""The regularized objective (METHODS.md section 2) against an independent reference, the
schedules, determinism and SIGKILL-resume equivalence of the training loop."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import interpretable as itp
from interpretable.training import (
    TrainConfig,
    accuracy_and_alignment,
    alignment_from_gradients,
    alignment_loss,
    gradient_cosines,
    input_gradients,
    lam_at,
    learning_rate,
    regularized_loss,
)

REPO = Path(__file__).resolve().parent.parent


class Tiny(nn.Module):
    """conv-BN-ReLU, strided grouped conv-BN-ReLU (in place), pool, linear."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1, self.r1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=False)
        self.b2, self.r2 = nn.BatchNorm2d(6), nn.ReLU(inplace=True)
        self.fc = nn.Linear(6, 6)

    def forward(self, x):
        x = self.r1(self.b1(self.c1(x)))
        x = self.r2(self.b2(self.c2(x)))
        return self.fc(x.mean((2, 3)))


class _GuidedReLU(torch.autograd.Function):
    """Independent guided ReLU: grad_in = grad_out * (x > 0) * (grad_out > 0)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x > 0) * (g > 0)


def _reference(model: Tiny, x, y, kind="cosine", frozen=True, gradient_of="logit"):
    """L_R written out by hand with functional ops; in the input gradients BN statistics are
    detached constants when ``frozen``, else exact autograd through F.batch_norm's batch
    statistics. ``gradient_of``: the true-class logit, or the per-sample cross-entropy, whose
    gradient at the logits, softmax(z) - onehot, comes from the true train-mode forward."""

    def bn(h, mod, constant_stats):
        if constant_stats:
            mean = h.mean((0, 2, 3)).detach()
            var = h.var((0, 2, 3), unbiased=False).detach()
            return (h - mean[:, None, None]) / torch.sqrt(var[:, None, None] + mod.eps) \
                * mod.weight[:, None, None] + mod.bias[:, None, None]
        return F.batch_norm(h, None, None, mod.weight, mod.bias, training=True, eps=mod.eps)

    def forward(inp, guided, constant_stats=frozen):
        relu = _GuidedReLU.apply if guided else F.relu
        h = relu(bn(F.conv2d(inp, model.c1.weight, model.c1.bias, padding=1), model.b1,
                    constant_stats))
        h = relu(bn(F.conv2d(h, model.c2.weight, None, stride=2, padding=1, groups=2),
                    model.b2, constant_stats))
        return F.linear(h.mean((2, 3)), model.fc.weight, model.fc.bias)

    z = forward(x, False, constant_stats=False)
    if gradient_of == "logit":
        seed = F.one_hot(y, z.shape[1]).to(z.dtype)
    else:  # d CE / dz = softmax(z) - onehot, a function of the weights too
        seed = z.softmax(1) - F.one_hot(y, z.shape[1]).to(z.dtype)
    xs = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(forward(xs, False), xs, grad_outputs=seed, create_graph=True)
    xg = x.clone().requires_grad_(True)
    (gg,) = torch.autograd.grad(forward(xg, True), xg, grad_outputs=seed.detach())
    a, b = g.flatten(1), gg.flatten(1)
    if kind == "cosine":
        return (1 - F.cosine_similarity(a, b, dim=1, eps=1e-30)).mean()
    d = a / a.norm(dim=1, keepdim=True) - b / b.norm(dim=1, keepdim=True)
    return (d**2 if kind == "mse" else d.abs()).sum(1).mean()


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = Tiny().double().train()
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    return model, x, y


@pytest.mark.parametrize("kind", ["cosine", "mse", "l1"])
@pytest.mark.parametrize("bn_stats", ["frozen", "batch"])
@pytest.mark.parametrize("gradient_of", ["logit", "loss"])
def test_alignment_loss_matches_reference_value_and_weight_gradient(tiny, kind, bn_stats,
                                                                    gradient_of):
    model, x, y = tiny
    ref_model = copy.deepcopy(model)
    ours = alignment_loss(model, x, y, kind=kind, bn_stats=bn_stats, gradient_of=gradient_of)
    ref = _reference(ref_model, x, y, kind, frozen=bn_stats == "frozen",
                     gradient_of=gradient_of)
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)
    params = list(model.parameters())
    g_ours = torch.autograd.grad(ours, params, allow_unused=True)
    g_ref = torch.autograd.grad(ref, list(ref_model.parameters()), allow_unused=True)
    for name, a, b in zip([n for n, _ in model.named_parameters()], g_ours, g_ref, strict=True):
        a = torch.zeros_like(params[0]) if a is None and b is None else a
        if b is None:  # e.g. the last bias: cannot influence an input gradient
            assert a is None or a.abs().max() == 0, name
            continue
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10, msg=name)


def test_second_order_term_reaches_the_weights(tiny):
    model, x, y = tiny
    lr = alignment_loss(model, x, y)
    # L_R depends on the conv weights only through the input gradient: a non-zero weight
    # gradient exists only if the double backward went through.
    gw = torch.autograd.grad(lr, model.c1.weight)[0]
    assert gw.abs().max() > 1e-8
    assert model.c1.weight.grad is None  # only autograd.grad used: nothing accumulated


def test_regularized_loss_is_ce_plus_lambda_align_from_one_forward(tiny):
    model, x, y = tiny
    calls = []
    h = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        loss, parts = regularized_loss(model, x, y, lam=0.3)
    finally:
        h.remove()
    assert len(calls) == 1
    assert set(parts) >= {"ce", "align", "logits"} and parts["logits"].shape == (6, 6)
    torch.testing.assert_close(loss.detach(), parts["ce"] + 0.3 * parts["align"])
    torch.testing.assert_close(parts["align"], _reference(copy.deepcopy(model), x, y).detach())


def test_lambda_zero_is_exactly_the_plain_cross_entropy_update():
    torch.manual_seed(0)
    a = itp.models.create("resnet18", width=0.0625).train()
    b = copy.deepcopy(a)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 100, (8,))
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(2):
        loss, parts = regularized_loss(a, x, y, lam=0.0)
        assert parts["align"] is None
        opt_a.zero_grad()
        loss.backward()
        opt_a.step()
        ref = F.cross_entropy(b(x), y)
        opt_b.zero_grad()
        ref.backward()
        opt_b.step()
        assert torch.equal(loss.detach(), ref.detach())
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), n


def test_reg_fraction_regularizes_the_chosen_subset(tiny):
    model, x, y = tiny
    model.eval()  # eval BN: subset and full-batch forwards give the same logits
    gen = torch.Generator().manual_seed(3)
    loss, parts = regularized_loss(model, x, y, lam=0.5, reg_fraction=0.5, generator=gen)
    sel = torch.randperm(6, generator=torch.Generator().manual_seed(3))[:3]
    expect = alignment_loss(model, x[sel], y[sel])
    torch.testing.assert_close(parts["align"], expect.detach())
    with torch.no_grad():
        torch.testing.assert_close(parts["logits"], model(x))
    torch.testing.assert_close(parts["ce"], F.cross_entropy(parts["logits"], y))
    assert model.training is False


def test_leaves_no_trace_and_works_under_no_grad(tiny):
    model, x, y = tiny
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    with torch.no_grad():
        value = alignment_loss(model, x, y)
    assert torch.isfinite(value)
    assert all(not m._forward_hooks for m in model.modules())
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before
    assert model.training


def test_errors_name_the_argument(tiny):
    model, x, y = tiny
    with pytest.raises(ValueError, match="kind"):
        alignment_loss(model, x, y, kind="dot")
    with pytest.raises(ValueError, match="y must"):
        regularized_loss(model, x, y[:3])
    with pytest.raises(ValueError, match="reg_fraction"):
        regularized_loss(model, x, y, reg_fraction=0.0)
    with pytest.raises(ValueError, match="lam"):
        regularized_loss(model, x, y, lam=-1.0)
    with pytest.raises(ValueError, match="bn_stats"):
        alignment_loss(model, x, y, bn_stats="running")
    for bad in ("logits", "ce", None):
        with pytest.raises(ValueError, match="gradient_of must be one of"):
            alignment_loss(model, x, y, gradient_of=bad)
        with pytest.raises(ValueError, match="gradient_of must be one of"):
            regularized_loss(model, x, y, gradient_of=bad)
        with pytest.raises(ValueError, match="gradient_of must be one of"):
            TrainConfig(gradient_of=bad).validate()


def test_loss_gradients_differ_from_logit_gradients_and_cost_one_forward(tiny):
    model, x, y = tiny
    model.eval()
    calls = []
    h = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        _, g_logit, gg_logit = input_gradients(model, x, y, create_graph=False)
        _, g_loss, gg_loss = input_gradients(model, x, y, create_graph=False,
                                             gradient_of="loss")
    finally:
        h.remove()
    assert len(calls) == 2  # one forward each
    # d CE_i / dx_i = sum_k (p_k - 1[k = y_i]) dz_k / dx_i: check it against the logit
    # gradients of every class, sample by sample (eval mode: samples are independent)
    xs = x.clone().requires_grad_(True)
    z = model(xs)
    p = z.softmax(1).detach()
    w = p - F.one_hot(y, z.shape[1]).to(p.dtype)
    (expect,) = torch.autograd.grad((z * w).sum(), xs)
    torch.testing.assert_close(g_loss, expect)
    assert not torch.allclose(g_loss, g_logit)
    assert not torch.allclose(gg_loss, gg_logit)


def test_alignment_of_identical_or_zero_gradients():
    g = torch.randn(3, 3, 4, 4)
    for kind in ("cosine", "mse", "l1"):
        assert alignment_from_gradients(g, 2 * g, kind).abs() < 1e-6
    assert alignment_from_gradients(torch.zeros_like(g), g).item() == pytest.approx(1.0)


def test_learning_rate_schedules():
    cfg = TrainConfig(epochs=200, lr=0.1, warmup_epochs=1, milestones=[60, 120, 160], gamma=0.2)
    assert learning_rate(cfg, 0, 0, 10) == pytest.approx(0.01)
    assert learning_rate(cfg, 0, 9, 10) == pytest.approx(0.1)
    assert learning_rate(cfg, 59, 5, 10) == pytest.approx(0.1)
    assert learning_rate(cfg, 60, 0, 10) == pytest.approx(0.02)
    assert learning_rate(cfg, 199, 9, 10) == pytest.approx(0.1 * 0.2**3)
    one = TrainConfig(epochs=10, lr=0.2, warmup_epochs=2, schedule="onecycle")
    assert learning_rate(one, 1, 9, 10) == pytest.approx(0.2)
    assert learning_rate(one, 9, 9, 10) == pytest.approx(0.0)
    assert learning_rate(one, 5, 9, 10) == pytest.approx(0.2 * 0.5)
    cos = TrainConfig(epochs=10, lr=0.2, warmup_epochs=0, schedule="cosine")
    assert learning_rate(cos, 9, 9, 10) == pytest.approx(0.0, abs=1e-12)


def test_lambda_warmup_ramps_linearly():
    cfg = TrainConfig(epochs=4, lam=2.0, lam_warmup=2)
    assert lam_at(cfg, 0, 0, 10) == pytest.approx(2.0 / 20)
    assert lam_at(cfg, 0, 9, 10) == pytest.approx(1.0)
    assert lam_at(cfg, 1, 9, 10) == pytest.approx(2.0)
    assert lam_at(cfg, 3, 5, 10) == 2.0
    assert lam_at(TrainConfig(lam=0.3), 0, 0, 10) == 0.3  # no warm-up: constant
    with pytest.raises(ValueError, match="lam_warmup"):
        TrainConfig(epochs=2, lam_warmup=3).validate()


def test_accuracy_and_alignment_against_the_attribution_methods(test_set):
    from interpretable.attribution import gradient, guided_backprop

    torch.manual_seed(0)
    model = itp.models.create("resnet18", width=0.125).eval()
    subset = torch.utils.data.Subset(test_set, list(range(40)))
    out = accuracy_and_alignment(model, subset, "cpu", batch_size=16, align_images=20,
                                 gradient_of=("logit", "loss"))
    x, y = test_set.tensors(list(range(40)))
    with torch.no_grad():
        z = model(x)
    assert out["test_acc"] == pytest.approx(100 * (z.argmax(1) == y).float().mean().item())
    top5 = (z.topk(5, 1).indices == y[:, None]).any(1).float().mean().item()
    assert out["test_top5"] == pytest.approx(100 * top5)
    cos = F.cosine_similarity(gradient(model, x[:20], y[:20]).flatten(1),
                              guided_backprop(model, x[:20], y[:20]).flatten(1), dim=1)
    assert out["align_images"] == 20
    assert out["test_align_logit"] == pytest.approx(1 - cos.mean().item(), abs=1e-5)
    half = 1.959963984540054 * cos.std().item() / 20 ** 0.5
    lo, hi = out["test_align_logit_ci"]
    assert lo < out["test_align_logit"] < hi
    assert hi - lo == pytest.approx(2 * half, rel=0.1)  # t(19) is ~4% wider than the normal
    assert out["test_align_loss"] != out["test_align_logit"]
    single = accuracy_and_alignment(model, subset, "cpu", align_images=20)
    assert single["test_align"] == pytest.approx(out["test_align_logit"], abs=1e-6)
    assert "test_align_loss" not in single and model.training is False
    torch.testing.assert_close(gradient_cosines(x, 2 * x), torch.ones(40))


def test_init_fine_tunes_from_a_checkpoint_and_resumes(tmp_path, monkeypatch):
    from interpretable.cli import main
    from interpretable.training import loop

    torch.manual_seed(1)
    start = itp.models.create("resnet18", width=0.0625)
    init = itp.models.save_checkpoint(tmp_path / "start.pt", start)  # no meta needed
    args = ["train", "--preset", "ci", "--epochs", "2", "--width", "0.0625", "--lam", "0.5",
            "--gradient-of", "loss", "--train-per-class", "2", "--init", str(init),
            "--no-progress"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(args + ["--out", str(tmp_path / "a")]) == 0
        # the same run, interrupted after its first epoch, then resumed by the same command
        real, calls = loop.accuracy_and_alignment, []

        def flaky(*a, **k):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return real(*a, **k)

        monkeypatch.setattr(loop, "accuracy_and_alignment", flaky)
        with pytest.raises(KeyboardInterrupt):
            main(args + ["--out", str(tmp_path / "b")])
        monkeypatch.setattr(loop, "accuracy_and_alignment", real)
        assert (tmp_path / "b" / "last.pt").exists() and not (tmp_path / "b" / "final.pt").exists()
        assert main(args + ["--out", str(tmp_path / "b")]) == 0
    finally:
        torch.set_num_threads(threads)
    a = itp.models.read_checkpoint(tmp_path / "a" / "final.pt")
    b = itp.models.read_checkpoint(tmp_path / "b" / "final.pt")
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert config["init"] == str(init) and config["gradient_of"] == "loss"
    assert summary["init"] == str(init) and summary["gradient_of"] == "loss"
    assert summary["init_sha256"] == hashlib.sha256(init.read_bytes()).hexdigest()
    for key in ("test_align_logit", "test_align_loss", "test_align_ci", "test_top5"):
        assert summary[key] is not None, key
    # the run started from the checkpoint: its weights moved little from those of start.pt,
    # far less than from a fresh model of the same seed
    fresh = itp.models.create("resnet18", width=0.0625).state_dict()
    w = a["state_dict"]["stem.0.weight"].float()
    moved = (w - start.state_dict()["stem.0.weight"]).norm()
    assert moved < 0.5 * (w - fresh["stem.0.weight"]).norm()


def test_init_of_another_architecture_is_one_clear_error(tmp_path, capsys):
    from interpretable.cli import main

    init = itp.models.save_checkpoint(tmp_path / "m.pt", itp.models.create("mobilenet_v2",
                                                                           width=0.25))
    with pytest.raises(SystemExit) as exc:
        main(["train", "--preset", "ci", "--width", "0.0625", "--init", str(init),
              "--out", str(tmp_path / "r"), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a mobilenet_v2 of width 0.25" in err
    with pytest.raises(SystemExit) as exc:
        main(["train", "--preset", "ci", "--init", str(tmp_path / "missing.pt"),
              "--out", str(tmp_path / "r"), "--no-progress"])
    assert exc.value.code == 2 and "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", "--preset", "finetune", "--out", str(tmp_path / "r")])
    assert exc.value.code == 2 and "--init" in capsys.readouterr().err


def _args(out: Path) -> list[str]:
    return ["train", "--preset", "ci", "--epochs", "3", "--width", "0.0625",
            "--train-per-class", "3", "--out", str(out), "--no-progress"]


def test_sigkill_and_resume_give_the_uninterrupted_weights(tmp_path):
    from interpretable.cli import main

    ref = tmp_path / "ref"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the subprocesses below run with one thread too
    try:
        assert main(_args(ref)) == 0
    finally:
        torch.set_num_threads(threads)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "interpretable", *_args(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 200
        while time.time() < deadline and not (run / "last.pt").exists():
            time.sleep(0.02)
        assert (run / "last.pt").exists(), "no checkpoint written"
        time.sleep(0.2)  # into the next epoch
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (run / "final.pt").exists(), "run finished before it was killed"
    done = len((run / "log.jsonl").read_text().splitlines())
    assert 1 <= done < 3
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)
    a = itp.models.read_checkpoint(ref / "final.pt")
    b = itp.models.read_checkpoint(run / "final.pt")
    assert a["meta"]["test_acc"] == b["meta"]["test_acc"]
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    log = [line for line in (run / "log.jsonl").read_text().splitlines() if line]
    assert len(log) == 3
    model, meta = itp.models.load_checkpoint(run / "final.pt")
    assert meta["training"]["lam"] == 7.5e-3 and meta["arch"] == "resnet18"


def test_float16_final_weights_load_back_as_float32(tmp_path):
    # final.pt may hold float16 weights (half the size); load_checkpoint's load_state_dict
    # copies them into the float32 model it builds.
    torch.manual_seed(0)
    model = itp.models.create("mobilenet_v2", width=0.25).eval()
    itp.models.save_checkpoint(tmp_path / "f.pt", copy.deepcopy(model).half(),
                               {"arch": "mobilenet_v2", "width": 0.25, "num_classes": 100,
                                "weights_dtype": "float16"})
    back, meta = itp.models.load_checkpoint(tmp_path / "f.pt")
    assert meta["weights_dtype"] == "float16"
    for (name, p), q in zip(back.state_dict().items(), model.state_dict().values(), strict=True):
        assert p.dtype == q.dtype, name
        if p.is_floating_point():
            assert torch.equal(p, q.half().float()), name
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), rtol=0.05, atol=0.05)
