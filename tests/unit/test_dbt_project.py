"""flows/dbt_project.py: what importing the flow costs a run that is refused before dbt."""

from __future__ import annotations

import subprocess
import sys

from dbt_runtime.project import REPO_ROOT


def test_the_flow_module_imports_neither_dbt_nor_prefect_dbt() -> None:
    """A run refused for its parameters or environment fails without loading dbt: the flow
    module and what it checks before dbt import none of it (dbt_runtime/run.py does)."""
    probe = (
        "import sys, flows.dbt_project; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dbt', 'prefect_dbt')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
