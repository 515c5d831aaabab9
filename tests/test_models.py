"""CIFAR models: output shapes, CAM and scale layers, widths, checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from interpretable import models

WIDTHS = (0.25, 0.5, 1.0)


def _layer_shapes(model, layers, x):
    shapes = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o, k=k: shapes.__setitem__(k, tuple(o.shape)))
        for k, m in enumerate(layers)
    ]
    try:
        model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return [shapes[k] for k in range(len(layers))]


@pytest.mark.parametrize("width", WIDTHS)
def test_resnet18_shapes(width):
    m = models.create("resnet18", num_classes=100, width=width)
    x = torch.randn(2, 3, 32, 32)
    assert m(x).shape == (2, 100)
    layers = models.scale_layers(m)
    assert len(layers) == 5
    shapes = _layer_shapes(m, layers, x)
    assert [s[-1] for s in shapes] == [32, 32, 16, 8, 4]
    c = [round(n * width) for n in (64, 64, 128, 256, 512)]
    assert [s[1] for s in shapes] == c
    assert models.cam_layer(m) is layers[-1]


@pytest.mark.parametrize("width", WIDTHS)
def test_mobilenet_v2_shapes(width):
    m = models.create("mobilenet_v2", num_classes=10, width=width)
    x = torch.randn(2, 3, 32, 32)
    assert m(x).shape == (2, 10)
    layers = models.scale_layers(m)
    assert len(layers) == 5 and all(isinstance(m_, nn.ReLU6) for m_ in layers[:-1])
    # the last one is the final conv-BN-ReLU6 block itself, the module cam_layer returns
    assert layers[-1] is models.cam_layer(m)
    assert isinstance(list(layers[-1].children())[-1], nn.ReLU6)
    shapes = _layer_shapes(m, layers, x)
    assert [s[-1] for s in shapes] == [32, 32, 16, 8, 4]
    cam_shape = _layer_shapes(m, [models.cam_layer(m)], x)[0]
    assert cam_shape[-2:] == (4, 4)
    # every scale layer output is non-negative (SMOE Scale needs it)
    outs = []
    hooks = [
        layer.register_forward_hook(lambda mod, i, o: outs.append(o.min())) for layer in layers
    ]
    m(x)
    for h in hooks:
        h.remove()
    assert all(v >= 0 for v in outs)


def test_layer_names():
    m = models.create("resnet18", width=0.25)
    assert models.layer_names(m, models.scale_layers(m)) == [
        "stem", "layer1", "layer2", "layer3", "layer4"]
    assert models.layer_names(m, m.layer4) == ["layer4"]
    with pytest.raises(ValueError, match=r"layers\[0\].*not a submodule"):
        models.layer_names(m, [nn.ReLU()])


def test_relus_are_distinct_modules():
    # each ReLU module runs once per forward, so hooks on it see one activation
    for arch in models.ARCHITECTURES:
        m = models.create(arch, width=0.25)
        relus = [r for r in m.modules() if isinstance(r, (nn.ReLU, nn.ReLU6))]
        calls: dict[nn.Module, int] = dict.fromkeys(relus, 0)

        def count(mod, inputs, output, calls=calls):
            calls[mod] += 1

        hooks = [r.register_forward_hook(count) for r in relus]
        m(torch.randn(1, 3, 32, 32))
        for h in hooks:
            h.remove()
        assert set(calls.values()) == {1}


def test_bad_arguments():
    with pytest.raises(ValueError, match="arch"):
        models.create("vgg11")
    with pytest.raises(ValueError, match="width"):
        models.create("resnet18", width=0)
    with pytest.raises(ValueError, match="num_classes"):
        models.create("resnet18", num_classes=0)
    with pytest.raises(ValueError, match="cam_layer"):
        models.cam_layer(nn.Sequential(nn.Conv2d(3, 3, 3)))


def test_torchvision_resnet_layers():
    import torchvision

    m = torchvision.models.resnet18(weights=None)
    assert models.cam_layer(m) is m.layer4
    assert models.scale_layers(m)[0] is m.relu


@pytest.mark.parametrize("arch", sorted(models.ARCHITECTURES))
def test_checkpoint_round_trip(tmp_path, arch):
    m = models.create(arch, width=0.25).eval()
    meta = {"arch": arch, "width": 0.25, "accuracy": {"top1": 12.5}, "lam": 7.5e-3}
    path = models.save_checkpoint(tmp_path / "sub" / "m.pt", m, meta)
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temp file left behind
    loaded, meta2 = models.load_checkpoint(path)
    assert meta2["accuracy"] == {"top1": 12.5} and meta2["num_classes"] == 100
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), m(x))
    assert not loaded.training


@pytest.mark.parametrize("arch", sorted(models.ARCHITECTURES))
def test_checkpoint_meta_comes_from_the_model(tmp_path, arch):
    # a width-0.25 model saved without meta used to be recorded as width 1.0 (and then failed
    # to load with a size mismatch): the model carries its own arch, width and classes
    m = models.create(arch, num_classes=10, width=0.25).eval()
    assert models.model_spec(m) == {"arch": arch, "width": 0.25, "num_classes": 10}
    path = models.save_checkpoint(tmp_path / "m.pt", m)
    loaded, meta = models.load_checkpoint(path)
    assert (meta["arch"], meta["width"], meta["num_classes"]) == (arch, 0.25, 10)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), m(x))
    for key, bad in (("width", 0.5), ("arch", "other"), ("num_classes", 100)):
        with pytest.raises(ValueError, match=f"meta\\['{key}'\\].*contradicts"):
            models.save_checkpoint(tmp_path / "bad.pt", m, {key: bad})
    assert not (tmp_path / "bad.pt").exists()


def test_checkpoint_errors(tmp_path):
    m = models.create("resnet18", width=0.25)
    with pytest.raises(ValueError, match="arch"):  # a model not made by create needs meta
        models.save_checkpoint(tmp_path / "x.pt", nn.Sequential(nn.Linear(2, 3)), {})
    path = models.save_checkpoint(tmp_path / "m.pt", m, {"arch": "resnet18", "width": 0.25})
    with pytest.raises(models.CheckpointError, match="does not exist"):
        models.load_checkpoint(tmp_path / "missing.pt")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(models.CheckpointError, match="truncated"):
        models.load_checkpoint(trunc)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(models.CheckpointError, match="save_checkpoint"):
        models.load_checkpoint(other)
    wrong = tmp_path / "wrong.pt"  # a file whose meta does not describe its weights
    state = torch.load(path, weights_only=True)
    state["meta"]["width"] = 0.5
    torch.save(state, wrong)
    with pytest.raises(models.CheckpointError, match="does not match"):
        models.load_checkpoint(wrong)
    # a pickled arbitrary object is refused by weights_only loading
    evil = tmp_path / "evil.pt"
    torch.save({"x": ValueError("not a tensor")}, evil)
    with pytest.raises(models.CheckpointError):
        models.load_checkpoint(evil)
