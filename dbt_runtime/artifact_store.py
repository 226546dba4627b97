"""dbt's target/ files, kept per flow run in a Prefect filesystem block.

The process worker deletes a run's working directory (and with it dbt's target/), so each run
copies run_results.json, manifest.json, dbt.log (and sources.json / catalog.json when dbt wrote
them) to `<tenant prefix><target>/<flow_run_id>/` in the block named by ARTIFACTS_BLOCK. The
prefix (dbt_runtime/project.py `Tenant.artifacts_prefix`) is `<tenant>/`, or nothing for the
first tenant, whose runs were kept there before tenants existed: one tenant's lookups never
reach another's keys, and a `state` naming another tenant's run is refused (`fetch_state`).
Locally that block is a LocalFileSystem under the stack's home; in Prefect Cloud, where every
run starts in a fresh container, it is prefect-aws's S3Bucket (`s3-bucket/wg-dbt-artifacts`,
registered by `python -m blocks.register_artifacts --bucket ...`; `make cloud-deploy` refuses a
local one).
Any block with read_path/write_path works; a missing object reads as "not kept" whatever the
backend (`load_store` wraps the block).

A missing block does not fail the run (the models still get built); the run logs a warning that
names the fix, and retry / `state` keywords, which need kept artifacts, fail naming the block.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbt_runtime._paths import runtime_subdir
from dbt_runtime._statuses import retryable_statuses
from dbt_runtime.invocation import (
    FINISHED_STATE_TYPES,
    KeptState,
    ResolvedState,
    StateKeyword,
    Target,
)
from dbt_runtime.project import (
    FLOW_NAME,
    LEGACY_FLOW_NAMES,
    TenantError,
    register_command,
    tenant,
    tenants,
)
from dbt_runtime.settings import env_name, get_settings

KEPT_FILES = ("run_results.json", "manifest.json", "sources.json", "catalog.json")
LOG_FILE = "dbt.log"
INDEX_FILE = "kept.json"
_FLOW_RUN_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# The only names a kept run's index may list: a tampered index cannot write elsewhere.
KNOWN_FILES = frozenset({*KEPT_FILES, LOG_FILE})


class ArtifactStoreError(LookupError):
    """No storage block, or no kept artifacts for a run; the message says what to do."""


@dataclass(frozen=True)
class KeptRun:
    """Where one flow run's artifacts are kept and which files are there."""

    flow_run_id: str
    target: str
    key: str
    files: tuple[str, ...]
    location: str


def artifacts_block() -> str:
    """The storage block, `<block type slug>/<block name>` (settings: WG_ARTIFACTS_BLOCK)."""
    return get_settings().artifacts_block.strip()


def register_hint(block: str | None = None) -> str:
    block = block or artifacts_block()
    if block.startswith(f"{LOCAL_BLOCK_TYPE}/"):
        return f"run `{register_command('artifacts')} --basepath <dir outside the worker>`"
    if block.startswith(f"{S3_BLOCK_TYPE}/"):
        return (
            f"run `{register_command('artifacts')} --bucket <bucket>`, "
            f"or set {env_name('artifacts_block')}"
        )
    return f"create the block {block} in Prefect, or set WG_ARTIFACTS_BLOCK"


LOCAL_BLOCK_TYPE = "local-file-system"
S3_BLOCK_TYPE = "s3-bucket"
# Block type slug -> the module defining it: imported on its own, so loading the block need not
# go through Block.load's import of every installed integration (see load_store).
BLOCK_MODULES = {LOCAL_BLOCK_TYPE: "prefect.filesystems", S3_BLOCK_TYPE: "prefect_aws.s3"}


def durable_store_problem(block: str | None = None) -> str | None:
    """Why `block` cannot keep artifacts across fresh containers (None: it can)."""
    block = block or artifacts_block()
    if block.startswith(f"{LOCAL_BLOCK_TYPE}/"):
        return (
            f"artifact storage block {block} is a folder on the worker's disk, which a Prefect "
            "Cloud container loses with the run (and retry, resume, state keywords, parity and "
            f"the parse cache with it): run `{register_command('artifacts')} --bucket <name>` "
            f"and set {env_name('artifacts_block')}={S3_BLOCK_TYPE}/<block name>"
        )
    return None


class _MissingIsNotKept:
    """A storage block whose missing objects raise FileNotFoundError on every backend
    (LocalFileSystem raises ValueError, S3 botocore's ClientError NoSuchKey)."""

    def __init__(self, block: Any) -> None:
        self._block = block

    def __getattr__(self, name: str) -> Any:
        return getattr(self._block, name)

    def read_path(self, path: str) -> bytes:
        try:
            return bytes(self._block.read_path(path))
        except Exception as exc:
            code = str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))
            if isinstance(exc, ValueError | FileNotFoundError) or code in _S3_MISSING:
                raise FileNotFoundError(f"not kept: {location_of(self._block, path)}") from None
            raise

    def write_path(self, path: str, content: bytes) -> Any:
        return self._block.write_path(path, content)


_S3_MISSING = {"NoSuchKey", "404", "NotFound"}


def load_store() -> Any:
    """The configured filesystem block; ArtifactStoreError naming the fix when it is missing."""
    from prefect.blocks.core import Block
    from prefect.utilities.dispatch import lookup_type

    block = artifacts_block()
    slug, _, name = block.partition("/")
    if slug in BLOCK_MODULES:  # registers the block class
        importlib.import_module(BLOCK_MODULES[slug])
    # A block class already imported (local-file-system is built in) loads directly; Block.load
    # first imports every installed Prefect integration to find the class (3.8 s here:
    # prefect-snowflake pulls in snowflake.core), which a bucket block from an integration needs.
    try:
        cls, key = lookup_type(Block, slug), name
    except KeyError:
        cls, key = Block, block
    try:
        return _MissingIsNotKept(cls.load(key))
    except (ValueError, KeyError) as exc:
        raise ArtifactStoreError(
            f"artifact storage block {block} not found ({exc}): {register_hint(block)}"
        ) from None


def run_key(target: str, flow_run_id: str) -> str:
    """Where a run of this process's tenant keeps its files in the store."""
    return f"{tenant().artifacts_prefix}{target}/{flow_run_id}"


def location_of(store: Any, path: str) -> str:
    """Where `path` of the store lives: s3://bucket/folder/path for a bucket block."""
    bucket = getattr(store, "bucket_name", None)
    if bucket:
        folder = str(getattr(store, "bucket_folder", "") or "").strip("/")
        return f"s3://{bucket}/{folder + '/' if folder else ''}{path}"
    return location(store, path).rstrip("/")


def location(store: Any, key: str) -> str:
    """A link to the kept files: a file:// URL for a local folder, s3:// for a bucket,
    `<block>:<key>` otherwise."""
    if getattr(store, "bucket_name", None):
        return location_of(store, key) + "/"
    basepath = getattr(store, "basepath", None)
    if basepath and "://" not in str(basepath):
        return (Path(str(basepath)).expanduser().resolve() / key).as_uri() + "/"
    if basepath:
        return f"{str(basepath).rstrip('/')}/{key}/"
    return f"{artifacts_block()}:{key}/"


def keep_run_artifacts(
    store: Any,
    target: str,
    flow_run_id: str,
    target_dir: Path,
    log_file: Path | None,
    facts: dict[str, Any],
) -> KeptRun:
    """Copy this run's target/ files (and dbt.log) into the store; a later attempt overwrites."""
    files = {name: target_dir / name for name in KEPT_FILES}
    if log_file is not None:
        files[LOG_FILE] = log_file
    return keep_run_files(store, target, flow_run_id, files, facts)


def keep_run_files(
    store: Any, target: str, flow_run_id: str, files: Mapping[str, Path], facts: dict[str, Any]
) -> KeptRun:
    """Copy the files (kept name -> local path) that exist into the store, and index them."""
    key = run_key(target, flow_run_id)
    kept: list[str] = []
    for name, path in files.items():
        if path.is_file():
            store.write_path(f"{key}/{name}", path.read_bytes())
            kept.append(name)
    return _write_index(store, target, flow_run_id, kept, facts)


def keep_run_start(store: Any, target: str, flow_run_id: str, facts: dict[str, Any]) -> KeptRun:
    """Before dbt starts: the index alone (no files yet). If the process dies, this is what
    says which run it was and with which parameters (dbt_runtime/resume.py)."""
    return _write_index(store, target, flow_run_id, [], facts)


def _write_index(
    store: Any, target: str, flow_run_id: str, files: list[str], facts: dict[str, Any]
) -> KeptRun:
    key = run_key(target, flow_run_id)
    index = {"flow_run_id": flow_run_id, "target": target, "files": files, **facts}
    store.write_path(f"{key}/{INDEX_FILE}", json.dumps(index, indent=2).encode())
    return KeptRun(flow_run_id, target, key, tuple(files), location(store, key))


def read_index(store: Any, target: str, flow_run_id: str) -> dict[str, Any] | None:
    try:
        data = store.read_path(f"{run_key(target, flow_run_id)}/{INDEX_FILE}")
    except (ValueError, FileNotFoundError, OSError):
        return None
    return dict(json.loads(data))


def find_kept_run(store: Any, flow_run_id: str, targets: Iterable[str] | None = None) -> KeptRun:
    """The kept artifacts of a flow run, whatever its target."""
    for target in targets or [t.value for t in Target]:
        index = read_index(store, target, flow_run_id)
        if index is not None:
            key = run_key(target, flow_run_id)
            return KeptRun(
                flow_run_id, target, key, tuple(index.get("files", [])), location(store, key)
            )
    raise ArtifactStoreError(
        f"no artifacts kept for flow run {flow_run_id} of tenant {tenant().name} in block "
        f"{artifacts_block()} (the run never reached dbt, ran before artifacts were kept, or is "
        "another tenant's)"
    )


def fetch_kept_run(store: Any, kept: KeptRun, dest: Path) -> Path:
    unknown = sorted(set(kept.files) - KNOWN_FILES)
    if unknown:
        raise ArtifactStoreError(
            f"kept run {kept.flow_run_id} lists files this runtime never keeps: {unknown}"
        )
    dest.mkdir(parents=True, exist_ok=True)
    for name in kept.files:
        (dest / name).write_bytes(store.read_path(f"{kept.key}/{name}"))
    return dest


def place_for_retry(source: Path, target_dir: Path) -> None:
    """Put a previous run's run_results.json + manifest.json where `dbt retry` reads them."""
    if not (source / "run_results.json").is_file():
        raise ArtifactStoreError(f"{source} has no run_results.json to retry from")
    target_dir.mkdir(parents=True, exist_ok=True)
    for name in ("run_results.json", "manifest.json"):
        if (source / name).is_file() and source.resolve() != target_dir.resolve():
            shutil.copy2(source / name, target_dir / name)


def has_retryable_nodes(run_results_path: Path) -> bool:
    """Whether `dbt retry` would re-run anything of this run_results.json."""
    if not run_results_path.is_file():
        return False
    results = json.loads(run_results_path.read_text()).get("results") or []
    retryable = retryable_statuses()
    return any(str(r.get("status")).lower() in retryable for r in results)


async def _flow_runs_newest_first(
    flow_names: Sequence[str],
    state_types: list[str] | None,
    offset: int,
    limit: int,
    deployment: str | None = None,
) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    run_filter = FlowRunFilter()
    if state_types:
        run_filter = FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType(s) for s in state_types])
            )
        )
    deployment_filter = (
        DeploymentFilter(name=DeploymentFilterName(any_=[deployment])) if deployment else None
    )
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(flow_names))),
            flow_run_filter=run_filter,
            deployment_filter=deployment_filter,
            sort=FlowRunSort.START_TIME_DESC,
            offset=offset,
            limit=limit,
        )


def latest_kept_run(
    store: Any,
    target: str,
    state_types: list[str] | None,
    flow_names: Sequence[str] = (FLOW_NAME, *LEGACY_FLOW_NAMES),
    scan: int = 500,
) -> KeptRun:
    """The newest run of this process's tenant on `target` (in one of `state_types`) with kept
    artifacts; runs recorded under the flow's earlier names count too. Only the tenant's own
    deployment's runs are scanned (the first tenant's also those of deployments deleted since,
    which the server can no longer match by name; its key prefix keeps others' runs out)."""
    from prefect.utilities.asyncutils import run_coro_as_sync

    own = tenant()
    deployment = None if own.first else own.deployment
    page = 50
    for offset in range(0, scan, page):
        runs: list[Any] = run_coro_as_sync(
            _flow_runs_newest_first(flow_names, state_types, offset, page, deployment)
        )
        for run in runs or []:
            chosen = (run.parameters or {}).get("target")
            if chosen not in (None, target):
                continue
            index = read_index(store, target, str(run.id))
            if index is not None:
                return find_kept_run(store, str(run.id), [target])
        if not runs or len(runs) < page:
            break
    which = "/".join(s.lower() for s in state_types) if state_types else "any"
    raise ArtifactStoreError(
        f"no {which} run of {' or '.join(flow_names)} for tenant {own.name} on target "
        f"{target!r} has kept artifacts in block {artifacts_block()}"
    )


def register_local_store(basepath: Path, name: str | None = None) -> str:
    """Create (or point) the LocalFileSystem artifacts block at `basepath`; idempotent."""
    from prefect.filesystems import LocalFileSystem

    block = name or artifacts_block()
    block_type, _, block_name = block.partition("/")
    if block_type != LOCAL_BLOCK_TYPE:
        raise ArtifactStoreError(f"{block} is not a local-file-system block; create it in Prefect")
    basepath.mkdir(parents=True, exist_ok=True)
    LocalFileSystem(basepath=str(basepath.resolve())).save(block_name, overwrite=True)
    return block


def register_s3_store(
    bucket: str,
    folder: str = "",
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> str:
    """Create (or repoint) the S3Bucket artifacts block and the AwsCredentials block it reads,
    both named like the configured block's name; idempotent. Without keys the bucket block
    uses boto3's default chain (an instance or task role)."""
    from prefect_aws import AwsClientParameters, AwsCredentials
    from prefect_aws.s3 import S3Bucket

    block_name = artifacts_block().partition("/")[2]
    credentials = AwsCredentials(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        region_name=region,
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint_url),
    )
    credentials.save(block_name, overwrite=True)
    store = S3Bucket(bucket_name=bucket, bucket_folder=folder, credentials=credentials)
    store.save(block_name, overwrite=True)
    return f"{S3_BLOCK_TYPE}/{block_name}"


def state_cache_dir(flow_run_id: str) -> Path:
    """Where a kept run is fetched to for `--state` / retry: outside any project directory, in
    the worker's private runtime directory (never a guessable path under the shared /tmp)."""
    if not _FLOW_RUN_ID.match(flow_run_id):
        raise ArtifactStoreError(f"{flow_run_id!r} is not a flow run id")
    return runtime_subdir("state-cache") / flow_run_id


class OtherTenantsRun(ArtifactStoreError):
    """A `state` reference names a flow run of another tenant's deployment."""


def run_owner(flow_run_id: str) -> tuple[str | None, str | None]:
    """(deployment name, tenant) of a flow run, read from the Prefect API; None where unknown
    (no such run, a run without a deployment, a deployment no prefect.yaml entry runs)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(UUID(flow_run_id))
            if run.deployment_id is None:
                return None, None
            deployment = str(client.read_deployment(run.deployment_id).name)
        except ObjectNotFound:
            return None, None
    try:
        owner = next((t.name for t in tenants() if t.deployment == deployment), None)
    except TenantError:
        owner = None
    return deployment, owner


def refuse_other_tenants_run(flow_run_id: str) -> None:
    """A run reads only its own tenant's kept runs: refuse one another tenant's deployment ran."""
    own = tenant()
    deployment, owner = run_owner(flow_run_id)
    if deployment is not None and deployment != own.deployment:
        whose = f"tenant {owner}" if owner else "not a tenant of this prefect.yaml"
        raise OtherTenantsRun(
            f"flow run {flow_run_id} is a run of deployment {deployment} ({whose}), not of "
            f"{own.full_name} (tenant {own.name}): a run reads only its own tenant's kept runs"
        )


def fetch_state(ref: KeptState) -> ResolvedState:
    """A `state` reference to a kept run -> ResolvedState: the kept run fetched to local disk.
    Only this tenant's runs: a flow run of another tenant's deployment is refused."""
    store = load_store()
    if ref.flow_run_id:
        refuse_other_tenants_run(ref.flow_run_id)
        kept = find_kept_run(store, ref.flow_run_id)
    else:
        assert ref.target is not None and ref.keyword is not None  # state_reference guarantees it
        kept = latest_kept_run(store, ref.target.value, ref.keyword.state_types)
    dest = state_cache_dir(kept.flow_run_id)
    if dest.exists():
        shutil.rmtree(dest)
    fetch_kept_run(store, kept, dest)
    return ResolvedState(dest, kept.flow_run_id, kept.target)


def fetch_run_artifacts(flow_run_id: str, dest: Path) -> Path:
    """Copy the kept files of one flow run into `dest` (created); return `dest`.

    Raises ArtifactStoreError naming the run and block when none were kept.
    """
    store = load_store()
    return fetch_kept_run(store, find_kept_run(store, flow_run_id), dest)


def latest_run_artifacts(target: str, dest: Path, successful: bool = True) -> tuple[str, Path]:
    """Fetch the newest (Completed, unless successful=False) run on `target` into `dest`."""
    store = load_store()
    states = StateKeyword.last_success.state_types if successful else FINISHED_STATE_TYPES
    kept = latest_kept_run(store, Target(target).value, states)
    return kept.flow_run_id, fetch_kept_run(store, kept, dest)
