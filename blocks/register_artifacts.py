"""Register the storage block where each flow run keeps dbt's artifacts (idempotent).

    python -m blocks.register_artifacts --basepath /srv/prefect/dbt-artifacts
    WG_ARTIFACTS_AWS_ACCESS_KEY_ID=... WG_ARTIFACTS_AWS_SECRET_ACCESS_KEY=... \\
        python -m blocks.register_artifacts --bucket wg-dbt-artifacts --region eu-west-1

--basepath: a LocalFileSystem block (`local-file-system/wg-dbt-artifacts`, the local default),
for a worker whose disk persists; the folder must be outside any run's working directory.
--bucket: for Prefect Cloud, whose every run starts in a fresh container: prefect-aws's
S3Bucket block `s3-bucket/<name>` and the AwsCredentials block `<name>` it reads (`<name>` is
the name in WG_ARTIFACTS_BLOCK, default wg-dbt-artifacts). Without keys in the environment the
bucket block uses boto3's default chain (an instance or task role). Then set
WG_ARTIFACTS_BLOCK=s3-bucket/<name> where `make cloud-deploy` runs: the deploy bakes it into the
runs' environment and refuses a local block.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from blocks._cli import Save, ServerError, script_main, script_parser
from blocks._inputs import EnvInput, InputError, env_value
from dbt_runtime.artifact_store import register_local_store, register_s3_store
from dbt_runtime.project import register_command

KEY_ID = EnvInput(
    "WG_ARTIFACTS_AWS_ACCESS_KEY_ID",
    "--bucket: the access key id of a user that may only read/write the bucket",
    required=False,
    pattern=re.compile(r"[A-Za-z0-9]+"),
)
SECRET = EnvInput(
    "WG_ARTIFACTS_AWS_SECRET_ACCESS_KEY",
    "--bucket: its secret access key",
    secret=True,
    required=False,
)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def build_parser() -> argparse.ArgumentParser:
    parser = script_parser(
        register_command("artifacts"), __doc__, {"S3 credentials (optional)": [KEY_ID, SECRET]}
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--basepath", type=Path, help="LocalFileSystem: folder for kept artifacts")
    where.add_argument("--bucket", help="S3Bucket: the bucket for kept artifacts")
    parser.add_argument("--folder", default="", help="--bucket: key prefix (default: none)")
    parser.add_argument("--region", help="--bucket: the bucket's AWS region")
    parser.add_argument(
        "--endpoint-url", help="--bucket: an S3-compatible endpoint instead of AWS (tests, MinIO)"
    )
    return parser


def prepare(args: argparse.Namespace, env: Mapping[str, str], stdin: IO[str]) -> Save:
    if args.basepath is not None:
        basepath: Path = args.basepath

        def save_local() -> str:
            block = register_local_store(basepath)
            return f"block {block} -> {basepath.resolve()}"

        return save_local
    bucket = str(args.bucket)
    if not _BUCKET.fullmatch(bucket):
        raise InputError(f"--bucket {bucket!r} is not an S3 bucket name")
    key_id, secret = env_value(KEY_ID, env), env_value(SECRET, env)
    if bool(key_id) != bool(secret):
        raise InputError(f"set both {KEY_ID.name} and {SECRET.name}, or neither (role auth)")

    def save_s3() -> str:
        try:
            block = register_s3_store(
                bucket, args.folder, args.endpoint_url, args.region, key_id, secret
            )
        except Exception as exc:
            raise ServerError(f"could not save the S3 blocks: {exc}") from None
        auth = "access key" if key_id else "boto3's default chain"
        return f"block {block} -> s3://{bucket}/{args.folder} ({auth})"

    return save_s3


main = script_main(build_parser, prepare)


if __name__ == "__main__":
    sys.exit(main())
