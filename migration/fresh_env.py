"""The cloud-like work pool's job command: every flow run in a fresh environment, as a Prefect
Cloud managed pool's container gives it (migration/cloudlike.py sets it as the pool's command).

Run by the worker's Python, standard library only, outside the environment it makes (it stands
for the container runtime, not for code in the image). For each flow run it:
1. wipes and recreates <root>/{env,home,work,tmp}: constant paths, as in a container (dbt's
   partial-parse state records absolute paths), with nothing an earlier run left (the worker runs
   one flow run at a time);
2. copies the prebuilt base environment (Python 3.12, prefect, uv: what the image holds) into
   env; never one holding the project's requirements;
3. asks the new environment's Python what it holds before any pull step (dbt importable? HOME
   empty?) and records it in <records>/<flow run id>.json, where the tests read it;
4. replaces itself with `<env>/bin/python -m prefect.engine` with HOME, TMPDIR, PATH and the
   working directory pointing into the fresh tree: the engine runs prefect.yaml's pull steps
   (git_clone, then the requirements) and then the flow.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# Environment variables a container would not have: the worker's own interpreter, caches and
# homes. Everything else the worker passes (PREFECT_API_URL, the flow run id, WG_*) stays.
DROPPED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PREFECT_HOME", "XDG_CACHE_HOME",
           "XDG_CONFIG_HOME", "XDG_DATA_HOME", "PIP_FIND_LINKS")  # fmt: skip
PROBE = (
    "import importlib.util, json, os, sys; print(json.dumps({"
    "'dbt_importable': importlib.util.find_spec('dbt') is not None, "
    "'prefect_importable': importlib.util.find_spec('prefect') is not None, "
    "'home_entries': sorted(os.listdir(os.environ['HOME'])), "
    "'cwd_entries': sorted(os.listdir('.')), 'prefix': sys.prefix}))"
)


def fresh_tree(root: Path, base_env: Path) -> dict[str, Path]:
    tree = {name: root / name for name in ("env", "home", "work", "tmp")}
    for path in tree.values():
        if path.exists():
            shutil.rmtree(path)
    for name in ("home", "work", "tmp"):
        tree[name].mkdir(parents=True)
    shutil.copytree(base_env, tree["env"], symlinks=True)
    return tree


def run_environment(tree: dict[str, Path], uv_cache: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED}
    worker_bin = str(Path(sys.executable).parent)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != worker_bin]
    env.update(
        HOME=str(tree["home"]),
        TMPDIR=str(tree["tmp"]),
        PATH=os.pathsep.join([str(tree["env"] / "bin"), *path]),
        PWD=str(tree["work"]),
    )
    env.pop("UV_CACHE_DIR", None)
    if uv_cache:  # a shared download cache stands for a nearby mirror
        env["UV_CACHE_DIR"] = uv_cache
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--base-env", type=Path, required=True)
    parser.add_argument("--records", type=Path, required=True)
    parser.add_argument("--uv-cache", default="")
    args = parser.parse_args(argv)
    started = time.time()
    tree = fresh_tree(args.root, args.base_env)
    env = run_environment(tree, args.uv_cache or None)
    python = str(tree["env"] / "bin" / "python")
    probe = subprocess.run(
        [python, "-c", PROBE], env=env, cwd=tree["work"], capture_output=True, text=True, check=True
    )
    record = {
        **json.loads(probe.stdout),
        "flow_run_id": os.environ.get("PREFECT__FLOW_RUN_ID", ""),
        "root": str(args.root),
        "prepared_s": round(time.time() - started, 2),
        "uv_cache": args.uv_cache or None,
    }
    args.records.mkdir(parents=True, exist_ok=True)
    (args.records / f"{record['flow_run_id'] or 'unknown'}.json").write_text(json.dumps(record))
    print(f"fresh environment for flow run {record['flow_run_id']}: {record}", flush=True)
    os.chdir(tree["work"])
    os.execve(python, [python, "-m", "prefect.engine"], env)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
