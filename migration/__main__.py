"""`python -m migration ...`: the operator CLI (see `--help`)."""

from __future__ import annotations

import sys

from migration.cli import main

if __name__ == "__main__":
    sys.exit(main())
