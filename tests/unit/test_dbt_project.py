"""flows/dbt_project.py: what a run refused for its parameters costs before it fails."""

from __future__ import annotations

import subprocess
import sys

from dbt_runtime.project import REPO_ROOT

# In a fresh process, as a worker starts a flow run: load the flow, then refuse hostile values
# the way the flow does (dbt_runtime/invocation.py), and list what of dbt got imported.
PROBE = """
import sys
import flows.dbt_project
from dbt_runtime.invocation import InvalidParameter, build_invocation
refused = []
for values in ({"vars": {"x": "{{ env_var('HOME') }}"}}, {"select": ["--flag"]},
               {"state": "s" * 5000}):
    try:
        build_invocation("build", "local", **values)
    except InvalidParameter as exc:
        refused.append(str(exc).split(":")[0])
print(refused)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("dbt", "prefect_dbt")))
"""


def test_a_refused_run_imports_neither_dbt_nor_prefect_dbt() -> None:
    """Loading the flow and refusing its values take neither dbt nor prefect-dbt (seconds of
    CPU in a fresh flow-run process): the run fails that much sooner."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    refused, loaded = done.stdout.strip().splitlines()
    assert refused == "[\"parameter 'vars'\", \"parameter 'select'\", \"parameter 'state'\"]"
    assert loaded == "[]", loaded
