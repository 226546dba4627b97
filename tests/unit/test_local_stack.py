"""migration/local_stack.py without a server: how it starts and stops its processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dbt_runtime.project import REPO_ROOT

# Stands for `prefect worker start`: on SIGTERM it sends itself SIGINT (Prefect's worker signal
# handlers) and stops cleanly on the KeyboardInterrupt, as the worker logs "Worker ... stopped!".
WORKER_LIKE = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
print("ready", flush=True)
try:
    while True:
        time.sleep(0.1)
except KeyboardInterrupt:
    print("stopped cleanly", flush=True)
"""

# `make run` started from a background job of a script (`make run &`, nohup, a CI runner):
# SIGINT is ignored there, and children inherit that.
OPERATOR = """
import signal, sys, time
from pathlib import Path
signal.signal(signal.SIGINT, signal.SIG_IGN)
from migration.local_stack import LocalStack

home = Path(sys.argv[1])
stack = LocalStack(home=home, port=1, repository=home)
stack._spawn("worker", [sys.executable, "-c", sys.argv[2]])
log = home / "logs" / "worker.log"
deadline = time.monotonic() + 60
while b"ready" not in log.read_bytes():
    assert time.monotonic() < deadline, "the worker-like child never started"
    time.sleep(0.05)
print(stack.stop())
"""


def test_a_stack_started_where_sigint_is_ignored_still_stops_its_worker_cleanly(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", OPERATOR, str(tmp_path), WORKER_LIKE],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "worker (pid" in done.stdout
    # Not killed 20 s later with whatever it was running: it got the interrupt and ended.
    assert "stopped cleanly" in (tmp_path / "logs" / "worker.log").read_text()
