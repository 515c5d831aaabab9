"""Metrics of explanations and models (METHODS.md section 5).

Per batch: :func:`confidence_scores` (per-image Average Drop / Gain / Increase terms) and
:func:`insertion_deletion` (per-image AUCs, optionally the curves). Over a dataset:
:func:`evaluate` (tidy table, one row per image x method, resumable result files),
:func:`summarize` and :func:`paper_table`, and :func:`accuracy` (top-k). For a trained run
(what ``python -m interpretable evaluate`` does): :func:`evaluate_run` (test-set rows plus a
provenance record), :func:`read_results`, :func:`verify_results` (recompute a seeded sample
of a result file from the weights).

Modules: ``core`` (the formulas, batched), ``evaluation`` (the dataset loop), ``summary``
(means and intervals), ``topk`` (accuracy), ``runs`` (runs, result files, verification);
``_results`` and ``_loading`` are internal helpers.
"""

from .core import (
    Curves,
    auc,
    blur_substrate,
    confidence_scores,
    confidence_terms,
    insertion_deletion,
    mask_input,
    prepare_maps,
)
from .evaluation import COLUMNS, METRICS, evaluate
from .runs import (
    DEFAULT_METHODS,
    METHOD_NAMES,
    ResultMismatch,
    RunResult,
    Verification,
    evaluate_run,
    read_results,
    verify_results,
)
from .summary import PAPER_COLUMNS, paper_table, summarize
from .topk import accuracy

__all__ = [
    "confidence_scores",
    "confidence_terms",
    "insertion_deletion",
    "Curves",
    "auc",
    "prepare_maps",
    "mask_input",
    "blur_substrate",
    "accuracy",
    "evaluate",
    "summarize",
    "paper_table",
    "COLUMNS",
    "METRICS",
    "PAPER_COLUMNS",
    "evaluate_run",
    "read_results",
    "verify_results",
    "RunResult",
    "Verification",
    "ResultMismatch",
    "METHOD_NAMES",
    "DEFAULT_METHODS",
]
