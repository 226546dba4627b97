"""Register the storage block where each flow run keeps dbt's artifacts (idempotent).

    python blocks/register_artifacts.py --basepath /srv/prefect/dbt-artifacts

Creates (or repoints) the LocalFileSystem block named in dbt_runtime/artifact_store.py
(`local-file-system/wg-dbt-artifacts`, or WG_ARTIFACTS_BLOCK). The basepath must be outside any
run's working directory (the process worker deletes those) and reachable by every worker. In
Prefect Cloud with ephemeral workers, create a bucket block instead (e.g. `s3-bucket/...` from
prefect-aws) and set WG_ARTIFACTS_BLOCK on the work pool: no code changes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dbt_runtime.artifact_store import register_local_store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--basepath", type=Path, required=True, help="folder for kept artifacts")
    args = parser.parse_args(argv)
    block = register_local_store(args.basepath)
    print(f"block {block} -> {args.basepath.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
