"""`python -m migration import-jobs`: dbt Cloud jobs -> prefect.yaml schedule entries.

Reads the jobs from a saved v2 export (default: migration/dbt_cloud_export/jobs.json) or from
the dbt Cloud API (`--job-id`, with the DbtCloudCredentials block), prints the `schedules:`
entries they imply, what differs in behaviour and what one flow run cannot express.
`--check` compares them with prefect.yaml and exits 1 on drift, listing it.
`--export` first fetches every job of the account through the API and writes them to the export
file, in the format of a `GET /api/v2/accounts/ID/jobs/` response (the shipped export is a
placeholder until this has run against the real account).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from dbt_runtime.dbt_cloud import DEFAULT_BLOCK, DbtCloudError, load_credentials, run_sync
from dbt_runtime.project import DBT_CLOUD_EXPORT, deployment_full_name, schedules
from migration.dbt_cloud_jobs import (
    DbtCloudJobs,
    JobImport,
    JobImportError,
    import_drift,
    import_job,
    load_export,
    load_target_map,
    schedule_entry,
    scheduled_jobs,
)

EXPORT_COMMENT = (
    "The dbt Cloud jobs being migrated, as GET /api/v2/accounts/{account_id}/jobs/ returns them "
    "(data[]); written by `python -m migration import-jobs --export`. prefect.yaml's schedules "
    "must replicate these; tests/unit/test_prefect_yaml.py checks it."
)


def export_document(jobs: list[dict[str, Any]]) -> str:
    """The export file's text for `jobs`: the v2 jobs response, as the shipped file (pure)."""
    document = {
        "_comment": EXPORT_COMMENT,
        "status": {"code": 200, "is_success": True, "user_message": "Success!",
                   "developer_message": ""},
        "data": sorted(jobs, key=lambda j: int(j["id"])),
    }  # fmt: skip
    return json.dumps(document, indent=2) + "\n"


def export_jobs(path: Path, block: str | None) -> list[dict[str, Any]]:
    """Every job of the account, through the API, written to `path`."""
    jobs = run_sync(lambda cloud: cloud.list_jobs(), load_credentials(block))
    path.write_text(export_document(jobs))
    print(f"# wrote {len(jobs)} dbt Cloud job(s) to {path}", file=sys.stderr)
    return jobs


def read_jobs(args: argparse.Namespace) -> list[dict]:
    if args.export:
        jobs = export_jobs(args.export, args.credentials_block)
        if args.job_id:
            return [j for j in jobs if int(j["id"]) in args.job_id]
        return jobs
    if args.job_id:
        api = DbtCloudJobs(load_credentials(args.credentials_block))
        return [api.get_job(job_id) for job_id in args.job_id]
    return load_export(args.from_file or DBT_CLOUD_EXPORT)


def report(imports: list[JobImport], skipped: list[str]) -> str:
    which = deployment_full_name()  # the tenant's (--tenant; default: prefect.yaml's first)
    lines = [f"# prefect.yaml schedules of {which} implied by the dbt Cloud jobs"]
    lines += yaml.safe_dump(
        [schedule_entry(i.schedule) for i in imports], sort_keys=False
    ).splitlines()
    for i in imports:
        head = f"# job {i.job_id} {i.job_name!r} -> schedule {i.schedule.slug}"
        lines.append(head + ("" if i.exact else "  (NOT fully expressible as one flow run)"))
        lines += [f"#   note: {n}" for n in i.notes]
        lines += [f"#   CANNOT EXPRESS: {c}" for c in i.cannot_express]
    lines += [f"# skipped: {s}" for s in skipped]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    try:
        jobs = read_jobs(args)
        target_map = load_target_map(args.target_map)
        scheduled = scheduled_jobs(jobs)
        skipped = [
            f"job {j.get('id')} {j.get('name')!r}: no cron schedule"
            for j in jobs
            if j not in scheduled
        ]
        imports = [import_job(j, target_map) for j in scheduled]
    except (JobImportError, DbtCloudError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report(imports, skipped))
    if not args.check:
        return 0
    drift = import_drift([i.schedule for i in imports], schedules())
    if args.job_id:  # only the named jobs were read: other prefect.yaml schedules are not drift
        wanted = {i.schedule.slug for i in imports}
        drift = [d for d in drift if d.slug in wanted]
    if not drift:
        print("check: prefect.yaml's schedules match the dbt Cloud jobs")
        return 0
    print("check: prefect.yaml differs from the dbt Cloud jobs:")
    for d in drift:
        print(f"  - {d.slug}: {d.message}")
    return 1


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "import-jobs",
        help="dbt Cloud jobs -> prefect.yaml schedule entries (--check: compare with prefect.yaml)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--from-file",
        type=Path,
        help=f"a saved GET /api/v2/accounts/ID/jobs/ response (default: {DBT_CLOUD_EXPORT.name})",
    )
    parser.add_argument(
        "--export",
        type=Path,
        nargs="?",
        const=DBT_CLOUD_EXPORT,
        help="first write every job of the account, read through the API, to this export file "
        f"(default: {DBT_CLOUD_EXPORT.relative_to(DBT_CLOUD_EXPORT.parents[2])})",
    )
    source.add_argument(
        "--job-id",
        type=int,
        action="append",
        help="read this job from the dbt Cloud API (repeatable)",
    )
    parser.add_argument(
        "--credentials-block",
        default=None,
        help=f"DbtCloudCredentials block for --job-id/--export (default: {DEFAULT_BLOCK})",
    )
    parser.add_argument(
        "--target-map",
        type=Path,
        help="YAML/JSON mapping of dbt Cloud target names to profiles.yml targets",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if prefect.yaml differs, listing how"
    )
    parser.set_defaults(handler=main)
