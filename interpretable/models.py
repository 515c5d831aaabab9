"""CNNs for 32x32 CIFAR inputs, their CAM and scale layers, and safe checkpoints.

``resnet18``: the CIFAR ResNet-18 (3x3 stem, no max-pool, final map 4x4).
``mobilenet_v2``: MobileNet-V2 with a total stride of 8 (final map 4x4): a stride-1 stem and
an expansion-1 block at 32x32, then the usual stages, the strides moved early so the costly
expansion-6 blocks run at 16x16 and below.

Every ReLU is its own module (no functional ReLU, no module used twice), so hooks can find
and replace them (guided backpropagation, SMOE Scale).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._io import atomic_open

__all__ = [
    "layer_names",
    "ARCHITECTURES",
    "create",
    "cam_layer",
    "scale_layers",
    "save_checkpoint",
    "model_spec",
    "load_checkpoint",
    "CheckpointError",
    "ResNet18",
    "MobileNetV2",
]


def _ch(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection; two separate ReLU modules."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18: stem 32x32, layer1 32x32, layer2 16x16, layer3 8x8, layer4 4x4."""

    arch = "resnet18"

    def __init__(self, num_classes: int = 100, width: float = 1.0):
        super().__init__()
        self.width, self.num_classes = float(width), int(num_classes)  # read by save_checkpoint
        c = [_ch(n, width) for n in (64, 128, 256, 512)]
        self.stem = nn.Sequential(
            nn.Conv2d(3, c[0], 3, 1, 1, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU(inplace=True)
        )
        layers, cin = [], c[0]
        for i, cout in enumerate(c):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class ConvBNReLU6(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """MobileNet-V2 block: 1x1 expand (ReLU6), 3x3 depthwise (ReLU6), 1x1 linear projection."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU6(cin, hidden, 1))
        layers += [
            ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


def _mb_ch(c: float, width: float) -> int:
    """Channels rounded to a multiple of 8, as in MobileNet-V2 (never below 90%)."""
    v = c * width
    new = max(8, int(v + 4) // 8 * 8)
    return new + 8 if new < 0.9 * v else new


class MobileNetV2(nn.Module):
    """MobileNet-V2 for 32x32 inputs, total stride 8 (final map 4x4).

    Config (expansion t, channels c, repeats n, first stride s):
    stem 32 @32x32, (1,16,1,1) @32x32, (6,24,2,2) @16x16, (6,32,3,2) @8x8, (6,64,4,2) @4x4,
    (6,96,3,1), (6,160,3,1), (6,320,1,1), 1x1 conv to 1280 @4x4.
    """

    CONFIG = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 1),
        (6, 320, 1, 1),
    )

    arch = "mobilenet_v2"

    def __init__(self, num_classes: int = 100, width: float = 1.0, last_channels: int = 1280):
        super().__init__()
        if last_channels != 1280:
            raise ValueError("last_channels other than 1280 cannot be saved and rebuilt by "
                             f"load_checkpoint, got {last_channels}")
        self.width, self.num_classes = float(width), int(num_classes)  # read by save_checkpoint
        cin = _mb_ch(32, width)
        features: list[nn.Module] = [ConvBNReLU6(3, cin, 3, 1)]
        for t, c, n, s in self.CONFIG:
            cout = _mb_ch(c, width)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        last = _mb_ch(last_channels, max(1.0, width))
        features.append(ConvBNReLU6(cin, last, 1))
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(last, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))


def _init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": ResNet18,
    "mobilenet_v2": MobileNetV2,
}


def create(arch: str, num_classes: int = 100, width: float = 1.0) -> nn.Module:
    """Build a CIFAR model: ``arch`` in :data:`ARCHITECTURES`, ``width`` scales channels."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {sorted(ARCHITECTURES)}, got {arch!r}")
    if not (isinstance(width, (int, float)) and width > 0):
        raise ValueError(f"width must be a positive number, got {width!r}")
    if not (isinstance(num_classes, int) and num_classes > 0):
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return ARCHITECTURES[arch](num_classes=num_classes, width=float(width))


def cam_layer(model: nn.Module) -> nn.Module:
    """The layer whose output the CAM methods use: the last convolutional block (4x4 map)."""
    if isinstance(model, ResNet18):
        return model.layer4
    if isinstance(model, MobileNetV2):
        return model.features[-1]
    # torchvision classifiers
    for name in ("layer4", "features"):
        if hasattr(model, name):
            mod = getattr(model, name)
            return mod[-1] if name == "features" else mod
    raise ValueError(
        f"cam_layer: no default layer known for {type(model).__name__}; pass the layer explicitly"
    )


def scale_layers(model: nn.Module) -> list[nn.Module]:
    """The five layers that end each spatial scale (METHODS.md section 4, "Layers").

    ResNet-18 (CIFAR or torchvision): stem ReLU, layer1, layer2, layer3, layer4.
    MobileNetV2 (ours): the stem's ReLU6 (32x32), then the last ReLU6 at 32x32, 16x16 and 8x8
    (the expansion ReLU6 of the first block of the next stage: inverted residual blocks end
    with a linear projection, whose output may be negative), and the final 1x1 conv block
    (4x4, conv-BN-ReLU6; the same module as :func:`cam_layer`).
    All are non-negative activations, as SMOE Scale requires.
    """
    if isinstance(model, ResNet18):
        return [model.stem, model.layer1, model.layer2, model.layer3, model.layer4]
    if isinstance(model, MobileNetV2):
        return _mobilenet_scale_layers(model)
    if all(hasattr(model, n) for n in ("relu", "layer1", "layer2", "layer3", "layer4")):
        return [model.relu, model.layer1, model.layer2, model.layer3, model.layer4]
    raise ValueError(
        f"scale_layers: no default known for {type(model).__name__}; pass the layers explicitly"
    )


def _mobilenet_scale_layers(model: MobileNetV2) -> list[nn.Module]:
    relus = [m for m in model.features.modules() if isinstance(m, nn.ReLU6)]
    sizes: dict[nn.Module, int] = {}
    hooks = [
        r.register_forward_hook(lambda m, i, o: sizes.__setitem__(m, o.shape[-1])) for r in relus
    ]
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters())
        with torch.no_grad():
            model.features(torch.zeros(1, 3, 32, 32, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    last_at: dict[int, nn.Module] = {}
    for r in relus:  # module order = execution order in this architecture
        last_at[sizes[r]] = r
    ends = [last_at[s] for s in sorted(last_at, reverse=True)]
    final = model.features[-1]
    if list(final.children())[-1:] == [ends[-1]]:
        # the final block ends in that ReLU6: name the block itself, the module cam_layer
        # returns, so a CAM and the saliency can share one hook and one activation
        ends[-1] = final
    return [relus[0]] + ends


def layer_names(model: nn.Module, layers: list[nn.Module] | nn.Module) -> list[str]:
    """Qualified names (as in ``model.named_modules()``) of ``layers``, e.g. ``"layer4"``.

    Raises ValueError naming the first layer that is not a submodule of ``model``.
    """
    layers = [layers] if isinstance(layers, nn.Module) else list(layers)
    names = {}
    for name, m in model.named_modules():
        names.setdefault(id(m), name or type(model).__name__)
    out = []
    for i, layer in enumerate(layers):
        if id(layer) not in names:
            raise ValueError(f"layers[{i}] ({type(layer).__name__}) is not a submodule of model")
        out.append(names[id(layer)])
    return out


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or not one of ours."""


def model_spec(model: nn.Module) -> dict[str, Any] | None:
    """``{"arch", "width", "num_classes"}`` of a model built by :func:`create`, else None."""
    arch = getattr(model, "arch", None)
    if arch not in ARCHITECTURES or not isinstance(model, ARCHITECTURES[arch]):
        return None
    return {"arch": arch, "width": float(model.width), "num_classes": int(model.num_classes)}


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    meta: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights with ``meta`` atomically (temp file in the folder, then rename).

    A model made by :func:`create` carries its ``arch``, ``width`` and ``num_classes``; they
    are written from the model itself, so ``meta`` is optional and a ``meta`` that names other
    values is a ValueError (it would describe weights it does not hold). For any other model
    ``meta`` must give ``arch`` and ``width``. ``meta`` may add training settings, accuracy,
    ...: anything ``torch.load(weights_only=True)`` can read (numbers, strings, lists, dicts,
    tensors). ``extra`` holds more state (optimizer, RNG) for resuming.
    """
    path = Path(path)
    meta = dict(meta or {})
    spec = model_spec(model)
    if spec is not None:
        for key, value in spec.items():
            if key in meta and meta[key] != value:
                raise ValueError(f"meta[{key!r}] = {meta[key]!r} contradicts the model, whose "
                                 f"{key} is {value!r}; leave it out (it is read from the model)")
        meta.update(spec)
    else:
        missing = [k for k in ("arch", "width") if k not in meta]
        if missing:
            raise ValueError(
                f"meta must contain {missing} for a {type(model).__name__} (not made by "
                "interpretable.models.create) so load_checkpoint can rebuild the model")
        meta.setdefault("num_classes", _num_classes(model))
    state = {
        "format": "interpretable-checkpoint-v1",
        "meta": meta,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if extra:
        state["extra"] = extra
    with atomic_open(path, "wb") as f:
        torch.save(state, f)
    return path


def _num_classes(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else 100


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict[str, Any]:
    """Load the raw checkpoint dict (``weights_only=True``), with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); "
            "the file is truncated, corrupt, or not a checkpoint"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != "interpretable-checkpoint-v1":
        raise CheckpointError(f"checkpoint {str(path)!r} was not written by save_checkpoint")
    return state


def load_checkpoint(
    path: str | os.PathLike, map_location="cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model described in the checkpoint's meta and load its weights.

    Returns ``(model, meta)``; the model is in eval mode on ``map_location``.
    """
    state = read_checkpoint(path, map_location)
    meta = state["meta"]
    try:
        model = create(
            meta["arch"], num_classes=int(meta["num_classes"]), width=float(meta["width"])
        )
        model.load_state_dict(state["state_dict"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not match its metadata: {exc}"
        ) from exc
    return model.to(map_location).eval(), meta
