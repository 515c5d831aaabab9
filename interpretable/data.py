"""Real CIFAR-100: finding it, loading it safely, normalizing and augmenting it.

The data is read from one ``cifar100.npz`` archive (the layout of
``../shared/data/cifar100/README.md``). Where no archive is found, torchvision's
download is used once and converted to the same archive in a user cache folder.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ._io import atomic_open, atomic_write_text

__all__ = [
    "MEAN",
    "STD",
    "CIFAR100",
    "cifar100",
    "find_cifar100",
    "normalize",
    "denormalize",
    "augment_batch",
    "balanced_subset",
    "batches",
    "cache_dir",
]

#: Published per-channel statistics of the CIFAR-100 training set (pixel space [0, 1]).
MEAN = (0.5071, 0.4865, 0.4409)
STD = (0.2673, 0.2564, 0.2762)

FILENAME = "cifar100.npz"
_SIZES = {"train": 50_000, "test": 10_000}
_NUM_CLASSES = 100
_NUM_COARSE = 20
_REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The user cache folder: ``$XDG_CACHE_HOME/interpretable`` (default ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "interpretable"


def _candidates(root: str | os.PathLike | None) -> list[Path]:
    """Where to look, in order: root, $INTERPRETABLE_DATA, ../shared beside the repo, cache."""
    places: list[Path] = []
    if root is not None:
        places.append(Path(root))
    if os.environ.get("INTERPRETABLE_DATA"):
        places.append(Path(os.environ["INTERPRETABLE_DATA"]))
    places.append(_REPO_ROOT.parent / "shared" / "data" / "cifar100")
    places.append(cache_dir() / "cifar100")
    return places


def find_cifar100(root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the path of ``cifar100.npz``, downloading it through torchvision if needed.

    Looks in (a) ``root`` (a folder, or the archive itself), (b) ``$INTERPRETABLE_DATA``,
    (c) ``../shared/data/cifar100/`` next to the repository, (d) the user cache folder.
    If none holds it and ``download`` is true, torchvision downloads CIFAR-100 into the cache
    folder and it is converted once to the archive.

    Raises:
        FileNotFoundError: nothing found and the download was impossible or disabled; the
            message lists every place searched and how to fix it.
    """
    places = _candidates(root)
    for place in places:
        path = place if place.suffix == ".npz" else place / FILENAME
        if path.is_file():
            return path
    if root is not None and Path(root).suffix == ".npz":
        # An explicit file that does not exist is a user error, not a reason to download.
        raise FileNotFoundError(f"root={str(root)!r}: no such file")
    error = None
    if download:
        try:
            return _download(cache_dir() / "cifar100")
        except Exception as exc:  # no network, no torchvision, disk full, ...
            error = exc
    searched = "\n".join(f"  - {p if p.suffix == '.npz' else p / FILENAME}" for p in places)
    why = f"\nThe torchvision download failed: {error!r}" if error else ""
    raise FileNotFoundError(
        f"CIFAR-100 not found. Looked for {FILENAME} in:\n{searched}{why}\n"
        "Fix it in one of these ways:\n"
        "  * pass root='/folder/with/cifar100.npz' (or the file itself),\n"
        "  * set INTERPRETABLE_DATA=/folder/with/cifar100.npz,\n"
        "  * or connect to the internet once: the data is then downloaded through "
        f"torchvision and converted into {cache_dir() / 'cifar100'}."
    )


def _download(folder: Path) -> Path:
    """Download through torchvision (checksummed) and convert to ``cifar100.npz``."""
    import pickle  # only for the official CIFAR batch files, after torchvision's md5 check

    from torchvision.datasets import CIFAR100 as TVCIFAR100

    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split in ("train", "test"):
        tv = TVCIFAR100(str(folder), train=split == "train", download=True)
        batch = folder / tv.base_folder / split
        with open(batch, "rb") as f:
            coarse = pickle.load(f, encoding="latin1")["coarse_labels"]
        arrays[f"x_{split}"] = np.asarray(tv.data, dtype=np.uint8)
        arrays[f"y_{split}"] = np.asarray(tv.targets, dtype=np.int64)
        arrays[f"y_{split}_coarse"] = np.asarray(coarse, dtype=np.int64)
        classes = list(tv.classes)
    path = folder / FILENAME
    _atomic_savez(path, arrays)
    atomic_write_text(folder / "classes.json", json.dumps({"fine_label_names": classes}))
    return path


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


@lru_cache(maxsize=4)
def _load_split(path: str, mtime: float, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load and check one split; cached per file version (mtime is part of the key)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            need = {f"x_{split}", f"y_{split}"}
            if not need <= keys:
                raise ValueError(
                    f"{path}: not a CIFAR-100 archive, missing {sorted(need - keys)} "
                    f"(has {sorted(keys)})"
                )
            x = archive[f"x_{split}"]
            y = archive[f"y_{split}"]
            yc = archive[f"y_{split}_coarse"] if f"y_{split}_coarse" in keys else None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, ValueError) and "not a CIFAR-100 archive" in str(exc):
            raise
        raise ValueError(
            f"{path}: cannot read the archive ({type(exc).__name__}: {exc}). The file is "
            "truncated or corrupt: delete it and download again (or copy a good one)."
        ) from exc
    n = _SIZES[split]
    if x.shape != (n, 32, 32, 3) or x.dtype != np.uint8:
        raise ValueError(
            f"{path}: x_{split} should be uint8 of shape {(n, 32, 32, 3)}, got {x.dtype} {x.shape}"
        )
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"{path}: y_{split} should be integers of shape ({n},), got {y.dtype} {y.shape}"
        )
    if y.min() < 0 or y.max() >= _NUM_CLASSES:
        raise ValueError(f"{path}: y_{split} labels must lie in 0..99, got {y.min()}..{y.max()}")
    if yc is None:
        yc = np.full(n, -1, dtype=np.int64)
    elif yc.shape != (n,) or yc.min() < 0 or yc.max() >= _NUM_COARSE:
        raise ValueError(f"{path}: y_{split}_coarse should hold ({n},) labels in 0..19")
    return x, y.astype(np.int64), yc.astype(np.int64)


def _class_names(npz: Path) -> list[str]:
    for folder in (npz.parent, _REPO_ROOT.parent / "shared" / "data" / "cifar100"):
        f = folder / "classes.json"
        if f.is_file():
            names = json.loads(f.read_text())["fine_label_names"]
            if len(names) == _NUM_CLASSES:
                return list(names)
    return [str(i) for i in range(_NUM_CLASSES)]  # names unknown: use the indices


def _stats(device: torch.device | None = None, dtype: torch.dtype = torch.float32):
    mean = torch.tensor(MEAN, device=device, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device, dtype=dtype).view(1, 3, 1, 1)
    return mean, std


def normalize(x01: torch.Tensor) -> torch.Tensor:
    """Pixel space [0, 1] -> model input: ``(x - MEAN) / STD`` per channel. (B,3,H,W) or (3,H,W)."""
    mean, std = _stats(x01.device, x01.dtype if x01.is_floating_point() else torch.float32)
    out = (x01.float() if not x01.is_floating_point() else x01) - mean
    out = out / std
    return out if x01.dim() == 4 else out[0]


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Model input -> pixel space [0, 1]: ``x * STD + MEAN``. (B,3,H,W) or (3,H,W)."""
    mean, std = _stats(x.device, x.dtype)
    out = x * std + mean
    return out if x.dim() == 4 else out[0]


def augment_batch(
    x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4
) -> torch.Tensor:
    """Standard CIFAR augmentation, batched: random crop with ``pad`` zero padding + h-flip.

    Works on any image batch (B, C, H, W); padding is applied in whatever space ``x`` is in
    (apply it to pixel-space or uint8 images so the padding is black). Random numbers come
    from ``generator`` on the CPU, so a seed gives the same crops on every device.
    """
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)[None]  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)[None]  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_r = rows[:, None, :, None].expand(b, x.shape[1], h, padded.shape[3])
    out = padded.gather(2, idx_r)
    idx_c = cols[:, None, None, :].expand(b, x.shape[1], h, w)
    return out.gather(3, idx_c)


class CIFAR100(Dataset):
    """CIFAR-100 split as a map-style dataset of ``(x (3,32,32) normalized float, label)``.

    Attributes:
        images: uint8 array (N, 32, 32, 3), HWC RGB, shared with the loader's cache.
        targets: int64 array (N,) of fine labels 0..99.
        coarse_targets: int64 array (N,) of superclass labels 0..19 (-1 if unknown).
        classes: the 100 fine class names (index = label).
        path: the archive it came from.
    """

    def __init__(self, split: str, root=None, augment: bool = False, download: bool = True):
        if split not in _SIZES:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.split = split
        self.augment = augment
        self.path = find_cifar100(root, download=download)
        self.images, self.targets, self.coarse_targets = _load_split(
            str(self.path), self.path.stat().st_mtime, split
        )
        self.classes = _class_names(self.path)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[i]).permute(2, 0, 1).float().div_(255)
        if self.augment:
            x = augment_batch(x[None])[0]
        return normalize(x), int(self.targets[i])

    def tensors(self, indices=None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """All (or the selected) images as a normalized float batch (N,3,32,32) and labels (N,)."""
        idx = slice(None) if indices is None else np.asarray(indices)
        x = torch.from_numpy(np.ascontiguousarray(self.images[idx])).to(device)
        x = x.permute(0, 3, 1, 2).float().div_(255)
        return normalize(x), torch.from_numpy(self.targets[idx]).to(device)

    def __repr__(self) -> str:
        return (
            f"CIFAR100(split={self.split!r}, n={len(self)}, augment={self.augment}, "
            f"path={self.path})"
        )


def cifar100(split: str, root=None, augment: bool = False, download: bool = True) -> CIFAR100:
    """Real CIFAR-100 ``split`` ('train' or 'test') as a :class:`CIFAR100` dataset.

    See :func:`find_cifar100` for where the data is looked for. ``augment=True`` applies the
    standard 4-pixel padded random crop and horizontal flip to each item.
    """
    return CIFAR100(split, root=root, augment=augment, download=download)


def _base(dataset) -> tuple[CIFAR100, np.ndarray]:
    """The underlying CIFAR100 and the index array of a (possibly nested) Subset."""
    idx = None
    while isinstance(dataset, Subset):
        sub = np.asarray(dataset.indices)
        idx = sub if idx is None else sub[idx]
        dataset = dataset.dataset
    if not isinstance(dataset, CIFAR100):
        raise TypeError(
            f"dataset must be a CIFAR100 or a Subset of one, got {type(dataset).__name__}"
        )
    return dataset, (np.arange(len(dataset)) if idx is None else idx)


def balanced_subset(dataset, per_class: int, seed: int = 0) -> Subset:
    """A seeded, class-balanced subset: ``per_class`` images of each class, in dataset order.

    Raises:
        ValueError: ``per_class`` is not positive or larger than the smallest class.
    """
    base, idx = _base(dataset)
    labels = base.targets[idx]
    counts = np.bincount(labels, minlength=_NUM_CLASSES)
    present = counts[counts > 0]
    if per_class < 1 or per_class > present.min():
        raise ValueError(f"per_class must lie in 1..{present.min()}, got {per_class}")
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.flatnonzero(counts):
        members = np.flatnonzero(labels == c)
        chosen.append(rng.choice(members, per_class, replace=False))
    keep = np.sort(np.concatenate(chosen))
    return Subset(base, idx[keep].tolist())


def batches(
    dataset,
    batch_size: int,
    shuffle: bool = False,
    augment: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Fast batches of ``(x (B,3,32,32) normalized, y (B,))`` on ``device``.

    Indexes the uint8 array directly and augments whole batches with tensor ops, so there is
    no per-image Python work (much faster than a DataLoader over ``__getitem__`` for 32x32).
    Accepts a :class:`CIFAR100` or a Subset of one.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    base, idx = _base(dataset)
    if shuffle:
        idx = idx[torch.randperm(len(idx), generator=generator).numpy()]
    stop = len(idx) - (len(idx) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        sel = idx[start : start + batch_size]
        x = torch.from_numpy(base.images[sel]).to(device).permute(0, 3, 1, 2).float().div_(255)
        if augment:
            x = augment_batch(x, generator)
        yield normalize(x), torch.from_numpy(base.targets[sel]).to(device)
