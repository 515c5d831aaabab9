"""The regularized objective (METHODS.md section 2) against an independent reference, the
schedules, determinism and SIGKILL-resume equivalence of the training loop."""

from __future__ import annotations

import copy
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
    alignment_from_gradients,
    alignment_loss,
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


def _reference(model: Tiny, x, y, kind="cosine", frozen=True):
    """L_R written out by hand with functional ops; BN statistics as detached constants when
    ``frozen``, else exact autograd through F.batch_norm's batch statistics."""

    def bn(h, mod):
        if frozen:
            mean = h.mean((0, 2, 3)).detach()
            var = h.var((0, 2, 3), unbiased=False).detach()
            return (h - mean[:, None, None]) / torch.sqrt(var[:, None, None] + mod.eps) \
                * mod.weight[:, None, None] + mod.bias[:, None, None]
        return F.batch_norm(h, None, None, mod.weight, mod.bias, training=True, eps=mod.eps)

    def forward(inp, guided):
        relu = _GuidedReLU.apply if guided else F.relu
        h = relu(bn(F.conv2d(inp, model.c1.weight, model.c1.bias, padding=1), model.b1))
        h = relu(bn(F.conv2d(h, model.c2.weight, None, stride=2, padding=1, groups=2),
                    model.b2))
        return F.linear(h.mean((2, 3)), model.fc.weight, model.fc.bias)

    xs = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(forward(xs, False).gather(1, y[:, None]).sum(), xs,
                               create_graph=True)
    xg = x.clone().requires_grad_(True)
    (gg,) = torch.autograd.grad(forward(xg, True).gather(1, y[:, None]).sum(), xg)
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
def test_alignment_loss_matches_reference_value_and_weight_gradient(tiny, kind, bn_stats):
    model, x, y = tiny
    ref_model = copy.deepcopy(model)
    ours = alignment_loss(model, x, y, kind=kind, bn_stats=bn_stats)
    ref = _reference(ref_model, x, y, kind, frozen=bn_stats == "frozen")
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
