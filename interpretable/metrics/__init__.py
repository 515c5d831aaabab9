"""Metrics of explanations and models (METHODS.md section 5).

What the metrics are (no torch needed to read it): :data:`METRICS` (the one metric table:
column, paper name, better direction), :data:`COLUMNS` (of a result table),
:data:`CONVENTIONS` (insertion/deletion conventions: ``"ours"``, ``"authors"``).

Computing them, per batch: :func:`confidence_scores` (per-image Average Drop / Gain /
Increase terms), :func:`insertion_deletion` (per-image AUCs, optionally the curves),
:func:`accuracy` (top-k). Over a dataset: :func:`evaluate` (tidy table, one row per image x
method, resumable result files). For a trained run (what ``python -m interpretable
evaluate`` does): :func:`evaluate_run` (test-set rows plus a provenance record),
:func:`read_results`; :func:`verify_results` recomputes a seeded sample of a result file from
the weights. Summaries and comparisons of result tables: :mod:`interpretable.tables`.

Modules, one job each: ``definitions`` (the tables above), ``scoring`` (saliency, masking,
substrates, AUC, chunked forwards), ``confidence`` (AD/AG/AI), ``curves``
(insertion/deletion), ``classification`` (accuracy), ``evaluation`` (the dataset loop),
``runs`` (result files and provenance), ``verification`` (recompute and compare);
``_results`` (file formats) and ``_loading`` (batches) are internal. Everything but
``definitions`` loads on first use.
"""

from __future__ import annotations

from .._lazy import lazy_names
from .definitions import (
    COLUMNS,
    CONVENTIONS,
    METRICS,
    SUBSTRATES,
    Conventions,
    Metric,
    conventions_name,
    metric,
    resolve_conventions,
)

# public name -> submodule that defines it (imported on first access)
_LAZY = {
    "confidence_scores": "confidence", "confidence_terms": "confidence",
    "insertion_deletion": "curves", "Curves": "curves", "curve_settings": "curves",
    "prepare_maps": "scoring", "mask_input": "scoring", "black": "scoring",
    "blur_substrate": "scoring", "deletion_substrate": "scoring", "auc": "scoring",
    "check_step": "scoring", "check_blur_size": "scoring",
    "accuracy": "classification",
    "evaluate": "evaluation", "Evaluation": "evaluation",
    "evaluate_run": "runs", "RunResult": "runs", "read_results": "runs",
    "find_checkpoint": "runs", "default_out": "runs",
    "provenance_path": "runs",
    "verify_results": "verification", "Verification": "verification",
    "ResultMismatch": "verification", "TOLERANCES": "verification",
    "compare_rows": "verification",
}

__all__ = ["Metric", "METRICS", "metric", "COLUMNS", "SUBSTRATES", "Conventions", "CONVENTIONS",
           "resolve_conventions", "conventions_name", *_LAZY]


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
