"""CAM methods (METHODS.md section 3): peers, hand-computed cases, hygiene, errors.

Peers: pytorch-grad-cam (GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM, ScoreCAM) and torchcam
(GradCAM). pytorch-grad-cam returns per-image min-max normalized maps at input size, computed
as ReLU at the layer's resolution, normalize, cv2 bilinear resize (half-pixel centers, as
``align_corners=False``), normalize again; bilinear interpolation is affine-equivariant, so
that equals our ``normalize_maps(upsample(ReLU(map)))`` up to its 1e-7 epsilons: we compare
within 1e-4.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
import torchvision
from _models import randomize_bn
from torch import nn

import interpretable as itp
from interpretable.attribution import (
    BaseCAM,
    GradCAM,
    GradCAMPlusPlus,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
    normalize_maps,
)

GRAD_CAMS = (GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM)
ALL_CAMS = GRAD_CAMS + (ScoreCAM,)




@pytest.fixture(scope="module")
def tv_r18():
    torch.manual_seed(0)
    return randomize_bn(torchvision.models.resnet18(weights=None, num_classes=10))


def _peer(name: str, model, layer, x, target, batch_size=None):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    flags = [(m, m.training) for m in model.modules()]  # pytorch-grad-cam calls model.eval()
    try:
        with getattr(pgc, name)(model, [layer]) as cam:
            if batch_size:
                cam.batch_size = batch_size
            out = cam(x, [ClassifierOutputTarget(int(c)) for c in target])
    finally:
        for m, f in flags:
            m.training = f
    return torch.from_numpy(out)


# -- peers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", GRAD_CAMS)
@pytest.mark.parametrize("layer_name", ["layer4", "layer3", "layer4.0"])
def test_gradient_cams_match_pytorch_grad_cam(r18, images, cls, layer_name):
    layer = r18.get_submodule(layer_name)
    target = torch.tensor([3, 17, 42, 99])
    ours = cls(r18, layer)(images, target, normalize=True)
    theirs = _peer(cls.__name__, r18, layer, images, target)
    assert ours.shape == theirs.shape == (4, 32, 32)
    assert (ours - theirs).abs().max() < 1e-4


@pytest.mark.parametrize("cls", [GradCAM, GradCAMPlusPlus, LayerCAM])
def test_cams_match_peer_on_torchvision_resnet18(tv_r18, cls):
    # BasicBlock calls its one ReLU module twice; 128x128 gives a 4x4 layer4 map
    x = torch.randn(2, 3, 128, 128)
    target = torch.tensor([1, 8])
    ours = cls(tv_r18)(x, target, normalize=True)  # default layer: layer4
    theirs = _peer(cls.__name__, tv_r18, tv_r18.layer4, x, target)
    assert (ours - theirs).abs().max() < 1e-4


def test_gradcam_matches_torchcam(r18, images):
    from torchcam.methods import GradCAM as TorchcamGradCAM

    target = torch.tensor([0, 1, 2, 3])
    with TorchcamGradCAM(r18, r18.layer3) as extractor:
        theirs = extractor(target.tolist(), r18(images))[0]  # normalized, layer resolution
    with GradCAM(r18, r18.layer3) as cam:
        A, G, _ = cam._forward(images, target)
        low = cam._cam(images, A, G, target)
    assert (normalize_maps(low) - theirs).abs().max() < 1e-4


def test_mobilenet_v2_relu6_layer(images):
    torch.manual_seed(0)
    model = randomize_bn(itp.models.create("mobilenet_v2", width=0.25))
    target = torch.tensor([5, 6, 7, 8])
    ours = GradCAM(model)(images, target, normalize=True)
    theirs = _peer("GradCAM", model, itp.models.cam_layer(model), images, target)
    assert (ours - theirs).abs().max() < 1e-4


def test_scorecam_matches_peer_with_its_upsampling(r18, images):
    # pytorch-grad-cam upsamples the masks with UpsamplingBilinear2d (align_corners=True);
    # with the same convention the maps agree.
    target = torch.tensor([3, 17, 42, 99])
    ours = ScoreCAM(r18, r18.layer4, align_corners=True, batch_size=50)(images, target,
                                                                          normalize=True)
    theirs = _peer("ScoreCAM", r18, r18.layer4, images, target, batch_size=128)
    assert (ours - theirs).abs().max() < 1e-4


def test_scorecam_default_upsampling_difference_is_bounded(r18, images):
    """Our convention (align_corners=False, METHODS.md section 3) moves each mask by less than
    half an activation cell; the masks then differ at most by the local slope of the bilinear
    surface, which shrinks as the activation map grows. Measured bounds on an 8x8 map."""
    target = torch.tensor([3, 17, 42, 99])
    ours = ScoreCAM(r18, r18.layer3)(images, target, normalize=True)
    theirs = _peer("ScoreCAM", r18, r18.layer3, images, target, batch_size=128)
    diff = (ours - theirs).abs()
    assert diff.mean() < 0.01 and diff.max() < 0.1
    # and the mask sets themselves differ only in the interpolation grid
    A = torch.rand(1, 2, 8, 8)
    m_false = ScoreCAM(r18).masks(A, (32, 32))
    m_true = ScoreCAM(r18, align_corners=True).masks(A, (32, 32))
    assert (m_false - m_true).abs().max() < 1.0  # not identical, both in [0, 1]
    assert 0 < (m_false - m_true).abs().mean() < 0.1


# -- hand-computed cases -------------------------------------------------------------------
class TinyNet(nn.Module):
    """conv(3->K, 3x3) -> ReLU -> global average pool -> linear: Grad-CAM's textbook case."""

    def __init__(self, k: int = 5, classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, k, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(k, classes)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def test_analytic_gradient_cams_on_tiny_model():
    torch.manual_seed(0)
    net = TinyNet().eval()
    x = torch.randn(3, 3, 6, 6)
    target = torch.tensor([0, 3, 1])
    A = torch.relu(net.conv(x)).detach()  # (3, K, 6, 6)
    hw = 36
    g = net.fc.weight[target].detach() / hw  # dy_c/dA is constant over positions: w_ck / hw
    expected = {
        GradCAM: torch.relu(torch.einsum("bk,bkhw->bhw", g, A)),
        XGradCAM: torch.relu(torch.einsum("bk,bkhw->bhw", g, A)),  # sum(gA)/sum(A) = g
        LayerCAM: torch.relu(torch.einsum("bk,bkhw->bhw", g.clamp(min=0), A)),
    }
    S = A.sum(dim=(2, 3))
    a = g**2 / (2 * g**2 + S * g**3 + 1e-6)
    alpha_pp = torch.where(g != 0, hw * a * g.clamp(min=0), 0)
    expected[GradCAMPlusPlus] = torch.relu(torch.einsum("bk,bkhw->bhw", alpha_pp, A))
    for cls, want in expected.items():
        got = cls(net, net.relu)(x, target)
        assert got.shape == (3, 6, 6)
        assert torch.allclose(got, want, atol=1e-6), cls.__name__


def test_analytic_scorecam_against_loop_reference():
    torch.manual_seed(0)
    net = TinyNet(k=6).eval()
    with torch.no_grad():
        net.conv.bias[:2] = -100.0  # two channels are all zero: constant, mask 0
    x = torch.randn(2, 3, 8, 8)
    target = torch.tensor([2, 1])
    with torch.no_grad():
        A = torch.relu(net.conv(x))
        ref = torch.zeros(2, 8, 8)
        for b in range(2):
            scores = []
            for k in range(6):
                a = A[b, k]
                span = a.max() - a.min()
                m = (a - a.min()) / span if span > 0 else torch.zeros_like(a)
                scores.append(net(x[b:b + 1] * m)[0, target[b]])
            alpha = torch.softmax(torch.stack(scores), 0)
            ref[b] = torch.relu((alpha[:, None, None] * A[b]).sum(0))
    for bs, optimize in ((1, True), (3, False), (64, True)):
        got = ScoreCAM(net, net.relu, batch_size=bs, optimize=optimize)(x, target)
        assert torch.allclose(got, ref, atol=1e-6), bs


def test_scorecam_constant_channels_share_one_forward():
    torch.manual_seed(0)
    net = TinyNet(k=6).eval()
    with torch.no_grad():
        net.conv.bias[:3] = -100.0
    rows = []
    h = net.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    try:
        # the plain forward, so the hook on the model sees every masked batch
        ScoreCAM(net, net.relu, batch_size=4, optimize=False)(torch.randn(2, 3, 8, 8), 0)
    finally:
        h.remove()
    # 1 forward for A, then 2 images x 3 distinct channels + 1 shared all-zero input
    assert rows[0] == 2 and sum(rows[1:]) == 2 * 3 + 1


def test_scorecam_channels_with_equal_normalized_maps_share_one_forward():
    torch.manual_seed(0)
    net = TinyNet(k=6).eval()
    with torch.no_grad():  # channel 1 = 2 x channel 0 and channel 3 = 0.5 x channel 2 after
        net.conv.weight[1] = 2 * net.conv.weight[0]  # the ReLU: equal normalized maps
        net.conv.bias[1] = 2 * net.conv.bias[0]
        net.conv.weight[3] = 0.5 * net.conv.weight[2]
        net.conv.bias[3] = 0.5 * net.conv.bias[2]
    x = torch.randn(3, 3, 8, 8)
    target = torch.tensor([0, 3, 1])
    rows = []
    h = net.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    try:
        got = ScoreCAM(net, net.relu, batch_size=5, optimize=False)(x, target)
    finally:
        h.remove()
    assert rows[0] == 3 and sum(rows[1:]) == 3 * 4  # 6 channels, 4 distinct maps per image
    with torch.no_grad():  # the per-channel loop, every channel its own forward
        A = torch.relu(net.conv(x))
        ref = torch.zeros(3, 8, 8)
        for b in range(3):
            a = A[b].flatten(1)
            m = (a - a.amin(1, keepdim=True)) / (a.amax(1, keepdim=True) - a.amin(1, keepdim=True))
            s = torch.stack([net(x[b:b + 1] * m[k].view(8, 8))[0, target[b]] for k in range(6)])
            ref[b] = torch.relu((torch.softmax(s, 0)[:, None, None] * A[b]).sum(0))
    assert torch.allclose(got, ref, atol=1e-6)


def test_batch_equals_single_images(r18, images):
    # (Score-CAM's batching is checked against a per-image loop on the tiny model below)
    target = torch.tensor([3, 17, 42, 99])
    for cls in GRAD_CAMS:
        cam = cls(r18, r18.layer4)
        batch = cam(images[:2], target[:2])
        single = torch.cat([cam(images[i:i + 1], target[i:i + 1]) for i in range(2)])
        assert torch.allclose(batch, single, atol=1e-5), cls.__name__


def test_target_forms(r18, images):
    cam = GradCAM(r18, optimize=False)  # bit-equal results: one code path
    pred = r18(images).argmax(1)
    assert torch.equal(cam(images, None), cam(images, pred))
    assert torch.equal(cam(images, 7), cam(images, torch.full((4,), 7)))
    assert torch.equal(cam(images, [7, 7, 7, 7]), cam(images, 7))


# -- outputs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL_CAMS)
def test_maps_shape_range_and_normalize(r18, images, cls):
    maps = cls(r18, r18.layer4)(images[:2], 2)
    assert maps.shape == (2, 32, 32) and maps.dtype == images.dtype
    assert (maps >= 0).all() and torch.isfinite(maps).all()
    norm = cls(r18, r18.layer4)(images[:2], 2, normalize=True)
    assert torch.allclose(norm, normalize_maps(maps))
    for m in norm:
        assert m.min() == 0 and (m.max() == 1 or m.max() == 0)


def test_normalize_maps_constant_is_zero():
    m = torch.stack([torch.full((4, 4), 3.0), torch.arange(16.0).view(4, 4)])
    out = normalize_maps(m)
    assert torch.equal(out[0], torch.zeros(4, 4))
    assert out[1].min() == 0 and out[1].max() == 1 and not torch.isnan(out).any()


# -- hygiene ---------------------------------------------------------------------------------
def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def _state(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [p.grad for p in model.parameters()])


@pytest.mark.parametrize("cls", ALL_CAMS)
def test_model_left_as_found(cls):
    net = TinyNet()
    net.train()
    net.pool.eval()  # a mixed state must come back exactly
    net.fc.weight.requires_grad_(False)
    before = _state(net)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    cls(net, net.relu)(x, 1)
    assert _state(net) == before
    assert x.requires_grad and x.grad is None and _hook_count(net) == 0
    assert all(p.grad is None for p in net.parameters())


def test_no_trace_after_exceptions():
    net = TinyNet()
    before = _state(net)
    with pytest.raises(ValueError, match="target"):
        GradCAM(net, net.relu)(torch.randn(2, 3, 6, 6), 10)  # raised after the forward
    with pytest.raises(ValueError, match="layer"):
        GradCAM(net, net.fc)(torch.randn(2, 3, 6, 6), 0)  # raised inside the hook
    assert _state(net) == before and _hook_count(net) == 0 and torch.is_grad_enabled()
    cam = GradCAM(net, net.relu)
    with pytest.raises(RuntimeError, match="inside"):
        with cam:
            assert _hook_count(net) == 1
            raise RuntimeError("inside the block")
    assert _hook_count(net) == 0


def test_context_manager_keeps_hook_and_leaves_other_forwards_alone(r18, images):
    with GradCAM(r18) as cam:
        assert _hook_count(r18) == 1
        a = cam(images, 1)
        b = cam(images, 1)
        with torch.no_grad():
            out = r18(images)  # the user's own forward inside the block
        assert not out.requires_grad
        assert _hook_count(r18) == 1
    assert torch.allclose(a, b, atol=1e-5 * a.max()) and _hook_count(r18) == 0


@pytest.mark.parametrize("cls", ALL_CAMS)
def test_caller_in_no_grad_or_inference_mode(r18, images, cls):
    cam = cls(r18, r18.layer4)
    x = images[:1]
    ref = cam(x, 5)
    with torch.no_grad():
        assert torch.allclose(cam(x, 5), ref, atol=1e-6)
        assert not torch.is_grad_enabled()
    with torch.inference_mode():
        assert torch.allclose(cam(x.clone(), 5), ref, atol=1e-6)


def test_inplace_activation_after_layer():
    # the hooked conv's output is changed in place by ReLU(inplace=True) right after it
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    x = torch.randn(2, 3, 5, 5)
    got_sc = ScoreCAM(net, net[0])(x, 0)
    got = GradCAM(net, net[0])(x, 0)
    A = net[0](x).detach()  # pre-ReLU, may be negative
    G = (net[4].weight[0] / 25)[None, :, None, None] * (A > 0)
    want = torch.relu((G.mean((2, 3))[:, :, None, None] * A).sum(1))
    assert torch.allclose(got, want, atol=1e-6)
    assert got_sc.shape == (2, 5, 5)


def test_no_memory_growth():
    net = TinyNet().eval()
    x = torch.randn(2, 3, 6, 6)
    cams = [cls(net, net.relu) for cls in ALL_CAMS]

    def tensors():
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))

    for cam in cams:  # the second call builds the cached optimized forward (optimize="auto")
        cam(x)
        cam(x)
    start = tensors()
    for _ in range(30):
        for cam in cams:
            cam(x, 1)
    assert tensors() <= start
    assert all(cam._capture is None for cam in cams)


# -- errors ----------------------------------------------------------------------------------
def test_errors_name_the_argument():
    net = TinyNet()
    cam = GradCAM(net, net.relu)
    with pytest.raises(ValueError, match="x must be 4-D"):
        cam(torch.randn(3, 6, 6))
    with pytest.raises(TypeError, match="x must"):
        cam(np.zeros((1, 3, 6, 6)))
    with pytest.raises(TypeError, match="x must be a floating"):
        cam(torch.zeros(1, 3, 6, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="target must have one class per image"):
        cam(torch.randn(2, 3, 6, 6), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"target must be in \[0, 4\)"):
        cam(torch.randn(2, 3, 6, 6), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="target must be a non-negative"):
        cam(torch.randn(2, 3, 6, 6), -1)
    with pytest.raises(TypeError, match="target must hold integer"):
        cam(torch.randn(2, 3, 6, 6), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="layer .* is not a submodule"):
        GradCAM(net, nn.ReLU())
    with pytest.raises(TypeError, match="layer must be an nn.Module of model or its dotted"):
        GradCAM(net, 3)
    with pytest.raises(TypeError, match="model must be"):
        GradCAM(lambda x: x, net.relu)
    with pytest.raises(ValueError, match="layer 'fc' gives .*4-D activation"):
        GradCAM(net, net.fc)(torch.randn(1, 3, 6, 6))
    with pytest.raises(ValueError, match="batch_size"):
        ScoreCAM(net, net.relu, batch_size=0)


# -- layers given by name (as torchcam takes them) ------------------------------------------
@pytest.mark.parametrize("cls", ALL_CAMS)
def test_layer_by_dotted_name_equals_the_module(r18, images, cls):
    target = torch.tensor([1, 2, 3, 4])
    for name in ("layer4", "layer3.1.relu2"):
        by_name = cls(r18, name, optimize=False)
        assert by_name.layer is r18.get_submodule(name) and by_name.layer_name == name
        by_module = cls(r18, r18.get_submodule(name), optimize=False)
        torch.testing.assert_close(by_name(images[:2], target[:2]),
                                   by_module(images[:2], target[:2]),
                                   rtol=0, atol=0)


def test_mobilenet_layer_by_index_name():
    m = itp.models.create("mobilenet_v2", width=0.25, num_classes=10).eval()
    cam = GradCAM(m, "features.18")
    assert cam.layer is m.features[18] and cam.layer is itp.models.cam_layer(m)
    assert cam(torch.randn(2, 3, 32, 32), 1).shape == (2, 32, 32)


@pytest.mark.parametrize("cls", ALL_CAMS)
def test_unknown_layer_name_lists_valid_names(r18, cls):
    with pytest.raises(ValueError, match=r"layer='layer5' is not a submodule name of ResNet18; "
                       r"valid names include 'layer4'.*'stem'") as exc:
        cls(r18, "layer5")
    assert len(str(exc.value).splitlines()) == 1
    with pytest.raises(ValueError, match=r"layer='layer4\.9' .*'layer4\.0'"):
        cls(r18, "layer4.9")
    with pytest.raises(ValueError, match="layer='layer4.0.conv1.weight' is not a submodule"):
        cls(r18, "layer4.0.conv1.weight")  # a parameter, not a module


def test_base_cam_is_the_shared_mechanism():
    assert all(issubclass(c, BaseCAM) for c in ALL_CAMS)
    net = TinyNet()
    assert "relu" in repr(GradCAM(net, net.relu))
    # the default layer comes from interpretable.models.cam_layer
    r = itp.models.create("resnet18", width=0.125)
    assert GradCAM(r).layer is r.layer4


# -- Score-CAM's inference-optimized forward -----------------------------------------------
def _inference_models():
    torch.manual_seed(0)
    return [
        (randomize_bn(itp.models.create("resnet18", width=0.25)), 32),
        (randomize_bn(itp.models.create("mobilenet_v2", width=0.25)), 32),
        (randomize_bn(torchvision.models.resnet18(weights=None, num_classes=10)), 64),
    ]


def test_inference_forward_equals_model_and_leaves_it_alone():
    from interpretable.inference import _fold, _trace, inference_forward

    for model, size in _inference_models():
        x = torch.randn(3, 3, size, size)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        calls = []
        relu = next(m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6)))
        handle = relu.register_forward_hook(lambda m, i, o, calls=calls: calls.append(1))
        try:
            with torch.no_grad():
                ref = model(x)
                calls.clear()
                fast, fmt = inference_forward(model, x.device, torch.channels_last)
                folded = _fold(_trace(model), torch.channels_last)  # the non-oneDNN path
                for fn, f in ((fast, fmt), (folded, torch.channels_last)):
                    out = fn(x.contiguous(memory_format=f))
                    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()
        finally:
            handle.remove()
        assert calls == []  # the model's own hooks do not fire in the optimized forward
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
        assert _hook_count(model) == 0


def test_inference_forward_falls_back_for_untraceable_models():
    from interpretable.inference import inference_forward

    class Branchy(TinyNet):
        def forward(self, x):
            return super().forward(x) if x.sum() > 0 else super().forward(-x)

    net = Branchy().eval()
    fast, _ = inference_forward(net, torch.device("cpu"))
    assert fast is net
    x = torch.randn(2, 3, 6, 6)
    assert torch.allclose(ScoreCAM(net, net.relu)(x, 1),
                          ScoreCAM(net, net.relu, optimize=False)(x, 1), atol=1e-6)
    cam = GradCAM(net, net.relu, optimize=True)  # tried once, then the hooks every call
    for _ in range(2):
        assert torch.allclose(cam(x, 1), GradCAM(net, net.relu, optimize=False)(x, 1))
        assert cam._split.value is False


def test_scorecam_optimized_forward_follows_weight_changes(r18, images):
    model = copy_model(r18)
    cam = ScoreCAM(model, model.layer4, batch_size=256, optimize=True)
    x = images[:1]
    cam(x, 1)  # builds the optimized forward
    with torch.no_grad():
        model.layer4[1].conv2.weight.mul_(-1.5)  # in place, like an optimizer step
        model.layer3[0].bn1.running_var.add_(1.0)
    got = cam(x, 1)
    want = ScoreCAM(model, model.layer4, optimize=False)(x, 1)
    assert torch.allclose(got, want, atol=1e-4 * want.abs().max())


def copy_model(model):
    import copy

    return copy.deepcopy(model)


@pytest.mark.parametrize("arch, layer_name, size", [
    ("resnet18", "layer4", 32), ("resnet18", "layer3.1.relu2", 32),
    ("mobilenet_v2", "features.6", 32), ("tv_resnet18", "layer2.0.relu", 64)])
def test_gradient_cams_optimized_forward_equals_hook_path(arch, layer_name, size):
    torch.manual_seed(0)
    model = (torchvision.models.resnet18(weights=None, num_classes=10) if arch == "tv_resnet18"
             else itp.models.create(arch, width=0.25))
    model = randomize_bn(model)
    layer = model.get_submodule(layer_name)  # tv layer2.0.relu runs twice: the last call
    x = torch.randn(2, 3, size, size)
    target = torch.tensor([1, 2])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for cls in GRAD_CAMS:
        fast = cls(model, layer, optimize=True)
        with fast:
            A_fast, G_fast, _ = fast._forward(x, target)
        assert isinstance(fast._split.value, tuple)  # the cut model was used
        slow = cls(model, layer, optimize=False)
        with slow:
            A, G, _ = slow._forward(x, target)
        # the activations agree to float rounding ...
        assert (A_fast - A).abs().max() <= 1e-5 * A.abs().max()
        # ... but G = dy/dA is piecewise constant in A (every later ReLU's mask): a 1e-6
        # difference can flip a unit whose input is ~0 and move G by ~1e-3 relative (seen
        # with torchvision's layer2.0.relu), as any change of summation order would.
        assert (G_fast - G).abs().max() <= 1e-2 * G.abs().max()
        got, want = fast(x, target), slow(x, target)
        assert (got - want).abs().max() <= 1e-2 * want.abs().max() + 1e-7, cls.__name__
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert _hook_count(model) == 0 and all(p.grad is None for p in model.parameters())


def test_optimize_auto_builds_on_second_call_and_follows_weights(r18, images):
    model = copy_model(r18)
    cam = GradCAM(model, model.layer3)
    x = images[:2]
    cam(x, 1)
    assert cam._split.value is None  # a one-off call does not pay for the build
    cam(x, 1)
    assert isinstance(cam._split.value, tuple)
    with torch.no_grad():
        model.layer4[0].conv1.weight.mul_(-1.0)
        model.layer2[0].bn2.running_mean.add_(0.5)
    got = cam(x, 1)
    want = GradCAM(model, model.layer3, optimize=False)(x, 1)
    assert torch.allclose(got, want, atol=1e-4 * want.abs().max())
    with pytest.raises(ValueError, match="optimize"):
        GradCAM(model, optimize="yes")


def test_split_traces_through_container_layers():
    """The cut layer and the taps are traced through, not kept as opaque calls: their convs
    and BatchNorms are in the graph, where the inference passes can fold and pack them."""
    from interpretable.inference import split_at_layer

    model = itp.models.create("resnet18", width=0.125).eval()
    pre, post = split_at_layer(model, model.layer4, [model.stem, model.layer2])
    called = {n.target for n in pre.graph.nodes if n.op == "call_module"}
    assert not called & {"layer4", "stem", "layer2"}
    assert "layer4.1.conv2" in called and "layer2.0.bn1" in called
    x = torch.randn(2, 3, 32, 32)
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o))
             for k, m in (("A", model.layer4), ("stem", model.stem), ("l2", model.layer2))]
    try:
        with torch.no_grad():
            ref = model(x)
            A, *rest = pre(x)
            logits = post(A, *rest[:len(rest) - 2])
    finally:
        for h in hooks:
            h.remove()
    assert torch.allclose(A, seen["A"]) and torch.allclose(logits, ref, atol=1e-6)
    assert torch.allclose(rest[-2], seen["stem"]) and torch.allclose(rest[-1], seen["l2"])

    class PairOut(nn.Module):  # a layer whose output is not one tensor: no cut, no error
        def forward(self, x):
            return x, x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair = PairOut()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(self.pair(x)[0]).mean((2, 3))

    net = Net()
    assert split_at_layer(net, net.pair) is None
