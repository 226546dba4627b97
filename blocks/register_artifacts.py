"""Register the storage block where each flow run keeps dbt's artifacts (idempotent).

    python -m blocks.register_artifacts --basepath /srv/prefect/dbt-artifacts

Creates (or repoints) the LocalFileSystem block named in dbt_runtime/artifact_store.py
(`local-file-system/wg-dbt-artifacts`, or WG_ARTIFACTS_BLOCK). The basepath must be outside any
run's working directory (the process worker deletes those) and reachable by every worker. In
Prefect Cloud with ephemeral workers, create a bucket block instead (e.g. `s3-bucket/...` from
prefect-aws) and set WG_ARTIFACTS_BLOCK on the work pool: no code changes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from blocks._cli import Save, run, script_parser
from dbt_runtime.artifact_store import register_local_store
from dbt_runtime.project import register_command


def build_parser() -> argparse.ArgumentParser:
    parser = script_parser(register_command("artifacts"), __doc__)
    parser.add_argument("--basepath", type=Path, required=True, help="folder for kept artifacts")
    return parser


def prepare(args: argparse.Namespace, env: Mapping[str, str], stdin: IO[str]) -> Save:
    basepath: Path = args.basepath

    def save() -> str:
        block = register_local_store(basepath)
        return f"block {block} -> {basepath.resolve()}"

    return save


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), prepare, argv)


if __name__ == "__main__":
    sys.exit(main())
