"""`make bench` = `python -m migration bench`: the cost of per-node visibility, and start-up.

For each size in BENCH_SIZES (default "100 500 2000") a synthetic project
(migration/synthetic_project.py) is built, then measured alternating A/B in one process, so
machine noise hits both modes alike:

- `plain`: the `dbt build` CLI on the project (fresh DuckDB file per run);
- `flow`:  the project's flow exactly as deployed, `flows.dbt_project.dbt_project(
           target="local")`, in a copy of this repository whose default tenant folder is the
           synthetic project, against a local Prefect server. Its time is the whole process,
           start to exit: imports, flow run creation, profile checks, dbt, and every event and
           log delivered (Prefect drains both before the process exits), so deferring work past
           the run is no saving. The flow call alone is kept as `flow_call_s`.

Each run reports the client's CPU (the measured process tree) and the Prefect server's CPU over
the same window (the server's process group, from /proc) separately: locally the server shares
the machine with dbt, in Prefect Cloud it does not. Per size: `flow_over_plain_<N>`, the ratio of
the median wall times; `per_node_overhead_ms` = (flow - plain) / nodes, which a faster machine
cannot hide, beside `prefect_floor_ms_per_node`, what an empty flow's process costs against the
same server (no flow code can go under it); and `visibility_p95_s`, how long after dbt finished
a node its final state was on the server (the recorder's write time of the task run minus dbt's
finish time; p95 of a run's nodes, the worst run reported). Then, unless --no-trigger, the full
deployment path on the tenant project: deploy prefect.yaml to the local server, start a process
worker, trigger two runs (the first warms the worker's caches) and split the second into
phases from its state history. Results go to bench/results.json and a table to stdout.
Benchmarks are not tests: nothing here asserts a number.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dbt_runtime.project import REPO_ROOT, deployment_full_name, tenant
from dbt_runtime.task_runs import recorded_task_runs
from migration.cloudlike import EMULATOR_EXCLUDE as EXCLUDE
from migration.cloudlike import CloudlikeStack
from migration.local_stack import LocalStack, free_port
from migration.synthetic_project import SyntheticProject, write_project

DEFAULT_SIZES = "100 500 2000"
DEFAULT_RESULTS = REPO_ROOT / "bench" / "results.json"
MODES = ("plain", "flow")
RESULT_PREFIX = "BENCH_RESULT "

# Runs in the child: the deployed flow function, imported from the repository copy.
_FLOW_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from flows.dbt_project import dbt_project
started = time.monotonic()
state = dbt_project(target="local", return_state=True)
print(sys.argv[2] + json.dumps({
    "wall_s": time.monotonic() - started,
    "state": state.name,
    "flow_run_id": str(state.state_details.flow_run_id),
}))
"""

# Runs in the child: a flow that does no work (Prefect's own cost of a flow process).
_EMPTY_FLOW_CHILD = """
from prefect import flow

@flow(log_prints=True)
def empty() -> None:
    print("no work")

empty()
"""


@dataclass(frozen=True)
class Measurement:
    mode: str
    wall_s: float  # the whole process, start to exit
    flow_call_s: float | None  # flow mode: the flow call alone
    cpu_s: float  # the measured process tree (client side)
    peak_rss_mb: float
    ok: bool
    server_cpu_s: float | None = None  # the Prefect server over the same window
    flow_run_id: str | None = None  # flow mode: where its per-node task runs are
    task_runs: int | None = None  # flow mode: the node task runs Prefect recorded for it
    summary_rows: int | None = None  # flow mode: rows of its dbt-summary table artifact
    visibility_p95_s: float | None = None  # flow mode: dbt finished a node -> state on server


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def server_process_group(port: int) -> int | None:
    """The process group of the `prefect server start ... --port PORT` serving the bench (the
    local stack starts it in its own session; a server given by --api-url is found the same
    way), or None when it is not on this machine."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if "server" in argv and "start" in argv and str(port) in argv:
                return os.getpgid(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
    return None


def process_group_cpu_seconds(pgid: int | None) -> float | None:
    """User + system CPU seconds of the live processes in `pgid` (and children they reaped)."""
    if pgid is None:
        return None
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # fields after the command (which may hold spaces): state ppid pgrp ... utime stime
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / CLOCK_TICKS


def _run_measured(
    argv: list[str], env: dict[str, str], cwd: Path
) -> tuple[float, float, float, int, str]:
    """Run a child; return (wall, user+sys CPU, peak RSS MB, exit code, stdout)."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        out.seek(0)
        text = out.read().decode(errors="replace")
    # ru_maxrss is KiB on Linux: the largest resident set of the child (or a waited-for child).
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode, text


def measure_plain(
    project: SyntheticProject, env: dict[str, str], warehouse: Path, server: int | None = None
) -> Measurement:
    dbt = str(Path(sys.executable).parent / "dbt")
    argv = [dbt, "build", "--project-dir", str(project.path), "--profiles-dir", str(project.path)]
    server_before = process_group_cpu_seconds(server)
    wall, cpu, rss, code, text = _run_measured(
        argv, {**env, "WG_DUCKDB_PATH": str(warehouse)}, project.path
    )
    if code != 0:
        print(text[-3000:], file=sys.stderr)
    return Measurement("plain", wall, None, cpu, rss, code == 0, _delta(server_before, server))


def _delta(before: float | None, server: int | None) -> float | None:
    after = process_group_cpu_seconds(server)
    return round(after - before, 2) if before is not None and after is not None else None


def measure_flow(
    repo_copy: Path, env: dict[str, str], warehouse: Path, server: int | None = None
) -> Measurement:
    argv = [sys.executable, "-c", _FLOW_CHILD, str(repo_copy), RESULT_PREFIX]
    server_before = process_group_cpu_seconds(server)
    wall, cpu, rss, code, text = _run_measured(
        argv, {**env, "WG_DUCKDB_PATH": str(warehouse)}, repo_copy
    )
    server_cpu = _delta(server_before, server)
    result = next(
        (json.loads(line[len(RESULT_PREFIX) :]) for line in text.splitlines()
         if line.startswith(RESULT_PREFIX)),
        None,
    )  # fmt: skip
    ok = code == 0 and result is not None and result["state"] == "Completed"
    if not ok:
        print(text[-3000:], file=sys.stderr)
    flow_call = float(result["wall_s"]) if result else None
    run_id = str(result["flow_run_id"]) if result else None
    seen: tuple[int | None, int | None, float | None] = (None, None, None)
    if run_id:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
            seen = asyncio.run(_visibility(run_id))
    task_runs, rows, p95 = seen
    return Measurement(
        "flow", wall, flow_call, cpu, rss, ok, server_cpu, run_id, task_runs, rows, p95
    )


def measure_prefect_floor(env: dict[str, str], repeats: int) -> dict[str, Any]:
    """What any flow process costs before it does any work, against the same server: an empty
    flow's whole process minus a bare interpreter's (`python -c pass`), alternating, medians.
    No code of the flow can bring `per_node_overhead_ms` below `floor_s / nodes`."""
    runs: dict[str, list[float]] = {"python": [], "empty_flow": []}
    for _ in range(repeats):
        for name, code in (("python", "pass"), ("empty_flow", _EMPTY_FLOW_CHILD)):
            wall, _, _, status, text = _run_measured([sys.executable, "-c", code], env, REPO_ROOT)
            if status != 0:
                raise RuntimeError(f"the {name} child failed:\n{text[-3000:]}")
            runs[name].append(round(wall, 3))
    medians = {name: statistics.median(walls) for name, walls in runs.items()}
    return {
        "runs_s": runs,
        "floor_s": round(medians["empty_flow"] - medians["python"], 3),
    }


def p95(values: Sequence[float]) -> float | None:
    """The 95th percentile (inclusive method: within the values' range), None without values."""
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=20, method="inclusive")[18], 3)


async def _visibility(flow_run_id: str) -> tuple[int, int | None, float | None]:
    """What the UI shows for a measured run: node task runs, the summary artifact's rows, and
    the p95 of (server's write of a node's final state - dbt's finish of the node)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
    async with get_client() as client:
        # The recorder writes task runs from events, asynchronously: wait until they stop growing.
        counts: list[int] = []
        while len(counts) < 3 or counts[-1] != counts[-3]:
            task_runs = await recorded_task_runs(flow_run_id)
            counts.append(len(task_runs))
            await asyncio.sleep(1)
        # `updated` is the recorder's write time; a final state is a task run's last write.
        lags = [
            (t.updated - t.end_time).total_seconds()
            for t in task_runs
            if t.end_time and t.updated and t.state and t.state.is_final()
        ]
        artifacts = await client.read_artifacts(flow_run_filter=run_filter)
    summary = next((a for a in artifacts if (a.key or "").startswith("dbt-summary-")), None)
    rows = summary.data if summary else None
    rows = json.loads(rows) if isinstance(rows, str) else rows
    return counts[-1], len(rows) if isinstance(rows, list) else None, p95(lags)


def repository_files() -> list[str]:
    """This working tree's files (tracked + untracked, not ignored), relative to the root."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")  # fmt: skip
    return [f for f in files if f and (REPO_ROOT / f).is_file()]


def repository_copy(dest: Path, project: Path, flows: Path = REPO_ROOT / "flows") -> Path:
    """This working tree with `project` in place of the tenant dbt project (and `flows` in
    place of flows/, to measure a candidate change)."""
    tenant_dir = tenant().project_dir.relative_to(REPO_ROOT)
    for name in repository_files():
        if Path(name).is_relative_to(tenant_dir) or Path(name).is_relative_to("flows"):
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, dest / name)
    shutil.copytree(flows, dest / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / tenant_dir).parent.mkdir(parents=True, exist_ok=True)
    (dest / tenant_dir).symlink_to(project, target_is_directory=True)
    return dest


def snapshot_repository(dest: Path) -> Path:
    """This working tree (tracked + untracked, not ignored) as one git commit: what a worker's
    git_clone pulls, so the trigger path runs the code being benchmarked."""
    for name in repository_files():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, dest / name)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run([*git, *args], cwd=dest, check=True)
    return dest


def median_ratio(
    runs: Sequence[Measurement], metric: str = "wall_s"
) -> tuple[dict[str, float], float | None]:
    """Median of `metric` per mode (successful runs only) and flow / plain."""
    medians = {
        mode: statistics.median(getattr(r, metric) for r in runs if r.mode == mode and r.ok)
        for mode in MODES
        if any(r.mode == mode and r.ok for r in runs)
    }
    if "plain" in medians and "flow" in medians and medians["plain"] > 0:
        return medians, round(medians["flow"] / medians["plain"], 3)
    return medians, None


def bench_size(
    models: int,
    repeats: int,
    env: dict[str, str],
    work: Path,
    out: Any,
    flows: Path,
    server: int | None = None,
) -> dict[str, Any]:
    project = write_project(work / f"project-{models}", models)
    repo_copy = repository_copy(work / f"repo-{models}", project.path, flows)
    warehouses = work / f"warehouse-{models}"
    warehouses.mkdir()
    # Unmeasured warm-ups, one per mode: dbt writes its partial-parse state (the flow keeps its
    # own in the artifacts block), as on any machine that ran before.
    measure_plain(project, env, warehouses / "warmup-plain.duckdb")
    measure_flow(repo_copy, env, warehouses / "warmup-flow.duckdb")
    runs: list[Measurement] = []
    for i in range(repeats):
        order = MODES if i % 2 == 0 else tuple(reversed(MODES))
        for mode in order:
            warehouse = warehouses / f"{mode}-{i}.duckdb"
            m = (
                measure_plain(project, env, warehouse, server)
                if mode == "plain"
                else measure_flow(repo_copy, env, warehouse, server)
            )
            runs.append(m)
            status = "ok" if m.ok else "FAILED"
            seen = (
                f"  task runs {m.task_runs}, summary rows {m.summary_rows},"
                f" visible p95 {m.visibility_p95_s} s"
                if m.flow_run_id
                else ""
            )
            print(
                f"  {models:>5} models  {mode:<5} run {i + 1}/{repeats}: {m.wall_s:7.1f} s"
                f"  cpu {m.cpu_s:6.1f} s  server cpu {m.server_cpu_s} s"
                f"  rss {m.peak_rss_mb:6.0f} MB  {status}{seen}",
                file=out, flush=True,
            )  # fmt: skip
    return size_summary(project.models, project.nodes, runs)


def size_summary(models: int, nodes: int, runs: Sequence[Measurement]) -> dict[str, Any]:
    """One size's medians, ratios, spread and per-node figures from its measured runs."""
    medians, ratio = median_ratio(runs)
    # CPU seconds (user + sys of the whole process tree) barely move with machine load, unlike
    # wall time: on a shared machine they are the steadier signal of what the flow adds.
    cpu_medians, cpu_ratio = median_ratio(runs, "cpu_s")
    server_medians = {
        mode: statistics.median(values)
        for mode in MODES
        if (values := [r.server_cpu_s for r in runs
                       if r.mode == mode and r.ok and r.server_cpu_s is not None])
    }  # fmt: skip

    def per_node_ms(figures: dict[str, float]) -> float | None:
        if "flow" not in figures or "plain" not in figures or not nodes:
            return None
        return round((figures["flow"] - figures["plain"]) / nodes * 1000, 2)

    lags = [r.visibility_p95_s for r in runs if r.visibility_p95_s is not None]
    # Of the flow's time, what lies outside the flow call: Python's start, importing Prefect
    # and the flow module, and the interpreter's exit. A cost per run, not per node.
    outside = [r.wall_s - r.flow_call_s for r in runs
               if r.mode == "flow" and r.ok and r.flow_call_s is not None]  # fmt: skip
    return {
        "models": models,
        "nodes": nodes,
        "median_wall_s": {k: round(v, 2) for k, v in medians.items()},
        "wall_spread_s": {
            mode: [round(min(w), 2), round(max(w), 2)]
            for mode in MODES
            if (w := [r.wall_s for r in runs if r.mode == mode and r.ok])
        },
        "flow_over_plain": ratio,
        "per_node_overhead_ms": per_node_ms(medians),
        "median_cpu_s": {k: round(v, 2) for k, v in cpu_medians.items()},
        "cpu_flow_over_plain": cpu_ratio,
        "per_node_client_cpu_ms": per_node_ms(cpu_medians),
        "median_server_cpu_s": {k: round(v, 2) for k, v in server_medians.items()},
        "per_node_server_cpu_ms": per_node_ms(server_medians),
        "visibility_p95_s": max(lags) if lags else None,
        "flow_outside_call_s": round(statistics.median(outside), 2) if outside else None,
        "runs": [asdict(r) for r in runs],
    }


def marginal_per_node_ms(per_size: dict[str, Any]) -> dict[str, float]:
    """What each node beyond the smaller size adds, between consecutive sizes:
    ((flow - plain) at the larger - (flow - plain) at the smaller) / (the nodes between). A
    cost per run (imports, exit) cancels out; what is left is the cost per node."""
    gaps = {
        int(size["nodes"]): med["flow"] - med["plain"]
        for size in per_size.values()
        if "flow" in (med := size["median_wall_s"]) and "plain" in med
    }
    nodes = sorted(gaps)
    return {
        f"{a}-{b}": round((gaps[b] - gaps[a]) / (b - a) * 1000, 2)
        for a, b in itertools.pairwise(nodes)
    }


def pip_noop_seconds(env: dict[str, str]) -> float:
    """What the pull step's pip_install_requirements costs when everything is installed."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-r", str(REPO_ROOT / "requirements.txt")],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    return round(time.monotonic() - started, 2)


async def _trigger_phases(
    stack: LocalStack, parameters: dict[str, Any] | None = None
) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    triggered = datetime.now(UTC)
    flow_run = await run_deployment(  # type: ignore[misc]
        deployment_full_name(),
        parameters=parameters or {"target": "local"},
        timeout=900,
        poll_interval=1,
    )
    async with get_client() as client:
        states = await client.read_flow_run_states(flow_run.id)
    task_runs = await recorded_task_runs(str(flow_run.id))
    at = {s.type.value: s.timestamp for s in states}
    starts = [t.start_time for t in task_runs if t.start_time]
    first_node = min(starts) if starts else None
    final = states[-1] if states else None

    def seconds(a: datetime | None, b: datetime | None) -> float | None:
        return round((b - a).total_seconds(), 2) if a and b else None

    return {
        "flow_run_id": str(flow_run.id),
        "state": final.name if final else "Unknown",
        "nodes": len(task_runs),
        "trigger_to_dbt_start_s": seconds(triggered, first_node),
        "trigger_to_completed_s": seconds(triggered, final.timestamp if final else None),
        "phases_s": {
            "trigger_to_picked_up": seconds(triggered, at.get("PENDING")),
            "picked_up_to_flow_running (pull steps, imports)": seconds(
                at.get("PENDING"), at.get("RUNNING")
            ),
            "flow_running_to_first_node (profiles, dbt parse)": seconds(
                at.get("RUNNING"), first_node
            ),
            "first_node_to_final": seconds(first_node, final.timestamp if final else None),
        },
    }


def bench_trigger(stack: LocalStack, out: Any) -> dict[str, Any]:
    """Deploy prefect.yaml, start a worker, trigger twice; the second (warm) run is reported."""
    stack.ensure_pool()
    stack.deploy()
    stack.start_worker()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # Settings are read at import: point this process's client at the stack explicitly (an
    # environment variable set now would be ignored, and an ephemeral server started instead).
    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        cold = asyncio.run(_trigger_phases(stack))
        print(f"  trigger (cold worker): {json.dumps(cold)}", file=out, flush=True)
        warm = asyncio.run(_trigger_phases(stack))
        print(f"  trigger (warm worker): {json.dumps(warm)}", file=out, flush=True)
    return {"cold": cold, "warm": warm}


def bench_cold_start(work: Path, repository: Path, out: Any) -> dict[str, Any]:
    """One run as Prefect Cloud starts it: a fresh environment holding only what the image holds
    (migration/cloudlike.py), the pull steps installing requirements.txt with no download cache."""
    stack = CloudlikeStack(home=work / "cloudlike", repository=repository, cold=True)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        stack.prepare(out=out)
        with temporary_settings({PREFECT_API_URL: stack.api_url}):
            # dev on the Snowflake emulator: requirements.txt holds no DuckDB (target local)
            cold = asyncio.run(_trigger_phases(stack, {"target": "dev", "exclude": EXCLUDE}))
        print(f"  trigger (fresh environment, cold): {json.dumps(cold)}", file=out, flush=True)
        return cold
    finally:
        stack.stop()


def machine_info() -> dict[str, Any]:
    from importlib.metadata import version

    uptime = Path("/proc/uptime").read_text().split()[0] if Path("/proc/uptime").exists() else ""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "uptime_s": float(uptime) if uptime else None,
        "versions": {p: version(p) for p in ("prefect", "prefect-dbt", "dbt-core", "dbt-duckdb")},
    }


def run_bench(
    sizes: Sequence[int],
    repeats: int | Sequence[int],
    results_path: Path,
    trigger: bool = True,
    api_url: str | None = None,
    out: Any = sys.stdout,
    flows: Path = REPO_ROOT / "flows",
) -> dict[str, Any]:
    started = datetime.now(UTC)
    results: dict[str, Any] = {
        "started": started.isoformat(),
        "flows": str(flows),
        "machine_start": machine_info(),
    }
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
        work = Path(tmp)
        stack = LocalStack(
            home=work / "stack",
            port=free_port(),
            repository=snapshot_repository(work / "repository") if trigger else REPO_ROOT,
        )
        env = stack.env()
        (stack.home / "prefect").mkdir(parents=True, exist_ok=True)
        if api_url:
            env["PREFECT_API_URL"] = api_url
        try:
            if not api_url:
                print(f"starting a Prefect server on {stack.api_url} ...", file=out, flush=True)
                stack.start_server(timeout=600)  # a loaded machine starts it slowly
                # As deployed: runs keep their dbt artifacts (and partial-parse state).
                stack.ensure_artifact_store()
            # The flow holds its target's concurrency slot: the limits must exist (as deployed).
            subprocess.run(
                [sys.executable, "-m", "migration", "concurrency", "ensure"],
                env=env, cwd=REPO_ROOT, check=True, capture_output=True,
            )  # fmt: skip
            server = server_process_group(int(urlsplit(env["PREFECT_API_URL"]).port or 0))
            per_size: dict[str, Any] = {}
            pairs = [repeats] * len(sizes) if isinstance(repeats, int) else list(repeats)
            for models, repeats_here in zip(sizes, pairs, strict=True):
                print(f"size {models}:", file=out, flush=True)
                size = bench_size(models, repeats_here, env, work, out, flows, server)
                per_size[str(models)] = size
                results[f"flow_over_plain_{models}"] = size["flow_over_plain"]
                results[f"cpu_flow_over_plain_{models}"] = size["cpu_flow_over_plain"]
                results["sizes"] = per_size
                for key in ("per_node_overhead_ms", "per_node_client_cpu_ms",
                            "per_node_server_cpu_ms", "visibility_p95_s",
                            "flow_outside_call_s"):  # fmt: skip
                    results[key] = {n: size[key] for n, size in per_size.items()}
                results["marginal_per_node_ms"] = marginal_per_node_ms(per_size)
                # Written after every size: a long run stopped later keeps what it measured.
                _write_results(results, results_path)
            rss = [r["peak_rss_mb"] for s in per_size.values() for r in s["runs"]]
            results["peak_rss_mb"] = round(max(rss), 1) if rss else None
            results["peak_rss_mb_by_mode"] = {
                mode: round(max(r["peak_rss_mb"] for s in per_size.values() for r in s["runs"]
                                if r["mode"] == mode), 1)
                for mode in MODES
                if any(r["mode"] == mode for s in per_size.values() for r in s["runs"])
            }  # fmt: skip
            floor = measure_prefect_floor(env, max(pairs))
            results["prefect_floor"] = floor
            results["prefect_floor_ms_per_node"] = {
                n: round(floor["floor_s"] * 1000 / entry["nodes"], 2)
                for n, entry in per_size.items()
            }
            print(f"prefect floor (an empty flow's process): {json.dumps(floor)}", file=out)
            results["pip_noop_s"] = pip_noop_seconds(env)
            results["trigger_to_dbt_start_s"] = None
            results["trigger_to_completed_s"] = None
            results["cold_trigger_to_dbt_start_s"] = None
            if trigger and not api_url:
                print("trigger path (tenant project, through the worker):", file=out, flush=True)
                runs = bench_trigger(stack, out)
                results["trigger"] = runs
                results["trigger_to_dbt_start_s"] = runs["warm"]["trigger_to_dbt_start_s"]
                results["trigger_to_completed_s"] = runs["warm"]["trigger_to_completed_s"]
                cold = bench_cold_start(work, stack.repository, out)
                results["trigger"]["fresh_environment"] = cold
                results["cold_trigger_to_dbt_start_s"] = cold["trigger_to_dbt_start_s"]
        finally:
            stack.stop()
    results["machine_end"] = machine_info()
    results["elapsed_s"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    _write_results(results, results_path)
    print_table(results, out)
    print(f"results: {results_path}", file=out)
    return results


def _write_results(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def print_table(results: dict[str, Any], out: Any) -> None:
    print(
        f"\n{'models':>7} {'nodes':>6} {'plain s':>9} {'flow s':>9} {'flow/plain':>11}"
        f" {'ms/node':>8} {'client cpu ms/node':>19} {'server cpu ms/node':>19}"
        f" {'visible p95 s':>14}",
        file=out,
    )
    nan = float("nan")
    for size in results.get("sizes", {}).values():
        med = size["median_wall_s"]

        def num(value: float | None) -> float:
            return nan if value is None else value

        print(
            f"{size['models']:>7} {size['nodes']:>6} {med.get('plain', nan):>9.1f}"
            f" {med.get('flow', nan):>9.1f} {num(size['flow_over_plain']):>11.2f}"
            f" {num(size['per_node_overhead_ms']):>8.2f}"
            f" {num(size['per_node_client_cpu_ms']):>19.2f}"
            f" {num(size['per_node_server_cpu_ms']):>19.2f}"
            f" {num(size['visibility_p95_s']):>14.2f}",
            file=out,
        )
    for key in ("flow_outside_call_s", "marginal_per_node_ms", "prefect_floor_ms_per_node",
                "trigger_to_dbt_start_s",
                "cold_trigger_to_dbt_start_s", "trigger_to_completed_s", "pip_noop_s",
                "peak_rss_mb"):  # fmt: skip
        print(f"{key}: {results.get(key)}", file=out)


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"BENCH_SIZES must be whole numbers of models, got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"BENCH_SIZES must list positive model counts, got {text!r}")
    return sizes


def parse_repeats(text: str, sizes: Sequence[int]) -> list[int]:
    """A/B pairs per size: one count for every size, or one per size ("5 2" with sizes
    "500 2000": five pairs at 500 models, two at 2,000)."""
    try:
        counts = [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"BENCH_REPEATS must be whole numbers of pairs, got {text!r}") from None
    if len(counts) == 1:
        counts *= len(sizes)
    if len(counts) != len(sizes) or any(c < 1 for c in counts):
        raise ValueError(
            f"BENCH_REPEATS must be one positive count, or one per size in BENCH_SIZES "
            f"({len(sizes)}), got {text!r}"
        )
    return counts


def main(args: argparse.Namespace) -> int:
    try:
        sizes = parse_sizes(args.sizes)
        repeats = parse_repeats(args.repeats, sizes)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = run_bench(
        sizes,
        repeats,
        Path(args.results),
        trigger=not args.no_trigger,
        api_url=args.api_url,
        flows=Path(args.flows_dir),
    )
    failed = [
        f"{s['models']} models {r['mode']} run"
        for s in results["sizes"].values() for r in s["runs"] if not r["ok"]
    ]  # fmt: skip
    if failed:
        print("failed runs: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench", help="benchmark the flow against plain dbt on synthetic projects (make bench)"
    )
    parser.add_argument(
        "--sizes",
        default=DEFAULT_SIZES,
        help="model counts to benchmark (`make bench BENCH_SIZES=...`, default %(default)r)",
    )
    parser.add_argument(
        "--repeats",
        default="3",
        help="A/B pairs per size, one count or one per size, e.g. '5 2'; medians are reported "
        "(`make bench BENCH_REPEATS=...`, default %(default)s)",
    )
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), help="results JSON path")
    parser.add_argument(
        "--no-trigger", action="store_true", help="skip the deployment/worker trigger path"
    )
    parser.add_argument(
        "--api-url",
        help="use this running Prefect server for the flow runs instead of starting one "
        "(implies no trigger path)",
    )
    parser.add_argument(
        "--flows-dir",
        default=str(REPO_ROOT / "flows"),
        help="benchmark the flows package in this directory, e.g. a candidate change "
        "(default: this repository's flows/)",
    )
    parser.set_defaults(handler=main)
