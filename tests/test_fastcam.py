"""FastCAM (METHODS.md section 4): SMOE Scale and its alternatives, the three normalizations,
the multi-layer combination and the FastCAM product, checked against independent float64
formulas, scipy, and a separately computed Grad-CAM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st
import torch
import torch.nn.functional as F
from torch import nn

import interpretable as itp
from interpretable.attribution import GradCAM, GradCAMPlusPlus
from interpretable.fastcam import (
    NORMS,
    STATISTICS,
    FastCAM,
    channel_max,
    channel_mean,
    channel_std,
    combine_maps,
    gamma_fit,
    gamma_norm,
    gaussian_norm,
    range_norm,
    saliency,
    smoe_scale,
    truncnorm_entropy,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = itp.models.create("resnet18", width=0.125).eval()
    # non-trivial BN statistics, so eval and train mode give different activations
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
    return m


@pytest.fixture(scope="module")
def x():
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def activations(shape=(3, 6, 5, 4), seed=0, zero_frac=0.4):
    """Post-ReLU-like activations with exact zeros and a spread of magnitudes."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(shape, generator=g).exp()
    a[torch.rand(shape, generator=g) < zero_frac] = 0.0
    return a


# ---- channel statistics ------------------------------------------------------------------


def test_smoe_matches_float64_formula():
    a = activations((3, 64, 7, 5))
    x = a.double().numpy() + 1e-7
    m = x.mean(1)
    ref = m * (np.log2(m) - np.log2(x).mean(1))
    out = smoe_scale(a)
    assert out.shape == (3, 7, 5) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref, rtol=2e-5, atol=1e-6)


def test_smoe_in_cache_blocks_matches_float64_formula(monkeypatch):
    import interpretable.attribution.smoe as fastcam

    # blocks of 3 samples (the last one shorter): the block path equals the formula too
    a = activations((8, 16, 6, 5), seed=3)
    monkeypatch.setattr(fastcam, "_BLOCK_BYTES", 3 * a[0].numel() * 4)
    x = a.double().numpy() + 1e-7
    m = x.mean(1)
    ref = m * (np.log2(m) - np.log2(x).mean(1))
    np.testing.assert_allclose(smoe_scale(a).numpy(), ref, rtol=2e-5, atol=1e-6)


def test_smoe_hand_case_and_clipping():
    # channels 1 and 4: arithmetic mean 2.5, geometric mean 2 -> 2.5 * log2(1.25)
    a = torch.tensor([1.0, 4.0]).view(1, 2, 1, 1)
    assert smoe_scale(a).item() == pytest.approx(2.5 * math.log2(1.25), rel=1e-5)
    b = torch.randn(2, 5, 3, 3)
    torch.testing.assert_close(smoe_scale(b), smoe_scale(b.clamp(min=0)))
    # float16 input is computed in float32 (1e-7 does not exist in float16)
    assert torch.isfinite(smoe_scale(a.half())).all()


def test_smoe_is_differentiable_when_asked():
    a = activations((2, 4, 3, 3)).requires_grad_(True)
    smoe_scale(a).sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()


def test_alternative_statistics_match_numpy_and_scipy():
    a = activations((2, 9, 4, 3), seed=3)
    an = a.double().numpy()
    np.testing.assert_allclose(channel_std(a).numpy(), an.std(1, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(channel_mean(a).numpy(), an.mean(1), rtol=1e-5)
    np.testing.assert_allclose(channel_max(a).numpy(), an.max(1), rtol=1e-6)
    # entropy of N(m, s) truncated to [0, inf), from scipy
    m, s = an.mean(1), an.std(1, ddof=1)
    ref = st.truncnorm(a=(0 - m) / s, b=60.0, loc=m, scale=s).entropy()  # b = +inf in effect
    np.testing.assert_allclose(truncnorm_entropy(a).numpy(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fn", [smoe_scale, channel_std, channel_mean, channel_max,
                                truncnorm_entropy])
def test_statistics_never_nan(fn):
    for a in (torch.zeros(2, 8, 3, 3), torch.full((2, 8, 3, 3), 2.5), activations((2, 1, 3, 3))):
        out = fn(a)
        assert out.shape == (2, 3, 3) and torch.isfinite(out).all(), fn.__name__
    assert (smoe_scale(torch.zeros(2, 8, 3, 3)) == 0).all()
    assert (smoe_scale(activations((2, 1, 3, 3))).abs() < 1e-6).all()  # one channel: AM == GM


@pytest.mark.parametrize("bad", [torch.zeros(2, 3, 4), torch.zeros(1, 2, 3, 4, 5)])
def test_statistics_reject_non_4d(bad):
    with pytest.raises(ValueError, match="activations must be 4-D"):
        smoe_scale(bad)


# ---- normalizations ----------------------------------------------------------------------


def maps(seed=0, shape=(3, 6, 7)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) ** 3 * 5.0


def test_gaussian_norm_matches_scipy():
    v = maps()
    flat = v.double().numpy().reshape(3, -1)
    ref = st.norm.cdf(flat, flat.mean(1, keepdims=True), flat.std(1, ddof=1, keepdims=True))
    np.testing.assert_allclose(gaussian_norm(v).numpy().reshape(3, -1), ref, atol=1e-6)


def test_gamma_fit_is_the_maximum_likelihood_fit():
    v = maps(seed=1, shape=(3, 8, 8))
    k, theta = gamma_fit(v)
    for i in range(3):
        y = v[i].double().flatten().numpy()
        y = y - y.min() + 1e-7
        a_ref, _, scale_ref = st.gamma.fit(y, floc=0)
        assert k[i].item() == pytest.approx(a_ref, rel=1e-4)
        assert theta[i].item() == pytest.approx(scale_ref, rel=1e-4)


def test_gamma_norm_matches_scipy_cdf_with_fitted_parameters():
    v = maps(seed=2, shape=(4, 9, 9))
    k, theta = gamma_fit(v)
    out = gamma_norm(v)
    for i in range(4):
        y = v[i].double().numpy()
        y = y - y.min() + 1e-7
        ref = st.gamma.cdf(y, a=k[i].item(), scale=theta[i].item())
        np.testing.assert_allclose(out[i].numpy(), ref, atol=2e-6)


def test_range_norm():
    v = maps()
    out = range_norm(v).reshape(3, -1)
    assert torch.allclose(out.amin(1), torch.zeros(3))
    assert torch.allclose(out.amax(1), torch.ones(3))


@pytest.mark.parametrize("norm", [gaussian_norm, gamma_norm, range_norm])
def test_norms_constant_and_tiny_maps_give_zeros(norm):
    for v in (torch.zeros(2, 4, 4), torch.full((2, 4, 4), 3.0), torch.rand(2, 1, 1)):
        out = norm(v)
        assert torch.isfinite(out).all() and (out == 0).all()
    # a constant map next to a normal one in the same batch
    v = torch.stack([torch.full((5, 5), 2.0), maps(shape=(1, 5, 5))[0]])
    out = norm(v)
    assert (out[0] == 0).all() and out[1].max() > 0.5 and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


def test_norms_are_batched_per_map():
    v = maps(seed=4, shape=(5, 6, 6))
    for norm in (gaussian_norm, gamma_norm, range_norm):
        one_by_one = torch.cat([norm(v[i:i + 1]) for i in range(5)])
        torch.testing.assert_close(norm(v), one_by_one, rtol=1e-5, atol=1e-6)


# ---- combination and saliency ------------------------------------------------------------


@pytest.mark.parametrize("norm_name,norm", [("gamma", gamma_norm), ("gaussian", gaussian_norm),
                                            ("range", range_norm)])
def test_combine_maps_weighted_mean(norm_name, norm):
    # two layers share a size (they are normalized together, each over its own values)
    raw = [maps(seed=i, shape=(2, s, s)) * 10.0 ** i for i, s in enumerate((8, 4, 8, 2))]
    w = [0.5, 0.0, 1.5, 2.0]
    combined, per_layer = combine_maps(raw, (8, 8), w, norm=norm_name)
    assert per_layer.shape == (2, 4, 8, 8)
    for i, r in enumerate(raw):
        ref = F.interpolate(norm(r)[:, None], size=(8, 8), mode="bilinear",
                            align_corners=False)[:, 0]
        torch.testing.assert_close(per_layer[:, i], ref, rtol=1e-5, atol=1e-6)
    ref = (0.5 * per_layer[:, 0] + 1.5 * per_layer[:, 2] + 2.0 * per_layer[:, 3]) / 4.0
    torch.testing.assert_close(combined, ref)


def manual_saliency(model, x, layers, norm, stat):
    """Independent path: capture activations, then compute everything after the forward."""
    acts = []
    handles = [m.register_forward_hook(lambda m, i, o: acts.append(o.detach().clone()))
               for m in layers]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    ups = [F.interpolate(norm(stat(a.clamp(min=0)))[:, None], size=x.shape[-2:],
                         mode="bilinear", align_corners=False)[:, 0] for a in acts]
    return torch.stack(ups, 1)


@pytest.mark.parametrize("norm_name,norm", [("gamma", gamma_norm), ("gaussian", gaussian_norm),
                                            ("range", range_norm)])
def test_saliency_matches_manual_pipeline(model, x, norm_name, norm):
    layers = itp.models.scale_layers(model)
    combined, per_layer = saliency(model, x, norm=norm_name, optimize=False)
    ref = manual_saliency(model, x, layers, norm, smoe_scale)
    assert combined.shape == (4, 32, 32) and per_layer.shape == (4, 5, 32, 32)
    torch.testing.assert_close(per_layer, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(combined, ref.mean(1), rtol=1e-5, atol=1e-5)
    assert combined.min() >= 0 and combined.max() <= 1


def test_saliency_methods_weights_and_batching(model, x):
    w = [0.18, 0.15, 0.37, 0.4, 0.72]
    for method in STATISTICS:
        combined, per_layer = saliency(model, x, weights=w, statistic=method, norm="gaussian",
                                       optimize=False)
        assert torch.isfinite(per_layer).all()
        ref = (per_layer * torch.tensor(w).view(1, 5, 1, 1)).sum(1) / sum(w)
        torch.testing.assert_close(combined, ref)
    # every image is independent of the rest of the batch
    c_all, p_all = saliency(model, x)
    c_two, p_two = saliency(model, x[:2])
    torch.testing.assert_close(c_two, c_all[:2], rtol=1e-4, atol=1e-5)


def test_saliency_on_mobilenet_and_layer_names(model, x):
    m = itp.models.create("mobilenet_v2", width=0.25, num_classes=10).eval()
    combined, per_layer = saliency(m, torch.randn(1, 3, 32, 32))
    assert per_layer.shape == (1, 5, 32, 32) and torch.isfinite(combined).all()
    c1, _ = saliency(model, x[:2], layers=["stem", "layer3"])
    c2, _ = saliency(model, x[:2], layers=[model.stem, model.layer3])
    torch.testing.assert_close(c1, c2)


def test_fastcam_layers_by_name(model, x):
    names = ["stem", "layer1", "layer2", "layer3", "layer4"]
    a = FastCAM(model, layers=names, cam_layer="layer4")
    b = FastCAM(model)
    assert a.layers == itp.models.scale_layers(model) and a.cam.layer is model.layer4
    torch.testing.assert_close(a(x, 1), b(x, 1))
    m = itp.models.create("mobilenet_v2", width=0.25, num_classes=10).eval()
    assert FastCAM(m, cam_layer="features.18").cam.layer is m.features[18]


def test_unknown_layer_names_name_the_argument(model, x):
    with pytest.raises(ValueError, match=r"layers\[1\]='layer9' is not a submodule name of "
                       r"ResNet18; valid names include .*'layer4'"):
        saliency(model, x, layers=["stem", "layer9"])
    with pytest.raises(ValueError, match=r"cam_layer='layer_4' is not a submodule name.*'layer4'"):
        FastCAM(model, cam_layer="layer_4")
    with pytest.raises(ValueError, match=r"layers\[0\]='nope'"):
        FastCAM(model, layers=["nope"])
    with pytest.raises(TypeError, match=r"layers\[0\] must be an nn.Module"):
        FastCAM(model, layers=[3])


def test_no_nan_on_dead_network_and_constant_input(model):
    dead = itp.models.create("resnet18", width=0.125).eval()
    with torch.no_grad():
        for mod in dead.modules():
            if isinstance(mod, nn.Conv2d):
                mod.weight.zero_()
            if isinstance(mod, nn.BatchNorm2d):
                mod.bias.zero_()
    x = torch.randn(2, 3, 32, 32)
    combos = [(n, "smoe") for n in NORMS] + [("gamma", m) for m in STATISTICS if m != "smoe"]
    for norm, method in combos:
        c, p = saliency(dead, x, norm=norm, statistic=method)
        assert torch.isfinite(c).all() and torch.isfinite(p).all(), (norm, method)
        assert (p == 0).all(), (norm, method)  # all-zero activations: nothing salient
    c, p = saliency(model, torch.zeros(2, 3, 32, 32))
    assert torch.isfinite(c).all() and torch.isfinite(p).all()


# ---- hygiene and errors ------------------------------------------------------------------


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def test_saliency_leaves_model_as_found(model, x):
    model.train()
    model.layer2.eval()  # a mixed state must survive
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    try:
        saliency(model, x)
        assert model.training and not model.layer2.training and model.layer1.training
        assert _hooks(model) == 0
        for k, v in model.state_dict().items():  # eval mode: BN statistics untouched
            assert torch.equal(v, stats[k]), k
        assert [p.requires_grad for p in model.parameters()] == flags
        assert all(p.grad is None for p in model.parameters())
        # after an exception inside the forward (wrong number of input channels)
        with pytest.raises(RuntimeError):
            saliency(model, torch.randn(2, 5, 32, 32))
        assert model.training and not model.layer2.training and _hooks(model) == 0
    finally:
        model.eval()


def test_saliency_errors(model, x):
    with pytest.raises(ValueError, match="layers must not be empty"):
        saliency(model, x, layers=[])
    with pytest.raises(ValueError, match="one weight per layer"):
        saliency(model, x, weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="non-negative"):
        saliency(model, x, weights=[1, 1, -1, 1, 1])
    with pytest.raises(ValueError, match="not all be zero"):
        saliency(model, x, weights=[0] * 5)
    with pytest.raises(ValueError, match="4-D activation"):
        saliency(model, x, layers=[model.fc])
    assert _hooks(model) == 0
    with pytest.raises(ValueError, match="not a submodule"):
        saliency(model, x, layers=[nn.ReLU()])
    with pytest.raises(ValueError, match="norm must be one of"):
        saliency(model, x, norm="softmax")
    with pytest.raises(ValueError, match="statistic must be one of"):
        saliency(model, x, statistic="var")
    with pytest.raises(ValueError, match="x must be 4-D"):
        saliency(model, x[0])
    with pytest.raises(ValueError, match="no output during the forward"):
        unused = nn.Conv2d(1, 1, 1)
        model.add_module("unused_probe", unused)
        try:
            saliency(model, x, layers=[unused])
        finally:
            del model.unused_probe


# ---- FastCAM -----------------------------------------------------------------------------


@pytest.mark.parametrize("cam,cls", [("gradcam", GradCAM), ("gradcam++", GradCAMPlusPlus)])
def test_fastcam_is_saliency_times_normalized_cam(model, x, cam, cls):
    combined, _ = saliency(model, x, optimize=False)  # class-agnostic
    for target in (None, torch.tensor([1, 2, 3, 4])):
        maps = FastCAM(model, cam=cam)(x, target)
        ref_cam = cls(model)(x, target, normalize=True)
        assert maps.shape == (4, 32, 32)
        torch.testing.assert_close(maps, combined * ref_cam, rtol=1e-5, atol=1e-6)
        assert maps.min() >= 0 and maps.max() <= 1
    assert _hooks(model) == 0


def test_fastcam_options_context_and_no_grad(model, x):
    w = [1, 0, 0, 0, 2]
    fc = FastCAM(model, weights=w, norm="gaussian", statistic="std", cam_layer=model.layer3)
    with torch.no_grad():
        maps, combined, cam = fc(x, 5, return_parts=True)
    torch.testing.assert_close(combined, saliency(model, x, weights=w, norm="gaussian",
                                                  statistic="std", optimize=False)[0])
    torch.testing.assert_close(cam, GradCAM(model, model.layer3)(x, 5, normalize=True))
    torch.testing.assert_close(maps, combined * cam)
    flat = fc(x, 5, normalize=True).flatten(1)
    assert torch.allclose(flat.amax(1), torch.ones(4))
    with FastCAM(model) as f:
        f(x)
        assert _hooks(model) == 1  # the CAM's layer hook lives inside the block
    assert _hooks(model) == 0
    with pytest.raises(ZeroDivisionError):
        with FastCAM(model):
            raise ZeroDivisionError
    assert _hooks(model) == 0
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="cam must be one of"):
        FastCAM(model, cam="scorecam")
    with pytest.raises(ValueError, match="one weight per layer"):
        FastCAM(model, weights=[1])


def test_fastcam_cleans_up_after_errors_and_works_in_inference_mode(model, x):
    fc = FastCAM(model)
    with pytest.raises(ValueError, match="target"):
        fc(x, 10_000)  # no such class: raised by the CAM once the logits are known
    assert _hooks(model) == 0
    with torch.inference_mode():
        maps = fc(x, 3)
    torch.testing.assert_close(maps, fc(x, 3))
    assert all(p.requires_grad for p in model.parameters())


def _seeded_bn_model(arch, width):
    """A seeded model with non-trivial BN statistics (so the folded forward differs) and an
    input batch (3, 3, 32, 32)."""
    torch.manual_seed(0)
    model = itp.models.create(arch, width=width).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model, torch.randn(3, 3, 32, 32)


@pytest.mark.parametrize("arch,width", [("resnet18", 0.125), ("mobilenet_v2", 0.25)])
def test_fastcam_optimized_forward_hands_back_the_scale_layers(arch, width):
    """From the second call FastCAM runs the CAM's inference-optimized forward, which has no
    hooks inside; the SMOE layers' outputs come back from it and give the same maps."""
    model, x = _seeded_bn_model(arch, width)
    seen = []
    user = model.layer1.register_forward_hook(lambda *a: seen.append(1)) \
        if arch == "resnet18" else None
    fast = FastCAM(model)
    plain = FastCAM(model, optimize=False)
    want = plain(x, 1, return_parts=True)
    for _ in range(3):
        got = fast(x, 1, return_parts=True)
    _, taps = fast.cam(x, 1, with_taps=True)
    assert taps is not None and len(taps) == 5
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=2e-4, rtol=0)
    if user is not None:  # a caller's hook survives the tracing and still fires
        n = len(seen)
        model(x)
        assert len(seen) == n + 1
        user.remove()
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("arch,width", [("resnet18", 0.125), ("mobilenet_v2", 0.25)])
def test_saliency_optimized_forward_equals_hooked_one(arch, width):
    """From the second call (``optimize="auto"``) saliency runs an inference-optimized graph
    up to the last layer that returns the layers' outputs: same maps to float rounding,
    rebuilt when the weights change, no hooks left, the caller's hooks untouched."""
    from interpretable.attribution.fastcam import _SALIENCY_FORWARDS

    model, x = _seeded_bn_model(arch, width)
    want = saliency(model, x, optimize=False)
    saliency(model, x)  # first call: hooked forward
    assert _SALIENCY_FORWARDS[model].value is None
    got = saliency(model, x)  # second call builds and uses the optimized graph
    assert callable(_SALIENCY_FORWARDS[model].value)
    close(got, want)
    with torch.no_grad():  # an in-place weight edit (an optimizer step) is seen
        first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        first_conv.weight.mul_(-1.5)
    close(saliency(model, x, optimize=True), saliency(model, x, optimize=False))
    assert all(not m._forward_hooks for m in model.modules())
    assert not model.training
    if arch == "resnet18":  # last layer not called last: no graph, built once, hooks used
        layers = [model.layer3, model.stem]
        want = saliency(model, x, layers, optimize=False)
        for _ in range(3):
            got = saliency(model, x, layers, optimize=True)
            assert _SALIENCY_FORWARDS[model].value is False
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w)


def close(got, want):
    """Equal up to float rounding as SMOE passes it on: it takes log2 of every activation,
    and one just above zero carries an absolute rounding error (~1e-6, from the cancellation
    before the ReLU) that is large relative to it (seen: 1.34e-5 vs 1.45e-5, a change of
    0.12 in its log2), so with few channels (8 here) a rare pixel moves by ~1e-3."""
    for g, w in zip(got, want, strict=True):
        diff = (g - w).abs()
        assert diff.max() <= 2e-3 and diff.mean() <= 1e-5
        assert (diff > 2e-4).float().mean() <= 1e-3


def test_saliency_cache_does_not_keep_the_model_alive():
    import gc
    import weakref

    from interpretable.attribution.fastcam import _SALIENCY_FORWARDS

    m = itp.models.create("resnet18", width=0.125).eval()
    x = torch.randn(2, 3, 32, 32)
    for _ in range(3):
        saliency(m, x)
    assert callable(_SALIENCY_FORWARDS[m].value)
    gc.collect()  # models of earlier tests leave the cache first, so n counts only the live
    ref, n = weakref.ref(m), len(_SALIENCY_FORWARDS)
    del m
    gc.collect()
    assert ref() is None and len(_SALIENCY_FORWARDS) == n - 1
