"""Draw the README figure: explanations of CIFAR-100 test images by a reference model.

Run from the repository root: ``python book/figures/make_overview.py`` (writes
``book/figures/overview.png``). The book's introduction draws the same figure at build time
with :func:`interpretable.book.overview.overview_figure`.
"""

from __future__ import annotations

from pathlib import Path

import interpretable as itp
from interpretable.book.overview import overview_figure
from interpretable.study import reference

OUT = Path(__file__).resolve().parent / "overview.png"


def main() -> None:
    names = [n for n in ("resnet18_regularized", "resnet18_baseline")
             if n in reference.available()] or reference.available()
    if not names:
        raise SystemExit("no reference checkpoint: train one first (reference/README.md)")
    model, meta = reference.load(names[0])
    ds = itp.data.cifar100("test")
    x, y = ds.tensors([0, 3, 7, 9])
    fig = overview_figure(model, x, y, [ds.classes[int(c)] for c in y],
                          f"{names[0]} (width {meta.get('width')})")
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
