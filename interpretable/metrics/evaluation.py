"""Run explanation methods over a dataset and score them: one tidy row per image x method.

The metrics are those of METHODS.md section 5 (see :mod:`interpretable.metrics.core`).
Per batch, the map-independent forward passes (x, its blur, the black image) are shared by all
methods; each method then costs its own explanation plus one masked forward and the
insertion/deletion points. Results can be written (atomically, after every batch) to a CSV,
gzipped CSV or JSON file, and an interrupted run resumes from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..attribution._common import check_model, eval_mode
from . import _results
from ._loading import dataset_length, index_batches, model_device
from .core import (
    DEFAULT_BATCH_SIZE,
    _curves,
    _end_points,
    _pick,
    _Scorer,
    auc,
    check_blur_size,
    check_step,
    confidence_terms,
    mask_input,
    prepare_maps,
)

__all__ = ["evaluate", "COLUMNS", "METRICS"]

#: Columns of the tidy table, in order. ``Y`` = p_c(x), ``O`` = p_c(x masked by the map).
COLUMNS = ("index", "label", "predicted", "target", "method", "Y", "O",
           "ad", "ag", "ai", "insertion", "deletion")
#: The per-image metric columns (percent; see :func:`confidence_scores`).
METRICS = ("ad", "ag", "ai", "insertion", "deletion")

Method = Callable[..., Tensor]


def _bind(name: str, method: Any, model: nn.Module, stack: contextlib.ExitStack):
    """A uniform ``fn(x, target) -> maps`` for each kind of method ``evaluate`` accepts."""
    if not isinstance(name, str):
        raise TypeError(f"methods keys must be str names, got {type(name).__name__}")
    if inspect.isclass(method):  # a CAM class: built once on the model, hooks removed at exit
        obj = method(model)
        if hasattr(obj, "__enter__") and hasattr(obj, "__exit__"):
            obj = stack.enter_context(obj)
        return lambda x, t: obj(x, t)
    if not callable(method):
        raise TypeError(
            f"methods[{name!r}] must be a callable fn(model, x, target) -> maps, a CAM instance "
            f"cam(x, target) -> maps or a CAM class, got {type(method).__name__}"
        )
    if isinstance(getattr(method, "model", None), nn.Module):  # a CAM instance bound to a model
        return lambda x, t: method(x, t)
    return lambda x, t: method(model, x, t)


def _fingerprint(model: nn.Module) -> str:
    """SHA-1 of the model's parameters and buffers, so a resume cannot mix two models."""
    h = hashlib.sha1()
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", copy=True).contiguous().view(-1).view(torch.uint8)
                 .numpy().tobytes())
    return h.hexdigest()


def _select(n_total: int, n_images: int | None, seed: int | None,
            indices: Sequence[int] | None = None) -> list[int]:
    if indices is not None:
        if n_images is not None or seed is not None:
            raise ValueError("give either indices or n_images/seed, not both")
        given = list(indices)
        if not given:
            raise ValueError("indices must not be empty")
        if any(isinstance(i, bool) or not hasattr(i, "__index__") for i in given):
            raise ValueError(f"indices must be ints, got {given[:10]}")
        out = [int(i) for i in given]
        if any(not 0 <= i < n_total for i in out) or len(set(out)) != len(out):
            raise ValueError(f"indices must be distinct dataset indices in [0, {n_total}), "
                             f"got {list(indices)[:10]}...")
        return out
    if n_images is None:
        n_images = n_total
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise ValueError(f"n_images must be a positive int or None, got {n_images!r}")
    if n_images > n_total:
        raise ValueError(f"n_images={n_images} is larger than the dataset ({n_total} images)")
    if seed is None:
        return list(range(n_images))
    g = torch.Generator().manual_seed(int(seed))
    return sorted(torch.randperm(n_total, generator=g)[:n_images].tolist())


def evaluate(
    model: nn.Module,
    dataset,
    methods: Mapping[str, Any],
    n_images: int | None = None,
    batch_size: int = 64,
    *,
    target: str = "label",
    step: int | None = None,
    curves: bool = True,
    curve_batch_size: int = DEFAULT_BATCH_SIZE,
    channels_last: bool = False,
    optimize: bool = True,
    score_model: nn.Module | None = None,
    out: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    seed: int | None = None,
    indices: Sequence[int] | None = None,
    device: torch.device | str | None = None,
    as_frame: bool | None = None,
):
    """Score explanation ``methods`` on ``n_images`` images of ``dataset`` (METHODS.md sec. 5).

    Args:
        model: the classifier; explained and scored in eval mode (flags restored after).
        dataset: map-style dataset of (x (3, H, W) normalized, label); CIFAR-100 and Subsets
            of it load in fast uint8 batches.
        methods: ``{name: method}``, each method one of: a function ``fn(model, x, target)``;
            a CAM instance bound to ``model`` (has a ``.model`` module), called ``cam(x,
            target)``; or a CAM class, built once as ``cls(model)`` and used as a context
            manager if it is one. Each returns maps (B, h, w) or (B, 1, h, w) at any size.
            The methods run with gradients enabled, even if the caller is in ``no_grad``.
        n_images: how many images (default all); the first ``n_images`` in dataset order, or
            a seeded random sample (sorted) if ``seed`` is given.
        batch_size: images per batch (explanations are computed per batch).
        target: ``"label"`` (default; METHODS.md) explains and scores each image's
            ground-truth class, ``"predicted"`` the model's predicted class.
        step: insertion/deletion pixels per step (default W).
        curves: compute insertion/deletion (the costly part); if False those columns are NaN.
        curve_batch_size: images per forward call of the metrics (the memory knob).
        channels_last: feed the metric forwards in channels-last memory format (about 20%
            faster for small CNNs on CPU; not for models that ``.view()`` their input).
        optimize: run the metric forwards through an inference-optimized copy of the
            forward (see :func:`confidence_scores`; 1.3-1.5x faster on CPU).
        score_model: the network the metrics run (default ``model``; the methods always
            explain ``model``). Put in eval mode for the run like ``model``.
        out: optional ``.csv``, ``.csv.gz`` or ``.json`` path; rewritten atomically after
            every batch (cheaply: rows already written are kept encoded, see
            ``_results.ResultWriter``). For CSV the run's settings are kept beside it in
            ``<out>.meta.json``. The rows in the file are in the order returned.
        resume: if ``out`` exists, keep its finished images (those with a row for every
            method) and compute only the rest; the file must come from the same settings
            (methods, target, step, selected images, model weights), else ValueError.
            ``False`` overwrites.
        progress: show a tqdm progress bar over images.
        seed: picks a random subset of ``n_images`` images (see above).
        indices: explicit dataset indices instead of ``n_images``/``seed`` (rows come in
            this order; used to recompute chosen rows of a result file).
        device: where to compute; default the model's device.
        as_frame: return a pandas DataFrame (default when pandas is installed, it comes with
            the ``book`` extra) or, if False, a list of row dicts.

    Returns:
        One row per (image, method), ordered by image then method, with columns
        :data:`COLUMNS`: dataset ``index``, ``label``, ``predicted``, ``target`` (the class
        explained and scored), ``method``, ``Y`` and ``O`` (probabilities), and the per-image
        metric terms in percent ``ad``, ``ag``, ``ai`` (0 or 100), ``insertion``, ``deletion``
        (AUC x100). Means over rows of one method are the reported AD, AG, AI, Ins, Del; see
        :func:`summarize` and :func:`paper_table`.
    """
    check_model(model)
    if not isinstance(methods, Mapping) or not methods:
        raise ValueError("methods must be a non-empty dict {name: method}")
    if target not in ("label", "predicted"):
        raise ValueError(f"target must be 'label' or 'predicted', got {target!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    score_model = model if score_model is None else score_model
    try:
        scorer = _Scorer(score_model, curve_batch_size, channels_last, optimize)
    except ValueError as exc:
        raise ValueError(f"curve_{exc}") from None
    n_total = dataset_length(dataset)
    indices = _select(n_total, n_images, seed, indices)
    device = torch.device(device) if device is not None else model_device(model)
    names = list(methods)

    # The image size fixes the default step; read it from the first item.
    first = dataset[indices[0]][0]
    height, width = int(first.shape[-2]), int(first.shape[-1])
    if curves:
        step = check_step(step, height, width)
        check_blur_size(height, width)
    meta = {
        "format": 1,
        "methods": names,
        "target": target,
        "step": step if curves else None,
        "curves": bool(curves),
        "n_images": len(indices),
        "seed": seed,
        "indices_sha1": hashlib.sha1(",".join(map(str, indices)).encode()).hexdigest(),
        "model": type(model).__name__,
        "weights_sha1": _fingerprint(model),
    }

    rows: list[dict] = []
    if out is not None:
        out = Path(out)
        _results.check_suffix(out)
        if resume and out.exists():
            rows = _results.load(out, expected_meta=meta)
        _results.write_meta(out, meta)
    order = {i: k for k, i in enumerate(indices)}
    rank = {n: k for k, n in enumerate(names)}

    def sort_key(r):
        return order.get(r["index"], math.inf), rank[r["method"]]

    loaded = rows
    rows = sorted(_results.complete_rows(rows, names), key=sort_key)
    done = {r["index"] for r in rows}
    pending = [i for i in indices if i not in done]
    writer = _results.ResultWriter(out, meta, rows) if out is not None else None
    if writer is not None and list(map(id, rows)) != list(map(id, loaded)):
        writer.write()  # rows of unfinished images dropped, or put in order

    from tqdm.auto import tqdm

    bar = tqdm(total=len(indices), initial=len(indices) - len(pending), disable=not progress,
               desc="evaluate", unit="img")
    try:
        with contextlib.ExitStack() as stack, eval_mode(model), eval_mode(score_model):
            bound = {name: _bind(name, m, model, stack) for name, m in methods.items()}
            for chunk, x, y in index_batches(dataset, pending, batch_size, device):
                new = sorted(_score_batch(scorer, bound, chunk, x, y, target, step, curves),
                             key=sort_key)
                rows.extend(new)
                if writer is not None:
                    writer.add(new)
                    writer.write()
                bar.update(len(chunk))
    finally:
        bar.close()
    # finished images first, then the pending ones, each in the selection's order: sorted,
    # unless a resumed file held images out of order (then sort and rewrite it once)
    if any(sort_key(a) > sort_key(b) for a, b in zip(rows, rows[1:], strict=False)):
        rows.sort(key=sort_key)
        if out is not None:
            _results.save(out, rows, meta)
    return _results.as_table(rows, as_frame)


def _score_batch(scorer, bound, chunk, x, y, target, step, curves):
    """All rows of one batch: shared forwards first, then each method's map and metrics."""
    with torch.no_grad():
        logits = scorer.logits(x)
        predicted = logits.argmax(dim=1)
        classes = y if target == "label" else predicted
        y_prob = _pick(logits, classes)
        ends = _end_points(scorer, x, classes) if curves else None
    columns: dict[str, list] = {
        "index": list(chunk), "label": y.tolist(), "predicted": predicted.tolist(),
        "target": classes.tolist(),
    }
    rows = []
    for name, fn in bound.items():
        with torch.enable_grad():
            maps = fn(x, classes)
        try:
            s = prepare_maps(maps, x)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"method {name!r}: {exc}") from exc
        with torch.no_grad():
            o = scorer.probs(mask_input(x, s), classes)
            ad, ag, ai = confidence_terms(y_prob, o)
            values = {"Y": y_prob, "O": o, "ad": ad, "ag": ag, "ai": ai}
            if curves:
                c = _curves(scorer, x, s, classes, step, y_prob, ends)
                values["insertion"] = 100 * auc(c.insertion)
                values["deletion"] = 100 * auc(c.deletion)
            else:
                values["insertion"] = values["deletion"] = torch.full_like(o, math.nan)
        lists = {k: v.double().tolist() for k, v in values.items()}
        for i in range(len(chunk)):
            row = {k: columns[k][i] for k in ("index", "label", "predicted", "target")}
            row["method"] = name
            row.update({k: lists[k][i] for k in COLUMNS[5:]})
            rows.append(row)
    return rows
