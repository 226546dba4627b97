"""`make run-cloudlike`: the deployment run the way Prefect Cloud's managed pool runs it.

A local Prefect server (its own port, under `.local/cloudlike/`) and a process worker whose job
command is migration/fresh_env.py: every flow run starts in a fresh environment that holds only
what the image `prefecthq/prefect:<pin>-python3.12` holds (Python 3.12, prefect, uv, copied from a
base environment built once), a fresh HOME, TMPDIR and working directory; prefect.yaml's pull
steps clone and install the rest. Kept artifacts go to an S3Bucket block on moto's S3 server
(127.0.0.1), dbt to the fakesnow Snowflake emulator, the blocks registered by the `blocks/`
scripts with fake credentials put in their environment (never in the repository). Then a
scheduled-style `prod` build and an ad-hoc `dev` build, each reported with its state, node
counts, where its artifacts were kept and its UI link. `make stop` stops all of it, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from dbt_runtime import artifact_store
from dbt_runtime.project import REPO_ROOT, schedules, work_pool_name
from dbt_runtime.settings import env_name, get_settings
from migration.cloud import pinned_version, python_version
from migration.local_stack import DEFAULT_HOME, LocalStack, free_port, trigger_run
from migration.work_pool import operator_job_template

HOME = DEFAULT_HOME / "cloudlike"
# The image's stand-in and the package download cache (a nearby mirror): shared by every
# cloud-like stack on this machine, never holding the project's requirements.
CACHE = DEFAULT_HOME / "cloudlike-cache"
BUCKET = "wg-dbt-artifacts"
S3_BLOCK = f"{artifact_store.S3_BLOCK_TYPE}/wg-dbt-artifacts"
REGION = "us-east-1"
# What the emulator cannot run (tests/integration/test_snowflake_path.py explains).
EMULATOR_EXCLUDE = ["test_type:unit"]
PROD_SCHEDULE = "wg-prod-nightly"


def identity(target: str) -> dict[str, str]:
    """Fake Snowflake identities for the emulator (it accepts anything); the operator's own
    WG_SNOWFLAKE_<T>_* variables win. The password is made up per stack, never stored."""
    p = f"WG_SNOWFLAKE_{target.upper()}_"
    fake = {
        p + "ACCOUNT": "fake-account",
        p + "USER": f"WG_DBT_{target.upper()}",
        p + "ROLE": f"WG_DBT_{target.upper()}_ROLE",
        p + "WAREHOUSE": f"WG_{target.upper()}_WH",
        p + "DATABASE": f"WG_{target.upper()}",
        p + "SCHEMA": "ANALYTICS",
        p + "PASSWORD": secrets.token_urlsafe(16),
    }
    return {k: os.environ.get(k, v) for k, v in fake.items()}


def _wait_http(url: str, proc_alive: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            pass
        if not proc_alive():
            raise RuntimeError(f"{what} exited before answering {url}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not answering {url} after {timeout}s")
        time.sleep(0.3)


@dataclass
class CloudlikeStack(LocalStack):
    """LocalStack whose worker starts each flow run in a fresh environment, plus moto + fakesnow."""

    home: Path = HOME
    port: int = field(default_factory=free_port)  # not make run's: both stacks may be up
    cache: Path = CACHE
    # False: runs share the uv download cache (a nearby mirror). True: none (the cold figure).
    cold: bool = False
    worker_limit: int | None = 1  # one container at a time: fresh_env reuses constant paths
    processes: tuple[str, ...] = ("worker", "server", "moto", "fakesnow")
    fake_aws: dict[str, str] = field(default_factory=dict)
    s3_port: int = field(init=False, default=0)
    snowflake_port: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        ports = self._ports()
        self.port = ports.get("prefect", self.port)
        self.s3_port = ports.get("moto") or free_port()
        self.snowflake_port = ports.get("fakesnow") or free_port()
        self.extra_env = {
            **self.extra_env,
            env_name("artifacts_block"): S3_BLOCK,
            "WG_SNOWFLAKE_HOST": "127.0.0.1",
            "WG_SNOWFLAKE_PORT": str(self.snowflake_port),
            "WG_SNOWFLAKE_PROTOCOL": "http",
        }

    def _ports(self) -> dict[str, int]:
        """The ports of a stack already running under this home (make run-cloudlike twice)."""
        path = self.home / "ports.json"
        if path.is_file() and self._running_pid("server"):
            return {k: int(v) for k, v in json.loads(path.read_text()).items()}
        return {}

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def records(self) -> Path:
        """What each run's fresh environment held before the pull steps (migration/fresh_env.py)."""
        return self.home / "fresh-environments"

    @property
    def base_env(self) -> Path:
        return self.cache / f"base-env-prefect{pinned_version('prefect')}-uv{version('uv')}-pyc"

    # -- the image's stand-in ---------------------------------------------------------------

    def ensure_base_env(self) -> Path:
        """Python 3.12 + the pinned prefect + uv, built once with uv (what the image holds).

        Compiled to bytecode as Prefect's Dockerfile installs it (UV_COMPILE_BYTECODE=1): without
        it, where PYTHONDONTWRITEBYTECODE is set (this machine), every fresh-environment run
        compiled prefect again, about 3 s of CPU per run.
        """
        if (self.base_env / "bin" / "python").exists():
            return self.base_env
        building = self.base_env.with_name(f"{self.base_env.name}.{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        python = Path(sys.base_prefix) / "bin" / f"python{python_version()}"
        uv = [sys.executable, "-m", "uv"]
        env = {**os.environ, "UV_CACHE_DIR": str(self.cache / "uv"), "UV_PYTHON_DOWNLOADS": "never"}
        env.pop("VIRTUAL_ENV", None)
        subprocess.run(
            [*uv, "venv", "--quiet", "--seed", "--relocatable", "--python", str(python),
             str(building)],
            env=env, check=True,
        )  # fmt: skip
        subprocess.run(
            [*uv, "pip", "install", "--quiet", "--compile-bytecode",
             "--python", str(building / "bin" / "python"),
             f"prefect=={pinned_version('prefect')}", f"uv=={version('uv')}"],
            env=env, check=True,
        )  # fmt: skip
        with contextlib.suppress(OSError):  # another stack built it first: keep theirs
            building.rename(self.base_env)
        shutil.rmtree(building, ignore_errors=True)
        return self.base_env

    def job_command(self) -> str:
        import shlex

        return shlex.join(
            [sys.executable, str(REPO_ROOT / "migration" / "fresh_env.py"),
             "--root", str(self.home / "container"), "--base-env", str(self.base_env),
             "--records", str(self.records),
             "--uv-cache", "" if self.cold else str(self.cache / "uv")]
        )  # fmt: skip

    # -- services -----------------------------------------------------------------------------

    def start_services(self) -> None:
        """moto's S3 server and fakesnow on 127.0.0.1, unless running."""
        bin_dir = Path(sys.executable).parent
        if not self._running_pid("moto"):
            self._spawn(
                "moto", [str(bin_dir / "moto_server"), "-H", "127.0.0.1", "-p", str(self.s3_port)]
            )
        _wait_http(self.s3_endpoint, lambda: self._running_pid("moto"), "moto_server")
        if not self._running_pid("fakesnow"):
            self._spawn(
                "fakesnow",
                [sys.executable, "-m", "fakesnow", "-s", "--host", "127.0.0.1",
                 "-p", str(self.snowflake_port)],
            )  # fmt: skip
        _wait_http(
            f"http://127.0.0.1:{self.snowflake_port}/", lambda: self._running_pid("fakesnow"),
            "fakesnow",
        )  # fmt: skip
        ports = {"prefect": self.port, "moto": self.s3_port, "fakesnow": self.snowflake_port}
        (self.home / "ports.json").write_text(json.dumps(ports))

    def aws_env(self) -> dict[str, str]:
        """Fake AWS keys (moto accepts any), made up once per stack, given only to the script."""
        if not self.fake_aws:
            self.fake_aws = {
                "WG_ARTIFACTS_AWS_ACCESS_KEY_ID": "FAKE" + secrets.token_hex(8).upper(),
                "WG_ARTIFACTS_AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24),
            }
        return self.fake_aws

    def create_bucket(self) -> None:
        import boto3

        keys = self.aws_env()
        s3 = boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name=REGION,
            aws_access_key_id=keys["WG_ARTIFACTS_AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=keys["WG_ARTIFACTS_AWS_SECRET_ACCESS_KEY"],
        )
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=BUCKET)

    def script(self, *argv: str, env: dict[str, str]) -> str:
        """Run a block registration script as an operator would (inputs in its environment)."""
        done = subprocess.run(
            [sys.executable, "-m", *argv], env={**self.env(), **env}, cwd=REPO_ROOT,
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout.strip()

    def register_blocks(self) -> list[str]:
        s3 = ("--bucket", BUCKET, "--region", REGION, "--endpoint-url", self.s3_endpoint)
        return [
            self.script("blocks.register_artifacts", *s3, env=self.aws_env()),
            *(
                self.script("blocks.register_snowflake", "--target", t, env=identity(t))
                for t in ("dev", "prod")
            ),
        ]

    async def _ensure_fresh_env_pool(self) -> None:
        from prefect.client.orchestration import PrefectClient
        from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
        from prefect.exceptions import ObjectNotFound
        from prefect.workers.process import ProcessWorker

        # As the managed pool: only what an operator may change, and the command written in
        # (a run that could set it would choose what the "container" runs).
        template = operator_job_template(
            ProcessWorker.get_default_base_job_template(), fixed={"command": self.job_command()}
        )
        async with PrefectClient(self.api_url) as client:
            try:
                await client.read_work_pool(work_pool_name())
                await client.update_work_pool(
                    work_pool_name(), WorkPoolUpdate(base_job_template=template)
                )
            except ObjectNotFound:
                pool = WorkPoolCreate(
                    name=work_pool_name(), type="process", base_job_template=template
                )
                await client.create_work_pool(pool)

    def prepare(self, out: Any = sys.stdout) -> None:
        """Everything up to the first trigger: services, blocks, deployment, worker."""
        print(f"Prefect server: {self.ui_url} (home {self.home})", file=out, flush=True)
        self.start_server()
        self.start_services()
        self.ensure_base_env()
        self.create_bucket()
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            for line in self.register_blocks():
                print(line, file=out, flush=True)
            asyncio.run(self._ensure_fresh_env_pool())
        print("Deploying prefect.yaml ...", file=out, flush=True)
        print(self.deploy(), file=out, flush=True)
        self.start_worker()

    def fresh_record(self, flow_run_id: str) -> dict[str, Any] | None:
        path = self.records / f"{flow_run_id}.json"
        return dict(json.loads(path.read_text())) if path.is_file() else None


def scheduled_parameters(slug: str = PROD_SCHEDULE) -> dict[str, Any]:
    """A schedule's parameters (prefect.yaml), minus what the emulator cannot run."""
    (schedule,) = (s for s in schedules() if s.slug == slug)
    return {**schedule.parameters, "exclude": EMULATOR_EXCLUDE}


def kept_location(stack: CloudlikeStack, flow_run_id: str) -> str:
    """Where the run's artifacts were kept, read back from the S3 store ("not kept" if none)."""
    os.environ[env_name("artifacts_block")] = S3_BLOCK
    from prefect.settings import PREFECT_API_URL, temporary_settings

    get_settings.cache_clear()
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        try:
            store = artifact_store.load_store()
            return artifact_store.find_kept_run(store, flow_run_id).location
        except artifact_store.ArtifactStoreError as exc:
            return f"not kept: {exc}"


def run_main() -> int:
    stack = CloudlikeStack()
    stack.prepare()
    runs = {
        "prod (scheduled-style)": scheduled_parameters(),
        "dev (ad hoc)": {"target": "dev", "command": "build", "exclude": EMULATOR_EXCLUDE},
    }
    results = []
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # Prefect read its settings when prepare() imported it: point this process's client here.
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        for label, parameters in runs.items():
            print(f"\n== {label}: {json.dumps(parameters)}", flush=True)
            result = trigger_run(stack, parameters)
            result["kept"] = kept_location(stack, result["flow_run_id"])
            result["fresh_environment"] = stack.fresh_record(result["flow_run_id"])
            results.append((label, result))
    print()
    for label, result in results:
        total = sum(result["nodes"].values())
        print(
            f"{label}: {result['state']}: {total} dbt nodes {result['nodes']}; "
            f"artifacts kept at {result['kept']} -> {result['url']}"
        )
    return 0 if all(r["state"] == "Completed" for _, r in results) else 1


def stop_main() -> int:
    stopped = CloudlikeStack().stop()
    print("stopped (cloud-like): " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "cloudlike",
        help="run the deployment as Prefect Cloud does: a fresh environment per run, kept "
        "artifacts in S3 (make run-cloudlike / stop)",
    )
    parser.add_argument("action", choices=["run", "stop"])
    parser.set_defaults(handler=lambda args: stop_main() if args.action == "stop" else run_main())
