"""``python -m interpretable ...``: the command line (see :mod:`interpretable.cli`)."""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    from interpretable.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
