"""dbt Cloud Admin API v2, through prefect-dbt's client and a DbtCloudCredentials block.

Everything goes through `DbtCloudCredentials.get_administrative_client()` (prefect_dbt.cloud):
the client speaks `https://{domain}/api/v2/accounts/{account_id}`, so `domain` is the only knob
(cloud.getdbt.com, a regional/single-tenant host such as emea.dbt.com, or a loopback test server
whose certificate is trusted through SSL_CERT_FILE). Errors become DbtCloudError with a message
saying what to fix; transient 5xx answers are retried a few times first.

Used by parity (last successful run's artifacts) and by cutover/rollback (get/update a job).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from dbt_runtime.dbt_artifacts import (
    COMMAND_RESOURCE_TYPES,
    MANIFEST,
    RUN_RESULTS,
    ArtifactError,
    Invocation,
    Manifest,
    RunArtifacts,
    parse_manifest,
    parse_run_results,
)
from dbt_runtime.project import register_command
from dbt_runtime.settings import default, env_name, get_settings

if TYPE_CHECKING:
    from prefect_dbt.cloud import DbtCloudCredentials
    from prefect_dbt.cloud.clients import DbtCloudAdministrativeClient

BLOCK_ENV = env_name("dbt_cloud_block")
DEFAULT_BLOCK = str(default("dbt_cloud_block"))
REGISTER_HINT = register_command("dbt_cloud")
# Run status codes of the Admin API v2.
RUN_SUCCESS, RUN_ERROR, RUN_CANCELLED = 10, 20, 30
PAGE_SIZE = 100  # the API's maximum page size
SOURCES = "sources.json"  # what `dbt source freshness` writes (no run_results.json)
RETRIES = 3  # attempts for a 5xx / connection reset before giving up
_STEP_COMMAND = re.compile(r"Invoke dbt with `(?P<command>dbt [^`]+)`")


class DbtCloudError(RuntimeError):
    """A dbt Cloud call that failed; the message names the account/job/run and what to fix."""


class DbtCloudBlockMissing(DbtCloudError):
    """No DbtCloudCredentials block of that name on the Prefect server (not: unreachable)."""


@dataclass(frozen=True)
class RunStep:
    index: int  # the artifact API's `?step=N` (1-based, counts clone/profile/deps steps too)
    command: str  # "dbt build", "dbt source freshness", ...
    status: int

    @property
    def succeeded(self) -> bool:
        return self.status == RUN_SUCCESS

    @property
    def is_build(self) -> bool:
        words = self.command.split()
        return len(words) > 1 and words[1] in COMMAND_RESOURCE_TYPES

    @property
    def is_freshness(self) -> bool:
        return self.command.split()[1:3] == ["source", "freshness"]


@dataclass(frozen=True)
class CloudRun:
    id: int
    job_id: int
    status: int
    finished_at: str
    href: str


def load_credentials(block_name: str | None = None) -> DbtCloudCredentials:
    """The DbtCloudCredentials block (default WG_DBT_CLOUD_BLOCK or `wg-dbt-cloud`)."""
    from prefect_dbt.cloud import DbtCloudCredentials

    name = block_name or get_settings().dbt_cloud_block
    try:
        block = DbtCloudCredentials.load(name, _sync=True)
    except ValueError as exc:
        raise DbtCloudBlockMissing(
            f"block dbt-cloud-credentials/{name} not found: run {REGISTER_HINT} "
            f"(or set {BLOCK_ENV} to the block's name)"
        ) from exc
    except (httpx.HTTPError, RuntimeError, OSError) as exc:
        raise DbtCloudError(
            f"cannot load block dbt-cloud-credentials/{name}: Prefect API unreachable ({exc}); "
            "check PREFECT_API_URL"
        ) from exc
    assert isinstance(block, DbtCloudCredentials)
    return block


class DbtCloud:
    """The calls the migration makes, with errors that say what to fix. Use `async with`."""

    def __init__(self, credentials: DbtCloudCredentials) -> None:
        self.credentials = credentials
        self.account_id = credentials.account_id
        self._client: DbtCloudAdministrativeClient | None = None

    async def __aenter__(self) -> DbtCloud:
        self._client = await self.credentials.get_administrative_client().__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.__aexit__(*exc)

    async def _call(
        self, what: str, request: Callable[[], Awaitable[httpx.Response]]
    ) -> httpx.Response:
        where = f"dbt Cloud {self.credentials.domain}, account {self.account_id}"
        for attempt in range(1, RETRIES + 1):
            try:
                return await request()
            except httpx.HTTPStatusError as exc:
                code = exc.response.status_code
                if code in (401, 403):
                    raise DbtCloudError(
                        f"{where} rejected the API token ({code}) for {what}: register a valid "
                        f"token with {REGISTER_HINT} (needs read access to jobs and runs)"
                    ) from exc
                if code == 404:
                    raise DbtCloudError(f"{where}: {what} not found (404)") from exc
                if code < 500 or attempt == RETRIES:
                    raise DbtCloudError(
                        f"{where}: {what} failed with HTTP {code} after {attempt} attempt(s): "
                        f"{_user_message(exc.response)}"
                    ) from exc
            except httpx.TransportError as exc:
                if attempt == RETRIES:
                    raise DbtCloudError(
                        f"{where} unreachable for {what}: {exc!r}; check the block's domain "
                        "and the network"
                    ) from exc
            await asyncio.sleep(0.2 * attempt)  # transient: back off a little, then retry
        raise AssertionError("unreachable")

    @property
    def client(self) -> DbtCloudAdministrativeClient:
        if self._client is None:
            raise RuntimeError("use `async with DbtCloud(credentials)`")
        return self._client

    # ---- jobs ------------------------------------------------------------------------------
    async def get_job(self, job_id: int) -> dict[str, Any]:
        response = await self._call(f"job {job_id}", lambda: self.client.get_job(job_id))
        return dict(_body(response, f"job {job_id}")["data"])

    async def list_jobs(self, page_size: int = PAGE_SIZE) -> list[dict[str, Any]]:
        """Every job of the account (`GET /jobs/`, following offset pagination)."""
        jobs: list[dict[str, Any]] = []
        while True:
            params = {"offset": len(jobs), "limit": page_size, "order_by": "id"}
            response = await self._call("the job list", partial(self._get_jobs, params))
            body = _body(response, "the job list")
            page = list(body.get("data") or [])
            jobs += page
            total = ((body.get("extra") or {}).get("pagination") or {}).get("total_count")
            if len(page) < page_size or (total is not None and len(jobs) >= int(total)):
                return jobs

    async def update_job(self, job_id: int, job: dict[str, Any]) -> dict[str, Any]:
        """POST the full job definition back (the v2 API's update semantics)."""
        response = await self._call(
            f"update of job {job_id}",
            lambda: self.client.call_endpoint("POST", f"/jobs/{job_id}/", json=job),
        )
        return dict(_body(response, f"update of job {job_id}")["data"])

    # ---- runs ------------------------------------------------------------------------------
    async def list_runs(
        self,
        job_id: int,
        *,
        status: int | None = None,
        order_by: str = "-finished_at",
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[CloudRun]:
        """Every run of the job matching `status`, newest first, following offset pagination."""
        offset = 0
        while True:
            params: dict[str, Any] = {
                "job_definition_id": job_id,
                "order_by": order_by,
                "offset": offset,
                "limit": page_size,
            }
            if status is not None:
                params["status"] = status
            response = await self._call(f"runs of job {job_id}", partial(self._get_runs, params))
            body = _body(response, f"runs of job {job_id}")
            page = body.get("data") or []
            for run in page:
                yield CloudRun(
                    id=int(run["id"]),
                    job_id=int(run.get("job_definition_id") or job_id),
                    status=int(run["status"]),
                    finished_at=str(run.get("finished_at") or ""),
                    href=str(run.get("href") or ""),
                )
            total = ((body.get("extra") or {}).get("pagination") or {}).get("total_count")
            offset += len(page)
            if not page or (total is not None and offset >= int(total)):
                return

    def _get_jobs(self, params: dict[str, Any]) -> Awaitable[httpx.Response]:
        return self.client.call_endpoint("GET", "/jobs/", params=params)

    def _get_runs(self, params: dict[str, Any]) -> Awaitable[httpx.Response]:
        return self.client.call_endpoint("GET", "/runs/", params=params)

    async def last_successful_run(self, job_id: int) -> CloudRun:
        async for run in self.list_runs(job_id, status=RUN_SUCCESS, page_size=1):
            return run
        raise DbtCloudError(
            f"dbt Cloud job {job_id} (account {self.account_id}) has no successful run "
            "(status=10) to compare against"
        )

    async def run_steps(self, run_id: int, job: dict[str, Any]) -> list[RunStep]:
        """The run's dbt steps with their `?step=N` index.

        dbt Cloud numbers every step, including `Clone git repository`, `Create profile` and
        `dbt deps`, so the index comes from run_steps' names, not from execute_steps' order."""
        response = await self._call(
            f"run {run_id}",
            lambda: self.client.get_run(run_id, include_related=["run_steps"]),
        )
        body = _body(response, f"run {run_id}")
        steps = []
        for raw in body["data"].get("run_steps") or []:
            match = _STEP_COMMAND.search(str(raw.get("name", "")))
            if match is None or match["command"].split()[:2] == ["dbt", "deps"]:
                continue
            steps.append(RunStep(int(raw["index"]), match["command"], int(raw.get("status", 0))))
        if not steps:  # run_steps not returned: assume execute_steps are the only steps
            steps = [
                RunStep(i, command, RUN_SUCCESS)
                for i, command in enumerate(job.get("execute_steps") or [], start=1)
            ]
        return steps

    async def artifact(self, run_id: int, path: str, step: int) -> bytes:
        response = await self._call(
            f"{path} of run {run_id} step {step}",
            lambda: self.client.get_run_artifact(run_id, path, step=step),
        )
        return response.content

    async def _freshness_note(self, run_id: int, step: RunStep, step_dir: Path) -> str:
        label = f"step {step.index} `{step.command}`"
        outcome = (
            "passed" if step.succeeded else "did not pass (dbt Cloud does not fail the job for it)"
        )
        try:
            raw = await self.artifact(run_id, SOURCES, step.index)
        except DbtCloudError as exc:
            if "(404)" not in str(exc):
                raise
            return f"{label} {outcome}; no {SOURCES}; not a build step, not compared"
        (step_dir / SOURCES).write_bytes(raw)
        results = _json(raw, f"{label} {SOURCES}").get("results") or []
        counts = Counter(str(r.get("status", "")) for r in results)
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        return f"{label} {outcome}: {len(results)} source(s) checked ({summary}); not compared"

    async def last_successful_artifacts(self, job_id: int, dest: Path) -> RunArtifacts:
        """The job's last successful run as parity input: per-step artifacts combined.

        Files land in dest/step-N/ for the record. dbt Cloud semantics: the run succeeded, so
        every build step succeeded; a `dbt source freshness` step may still have failed (its
        failure does not fail the job) and is kept as a note, not as built nodes."""
        job = await self.get_job(job_id)
        run = await self.last_successful_run(job_id)
        name = job.get("name", "")
        notes = [f"dbt Cloud job {job_id} `{name}`: run {run.id} finished {run.finished_at}"]
        manifest: Manifest | None = None
        invocations: list[Invocation] = []
        for step in await self.run_steps(run.id, job):
            step_dir = dest / f"step-{step.index}"
            step_dir.mkdir(parents=True, exist_ok=True)
            label = f"step {step.index} `{step.command}`"
            if step.is_freshness:
                # Freshness checks sources, builds nothing: a note, not part of the node sets.
                notes.append(await self._freshness_note(run.id, step, step_dir))
                continue
            if not step.is_build:
                notes.append(f"{label}: not a build step, not compared")
                continue
            raw_results = await self.artifact(run.id, RUN_RESULTS, step.index)
            (step_dir / RUN_RESULTS).write_bytes(raw_results)
            origin = f"dbt Cloud run {run.id} {label}"
            invocations.append(
                parse_run_results(_json(raw_results, f"{origin} {RUN_RESULTS}"), origin, label)
            )
            raw_manifest = await self.artifact(run.id, MANIFEST, step.index)
            (step_dir / MANIFEST).write_bytes(raw_manifest)
            # The last build step's manifest describes the project the run ended with.
            manifest = parse_manifest(
                _json(raw_manifest, f"{label} {MANIFEST}"),
                f"dbt Cloud run {run.id} {label} {MANIFEST}",
            )
        if manifest is None:
            raise DbtCloudError(
                f"dbt Cloud run {run.id} of job {job_id} has no build step with a {MANIFEST} "
                f"(execute_steps: {job.get('execute_steps')})"
            )
        return RunArtifacts(
            origin=f"dbt-cloud:{job_id} (run {run.id})",
            manifest=manifest,
            invocations=tuple(invocations),
            notes=tuple(notes),
        )


def _json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ArtifactError(f"{what}: not JSON") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{what}: not a dbt artifact (top level is not an object)")
    return data


def _body(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise DbtCloudError(
            f"dbt Cloud answered {what} with non-JSON: {response.text[:200]!r}"
        ) from exc
    if not isinstance(body, dict) or "data" not in body:
        raise DbtCloudError(f"dbt Cloud answered {what} without `data`: {str(body)[:200]}")
    return body


def _user_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["status"]["user_message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def run_sync[T](
    coro_factory: Callable[[DbtCloud], Awaitable[T]], credentials: DbtCloudCredentials
) -> T:
    """Run one async operation against dbt Cloud from synchronous code (CLI, scripts)."""

    async def main() -> T:
        async with DbtCloud(credentials) as cloud:
            return await coro_factory(cloud)

    return asyncio.run(main())


def fetch_last_successful(
    job_id: int, dest: Path, credentials: DbtCloudCredentials
) -> RunArtifacts:
    return run_sync(lambda cloud: cloud.last_successful_artifacts(job_id, dest), credentials)
