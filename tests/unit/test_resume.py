"""Resuming a crashed run: which nodes count as built, and the dbt call that skips them.

tests/integration/test_resume.py proves the same with real dbt.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dbt_runtime.invocation import DbtCommand, InvalidParameter, Target, build_invocation
from dbt_runtime.resume import resume_invocation, succeeded_nodes
from dbt_runtime.task_runs import TASK_KEY_PREFIX


def _task_run(unique_id: str, state_type: str, name: str | None = None) -> Any:
    from prefect.client.schemas.objects import State, StateType

    state = State(type=StateType(state_type), name=name)
    return SimpleNamespace(task_key=f"{TASK_KEY_PREFIX}-{unique_id}", state=state)


def test_only_completed_not_skipped_nodes_count_as_built() -> None:
    runs = [
        _task_run("model.p.a", "COMPLETED"),
        _task_run("test.p.t1", "COMPLETED"),
        _task_run("model.p.b", "COMPLETED", name="Skipped"),
        _task_run("model.p.c", "FAILED"),
        _task_run("model.p.d", "RUNNING"),  # the node the process was killed in
        _task_run("model.p.e", "CRASHED"),
        SimpleNamespace(task_key="some-other-task", state=None),
    ]
    assert succeeded_nodes(runs) == {"model.p.a", "test.p.t1"}


MANIFEST = {
    "nodes": {
        "seed.p.s": {"resource_type": "seed"},
        "model.p.a": {"resource_type": "model"},
        "model.p.b": {"resource_type": "model"},
        "test.p.t1": {"resource_type": "test"},
    },
    "unit_tests": {"unit_test.p.a.u1": {"resource_type": "unit_test"}},
}


def _written(workdir: Path) -> dict[str, str]:
    results = json.loads((workdir / "run_results.json").read_text())["results"]
    return {r["unique_id"]: r["status"] for r in results}


def test_the_resume_is_the_crashed_selection_minus_what_it_built(tmp_path: Path) -> None:
    parameters = build_invocation(
        "build", "local", select=["stg_brands+", "tag:x"], exclude=["tag:slow"], vars={"x": 1}
    ).parameters
    workdir = tmp_path / "resume"
    resumed = resume_invocation(parameters, Target.local, {"model.p.a"}, MANIFEST, workdir)
    assert resumed.args == (
        "build", "--target", "local",
        "--select", "stg_brands+,result:skipped", "tag:x,result:skipped",
        "--exclude", "tag:slow",
        "--vars", json.dumps({"x": 1}),
        "--state", str(workdir),
    )  # fmt: skip
    assert _written(workdir) == {
        "seed.p.s": "skipped", "model.p.a": "success", "model.p.b": "skipped",
        "test.p.t1": "skipped", "unit_test.p.a.u1": "skipped",
    }  # fmt: skip
    assert "1 node(s) it built are left out" in resumed.note
    assert resumed.parameters == parameters  # a crash of the resume resumes the same run


def test_a_test_run_lists_only_tests_so_passed_tests_stay_out(tmp_path: Path) -> None:
    resumed = resume_invocation(
        {"command": "test"}, Target.local, {"test.p.t1"}, MANIFEST, tmp_path
    )
    assert resumed.args[resumed.args.index("--select") + 1] == "result:skipped"
    assert _written(tmp_path) == {"test.p.t1": "success", "unit_test.p.a.u1": "skipped"}


@pytest.mark.parametrize(
    ("succeeded", "manifest", "why"),
    [(set(), MANIFEST, "no node finished"), ({"model.p.a"}, None, "no manifest.json")],
)
def test_without_a_record_of_built_nodes_it_runs_again_whole(
    tmp_path: Path, succeeded: set[str], manifest: Any, why: str
) -> None:
    parameters = build_invocation("run", "local", select=["tag:x"]).parameters
    resumed = resume_invocation(parameters, Target.local, succeeded, manifest, tmp_path)
    assert resumed.args == ("run", "--target", "local", "--select", "tag:x")
    assert why in resumed.note


def test_a_command_without_a_selection_cannot_be_resumed(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter, match=r"parameter 'command'.*cannot be resumed"):
        resume_invocation(
            {"command": DbtCommand.docs_generate}, Target.local, set(), MANIFEST, tmp_path
        )
