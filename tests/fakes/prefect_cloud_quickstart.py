"""Run prefect-cloud's own `deploy` command against a recording fake of Prefect Cloud and GitHub.

Executed by tests/integration/test_prefect_cloud_quickstart.py with the python of a venv that
holds only requirements-quickstart.txt (prefect-cloud and its dependencies, as `uvx` has them),
so this file imports nothing of the repository's and nothing but the standard library, httpx
and prefect-cloud. Usage:

    python prefect_cloud_quickstart.py OUT.json CHECKOUT -- <prefect-cloud arguments>

Everything `prefect-cloud deploy` does runs as released: argument parsing, reading the flow
file (fetched "from GitHub" = read from CHECKOUT), deriving the flow name, deployment name and
parameter schema, and its client's requests. Only the network is replaced: the API answers from
here and every request is written to OUT.json.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from prefect_cloud import auth, github
from prefect_cloud.cli.root import app
from prefect_cloud.client import PrefectCloudClient

API = "https://api.prefect.cloud/api/accounts/a/workspaces/w"
UI = "https://app.prefect.cloud/account/a/workspace/w"
MANAGED_POOL = {"name": "default-managed-pool", "type": "prefect:managed", "is_paused": False}


def main(out: Path, checkout: Path, argv: list[str]) -> int:
    requests: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        requests.append({"method": request.method, "path": request.url.path, "json": body})
        path = request.url.path.removeprefix(httpx.URL(API).path)
        if (request.method, path) == ("POST", "/work_pools/filter"):
            return httpx.Response(200, json=[MANAGED_POOL])
        if (request.method, path) in (("POST", "/flows/"), ("POST", "/deployments/")):
            return httpx.Response(201, json={"id": str(uuid.uuid4())})
        return httpx.Response(404, json={"detail": "not in the fake"})  # e.g. no GitHub App

    class FakeCloudClient(PrefectCloudClient):
        def __init__(self) -> None:
            httpx.AsyncClient.__init__(self, base_url=API, transport=httpx.MockTransport(answer))

    async def urls() -> tuple[str, str, str]:
        return UI, API, "pnu_fake"

    async def client() -> PrefectCloudClient:
        return FakeCloudClient()

    async def file_contents(
        self: github.GitHubRepo, filepath: str, credentials: str | None = None
    ) -> str:
        path = checkout / filepath
        if not path.is_file():
            raise github.FileNotFound(f"File not found: {filepath} in {self}")
        return path.read_text()

    auth.get_cloud_urls_or_login = urls  # type: ignore[assignment]
    auth.get_prefect_cloud_client = client  # type: ignore[assignment]
    github.GitHubRepo.get_file_contents = file_contents  # type: ignore[method-assign]

    try:
        app(argv, prog_name="prefect-cloud", standalone_mode=False)
    finally:
        environment = {
            name: importlib.util.find_spec(name) is not None
            for name in ("prefect", "dbt", "yaml", "dbt_runtime")
        }
        out.write_text(json.dumps({"requests": requests, "importable": environment}))
    return 0


if __name__ == "__main__":
    separator = sys.argv.index("--")
    out, checkout = sys.argv[1:separator]
    sys.exit(main(Path(out), Path(checkout), sys.argv[separator + 1 :]))
