"""Run explanation methods over a dataset and score them: one tidy row per image x method.

The metrics are those of METHODS.md section 5 (:mod:`.confidence`, :mod:`.curves`). Per
batch, the map-independent forward passes (x, its blur, a constant deletion substrate) are
shared by all methods; each method then costs its own explanation plus one masked forward and
the insertion/deletion points. Results can be written (atomically, after every batch) to a
CSV, gzipped CSV or JSON file, and an interrupted run resumes from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_model, eval_mode
from ..inference import weights_key
from . import _results
from ._loading import dataset_length, index_batches, model_device
from .confidence import confidence_terms
from .curves import _curves, _end_points, curve_settings
from .definitions import COLUMNS, Conventions, conventions_name
from .scoring import (
    DEFAULT_BATCH_SIZE,
    _pick,
    _Scorer,
    auc,
    check_batch_size,
    mask_input,
    prepare_maps,
)

__all__ = ["evaluate", "Evaluation"]

Method = Callable[..., Tensor]


@dataclass
class Evaluation:
    """What :func:`evaluate` did (``return_meta=True``): ``table`` (what it returns by
    default), ``meta`` (the settings the result file holds and a resume must match: methods,
    target, step and conventions, images, weights fingerprint, ...) and ``images_computed``
    (images scored by this call; the others came from the file)."""

    table: Any
    meta: dict[str, Any]
    images_computed: int


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
    if isinstance(getattr(method, "model", None), nn.Module):  # a method bound to a model
        return lambda x, t: method(x, t)
    return lambda x, t: method(model, x, t)


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fingerprint(model: nn.Module) -> str:
    """SHA-1 of the model's parameters and buffers, so a resume cannot mix two models.

    Computed once per state of the weights (kept while :func:`interpretable.inference.
    weights_key` stays the same), so checking a model and then evaluating it hashes once.
    """
    key = weights_key(model)
    cached = _FINGERPRINTS.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    h = hashlib.sha1()
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", copy=True).contiguous().view(-1).view(torch.uint8)
                 .numpy().tobytes())
    _FINGERPRINTS[model] = (key, h.hexdigest())
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
    conventions: str | Conventions = "ours",
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
    return_meta: bool = False,
):
    """Score explanation ``methods`` on ``n_images`` images of ``dataset`` (METHODS.md sec. 5).

    Args:
        model: the classifier; explained and scored in eval mode (flags restored after).
        dataset: map-style dataset of (x (3, H, W) normalized, label); CIFAR-100 and Subsets
            of it load in fast uint8 batches.
        methods: ``{name: method}``, each method one of: a function ``fn(model, x, target)``;
            an object bound to ``model`` (has a ``.model`` module, e.g. a CAM instance or
            :func:`interpretable.attribution.build_method`'s result), called ``m(x,
            target)``; or a CAM class, built once as ``cls(model)`` and used as a context
            manager if it is one. Each returns maps (B, h, w) or (B, 1, h, w) at any size.
            The methods run with gradients enabled, even if the caller is in ``no_grad``.
        n_images: how many images (default all); the first ``n_images`` in dataset order, or
            a seeded random sample (sorted) if ``seed`` is given.
        batch_size: images per batch (explanations are computed per batch).
        target: ``"label"`` (default; METHODS.md) explains and scores each image's
            ground-truth class, ``"predicted"`` the model's predicted class.
        step, conventions: how the insertion/deletion curves are built: a name of
            :data:`~interpretable.metrics.CONVENTIONS` (default ``"ours"``: black deletion,
            blur 11 / sigma 5, step W; ``"authors"``: mean-colour deletion, blur 5 / sigma 5,
            step 8 W) or a :class:`~interpretable.metrics.Conventions`
            (:func:`~interpretable.metrics.resolve_conventions` builds one with overrides).
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
            ``_results.ResultWriter``). The run's settings (:attr:`Evaluation.meta`) are the
            file's header: inside a JSON file, ``<out>.meta.json`` beside a CSV one. The rows
            in the file are in the order returned.
        resume: if ``out`` exists, keep its finished images (those with a row for every
            method) and compute only the rest; the file must come from the same settings
            (methods, target, step and conventions, selected images, model weights), else
            ValueError. ``False`` overwrites.
        progress: show a tqdm progress bar over images.
        seed: picks a random subset of ``n_images`` images (see above).
        indices: explicit dataset indices instead of ``n_images``/``seed`` (rows come in
            this order; used to recompute chosen rows of a result file).
        device: where to compute; default the model's device.
        as_frame: return a pandas DataFrame (default when pandas is installed, it comes with
            the ``book`` extra) or, if False, a list of row dicts.
        return_meta: return an :class:`Evaluation` (table, settings, images computed by this
            call) instead of the table alone.

    Returns:
        One row per (image, method), ordered by image then method, with columns
        :data:`COLUMNS`: dataset ``index``, ``label``, ``predicted``, ``target`` (the class
        explained and scored), ``method``, ``Y`` and ``O`` (probabilities), and the per-image
        metric terms in percent ``ad``, ``ag``, ``ai`` (0 or 100), ``insertion``, ``deletion``
        (AUC x100). Means over rows of one method are the reported AD, AG, AI, Ins, Del; see
        :func:`interpretable.tables.summarize` and :func:`interpretable.tables.paper_table`.
    """
    check_model(model)
    score_model = model if score_model is None else check_model(score_model)
    if not isinstance(methods, Mapping) or not methods:
        raise ValueError("methods must be a non-empty dict {name: method}")
    if target not in ("label", "predicted"):
        raise ValueError(f"target must be 'label' or 'predicted', got {target!r}")
    check_batch_size(batch_size)
    scorer = _Scorer(score_model, check_batch_size(curve_batch_size, "curve_batch_size"),
                     channels_last, optimize)
    n_total = dataset_length(dataset)
    indices = _select(n_total, n_images, seed, indices)
    device = torch.device(device) if device is not None else model_device(model)
    names = list(methods)

    # The image size fixes the default step; read it from the first item.
    first = dataset[indices[0]][0]
    height, width = int(first.shape[-2]), int(first.shape[-1])
    conv = None
    if curves:
        conv, step = curve_settings(conventions, step, height, width)
    meta = {
        "format": 1,
        "methods": names,
        "target": target,
        "step": step if curves else None,
        "curves": bool(curves),
        "conventions": conventions_name(conv, step, width) if curves else None,
        "substrate": conv.substrate if curves else None,
        "blur_kernel": conv.blur_kernel if curves else None,
        "blur_sigma": conv.blur_sigma if curves else None,
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
                new = sorted(_score_batch(scorer, bound, chunk, x, y, target, step, conv),
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
    table = _results.as_table(rows, as_frame)
    return Evaluation(table, meta, len(pending)) if return_meta else table


def _score_batch(scorer, bound, chunk, x, y, target, step, conv):
    """All rows of one batch: shared forwards first, then each method's map and metrics
    (``conv`` None: no insertion/deletion)."""
    with torch.no_grad():
        logits = scorer.logits(x)
        predicted = logits.argmax(dim=1)
        classes = y if target == "label" else predicted
        y_prob = _pick(logits, classes)
        ends = _end_points(scorer, x, classes, conv) if conv is not None else None
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
            if ends is not None:
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
