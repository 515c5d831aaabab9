"""``python -m interpretable.roar ranks|cell|table ...`` (see :mod:`interpretable.roar.cli`)."""

from __future__ import annotations

import sys

from interpretable.roar.cli import main

if __name__ == "__main__":
    sys.exit(main())
