"""Flow parameters -> a validated dbt argv list.

Pure functions only: everything here is checked before dbt (or the warehouse) is touched, and
the result is a list of arguments handed to dbt's Python API, never a shell string.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from dbt_runtime._paths import state_root


class DbtCommand(StrEnum):
    """The dbt commands an operator may start from Prefect."""

    build = "build"
    """Seeds, models, snapshots and tests in DAG order (what the schedules run)."""
    run = "run"
    """Models only."""
    test = "test"
    """Data and unit tests only."""
    seed = "seed"
    """Load the CSV seeds (the raw layer)."""
    snapshot = "snapshot"
    """Capture slowly changing dimensions."""
    source_freshness = "source freshness"
    """Check how fresh the raw sources are."""
    docs_generate = "docs generate"
    """Build the documentation catalog."""
    retry = "retry"
    """Re-run only what failed or was skipped in the flow run `state` names (dbt retry)."""


class Target(StrEnum):
    """The profiles.yml targets: the one list of environments the deployment can build."""

    dev = "dev"
    """Snowflake, development database and credentials (least privilege)."""
    prod = "prod"
    """Snowflake, production database and credentials."""
    local = "local"
    """DuckDB file on the worker: the embedded default for workstations and tests."""


# The default of the flow's `timeout_seconds` (dbt_runtime/guards.py applies it). Here, with the
# parameter enums, because this module imports the standard library only: prefect-cloud's
# quickstart derives the deployment's form by evaluating the flow file's annotations and
# defaults without installing the runtime (tests/integration/test_prefect_cloud_quickstart.py).
# dbt Cloud jobs have no timeout unless set; a nightly build that is still going after 3 hours
# is stuck (the longest dbt Cloud run of this project took well under an hour).
DEFAULT_TIMEOUT_SECONDS = 3 * 60 * 60
# The parameter's upper bound (in its schema, so the form shows it): a day. Beyond it the
# deadline timers overflow, and no build of this project should take that long.
MAX_TIMEOUT_SECONDS = 24 * 60 * 60


class InvalidParameter(ValueError):
    """A flow parameter that cannot become a dbt invocation; the message names the parameter."""


MAX_VARS_BYTES = 64 * 1024
# A form is not a selector file: enough for any real selection, small enough for a message.
MAX_SELECTORS = 100
MAX_SELECTOR_CHARS = 256
MAX_STATE_CHARS = 512
# What dbt's Jinja would render: a parameter holding one is a template, i.e. code.
JINJA_DELIMITERS = ("{{", "{%", "{#")
# How much of the vars payload a label (state messages, notifications) shows.
LABEL_VARS_CHARS = 80
LABEL_MAX_CHARS = 400
# What dbt's node selection syntax uses (methods, graph operators, wildcards, intersections).
_SELECTOR = re.compile(r"^[A-Za-z0-9_.:+*/@,=#?\[\]-]+$")


@dataclass(frozen=True)
class DbtInvocation:
    """A validated dbt call: the argv list and what an operator wants to read about it."""

    command: DbtCommand
    target: Target
    args: tuple[str, ...]
    retry_from: Path | None = None
    """For `retry`: the directory holding the run_results.json of the run being retried."""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    """The validated parameters this came from: kept with the run, so a crash can be resumed."""
    note: str = ""
    """What an operator should read before dbt starts (e.g. what a resume leaves out)."""

    @property
    def label(self) -> str:
        """The command and selection, for state messages and notifications: the vars payload
        is cut to its first LABEL_VARS_CHARS characters and the whole to LABEL_MAX_CHARS."""
        shown = list(self.args)
        if "--vars" in shown and (i := shown.index("--vars") + 1) < len(shown):
            shown[i] = _truncated(shown[i], LABEL_VARS_CHARS)
        return _truncated(f"dbt {' '.join(shown)}", LABEL_MAX_CHARS)


def _truncated(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


@cache
def _command_params(command: DbtCommand) -> frozenset[str]:
    """The option names dbt itself accepts for `command` (read from dbt's CLI, not copied).

    Asked only for a parameter that is set and valid: dbt's CLI imports dbt (+5 s of CPU in a
    fresh flow-run process, measured with cProfile here), which a run refused for its values
    never needs, so it fails that much sooner.
    """
    from dbt.cli.main import cli

    words = command.value.split()
    click_command: Any = cli.commands[words[0]]
    for word in words[1:]:
        click_command = click_command.commands[word]
    return frozenset(param.name for param in click_command.params if param.name)


def _clean_text(name: str, value: str) -> str:
    if any(unicodedata.category(ch)[0] == "C" for ch in value):
        raise InvalidParameter(f"parameter {name!r}: contains control characters: {value!r}")
    return value


def selectors(name: str, values: Sequence[str] | str | None) -> list[str]:
    """Validate `select`/`exclude`: dbt selectors, each passed to dbt as data, never as a flag.

    A single string or an element holding several space-separated selectors (what people type
    into a form) is split like dbt splits `--select "a b"`.
    """
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, Sequence):
        raise InvalidParameter(f"parameter {name!r}: expected a list of dbt selectors")
    out: list[str] = []
    for raw in values:
        if not isinstance(raw, str):
            raise InvalidParameter(f"parameter {name!r}: {raw!r} is not a string")
        if len(raw) > MAX_SELECTOR_CHARS:
            raise InvalidParameter(
                f"parameter {name!r}: a selector of {len(raw)} characters, more than "
                f"{MAX_SELECTOR_CHARS}; use a tag or a YAML selector instead"
            )
        parts = _clean_text(name, raw).split()
        if not parts:
            raise InvalidParameter(f"parameter {name!r}: empty selector; remove it or name nodes")
        for part in parts:
            if part.startswith("-") or not _SELECTOR.match(part):
                raise InvalidParameter(
                    f"parameter {name!r}: {part!r} is not a dbt selector (use node names, "
                    "tag:x, path:x, source:x, +/@ graph operators; no leading '-', no shell "
                    "characters)"
                )
            out.append(part)
    if len(out) > MAX_SELECTORS:
        raise InvalidParameter(
            f"parameter {name!r}: {len(out)} selectors, more than {MAX_SELECTORS}; "
            "use a tag or a YAML selector instead"
        )
    return out


def _refuse_templates(value: Any, path: str) -> None:
    """Every key and string value of `vars`, recursively: data only, never a Jinja template.

    dbt renders a var's value as Jinja wherever a model calls `var()`, so a template in a
    parameter runs with the run's environment and the target's role."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            _refuse_templates(str(key), where)
            _refuse_templates(item, where)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _refuse_templates(item, f"{path}[{i}]")
    elif isinstance(value, str):
        found = [d for d in JINJA_DELIMITERS if d in value]
        if found:
            raise InvalidParameter(
                f"parameter 'vars': key {path!r} holds the Jinja delimiter {found[0]!r}; "
                "vars are data, never templates"
            )


def dbt_vars(values: Mapping[str, Any] | str | None) -> str | None:
    """Validate `vars` (a mapping of dbt project variables) and render it as dbt's --vars JSON."""
    if values is None or values == "" or values == {}:
        return None
    if isinstance(values, str):
        try:
            values = json.loads(values)
        except json.JSONDecodeError as exc:
            raise InvalidParameter(f"parameter 'vars': not JSON: {exc}") from None
    if not isinstance(values, Mapping):
        raise InvalidParameter(
            'parameter \'vars\': must be a mapping like {"reporting_currency": "USD"}, '
            f"got {type(values).__name__}"
        )
    rendered = json.dumps(dict(values), sort_keys=True, ensure_ascii=False)
    try:
        rendered.encode()
    except UnicodeEncodeError:
        # Lone surrogates: what undecodable (non-UTF-8) bytes become; dbt could not print them.
        raise InvalidParameter("parameter 'vars': holds text that is not valid UTF-8") from None
    if len(rendered.encode()) > MAX_VARS_BYTES:
        raise InvalidParameter(
            f"parameter 'vars': {len(rendered.encode())} bytes, more than {MAX_VARS_BYTES}"
        )
    for key in values:
        _clean_text("vars", str(key))
    _refuse_templates(values, "")
    return rendered


class StateKeyword(StrEnum):
    """`state` keywords: `<target>:<keyword>` picks a kept run of the flow on that target."""

    last_success = "last-success"
    """The newest Completed run."""
    last_failure = "last-failure"
    """The newest Failed or Crashed run (a Crashed one is resumed by command=retry)."""

    @property
    def state_types(self) -> list[str]:
        """The Prefect state types of the runs the keyword picks from."""
        return ["COMPLETED"] if self is StateKeyword.last_success else ["FAILED", "CRASHED"]


# Every finished run, whatever its outcome (`migration artifacts --latest` without --successful).
FINISHED_STATE_TYPES = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]
_KEYWORD_STATE = re.compile(r"^(?P<target>[a-z]+):(?P<keyword>[a-z][a-z-]*)$")
_FLOW_RUN_STATE = re.compile(
    r"^(?:flow-run:)?(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)


@dataclass(frozen=True)
class KeptState:
    """A `state` that names a flow run's kept artifacts instead of a directory."""

    flow_run_id: str | None = None
    """The run itself (`flow-run:<id>` or a bare id)."""
    target: Target | None = None
    """With `keyword`: the target whose newest matching run is meant (`prod:last-success`)."""
    keyword: StateKeyword | None = None

    @property
    def text(self) -> str:
        """How the reference is written in the `state` parameter."""
        if self.flow_run_id:
            return f"flow-run:{self.flow_run_id}"
        return f"{self.target}:{self.keyword}"


def state_reference(state: str | None) -> Path | KeptState | None:
    """`state` -> a directory path or a KeptState reference (pure: nothing is looked up)."""
    if not state:
        return None
    if len(state) > MAX_STATE_CHARS:
        raise InvalidParameter(
            f"parameter 'state': {len(state)} characters, more than {MAX_STATE_CHARS}; use "
            "a kept run (`prod:last-success`, `flow-run:<id>`) or a directory under the state root"
        )
    text = _clean_text("state", state).strip()
    if m := _FLOW_RUN_STATE.match(text.lower()):
        return KeptState(flow_run_id=m["id"])
    if m := _KEYWORD_STATE.match(text):
        known = {k.value for k in StateKeyword}
        if m["target"] not in {t.value for t in Target} or m["keyword"] not in known:
            raise InvalidParameter(
                f"parameter 'state': {state!r} is not a known keyword; use "
                f"<{'|'.join(t.value for t in Target)}>:<{'|'.join(sorted(known))}>, "
                "flow-run:<id>, or a directory with a manifest.json"
            )
        return KeptState(target=Target(m["target"]), keyword=StateKeyword(m["keyword"]))
    return Path(text)


@dataclass(frozen=True)
class ResolvedState:
    """Where a `state` reference points on disk, and which kept run it came from (if any)."""

    path: Path
    flow_run_id: str | None = None
    target: str | None = None


class KeptRuns(Protocol):
    """Where `state` references to kept runs are looked up: the kept-artifact store.

    Passed in (dbt_runtime/resume.py `KeptRunStates`), so that this module stays pure and the
    store, which needs the Prefect API, depends on it rather than the other way round.
    """

    def fetch(self, ref: KeptState) -> ResolvedState:
        """The kept run's artifacts on local disk; InvalidParameter when none were kept."""
        ...

    def resume(self, resolved: ResolvedState, target: Target) -> DbtInvocation:
        """`command=retry` for a kept run that left no run_results.json (it crashed)."""
        ...


def under_root(path: Path, root: Path) -> Path:
    """`path` (relative paths are taken from `root`) resolved, if it lies under `root`."""
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise InvalidParameter(
            f"parameter 'state': {str(path)!r} is not under the state root {root} (a directory "
            "must be placed there by the operator); or name a kept run: "
            f"<{'|'.join(t.value for t in Target)}>:last-success, flow-run:<id>"
        )
    return resolved


def resolve_state(state: str | None, kept_runs: KeptRuns | None = None) -> ResolvedState | None:
    """`state` -> a local directory; a kept-run reference is fetched through `kept_runs`, a
    directory must lie under the one state root (WG_STATE_ROOT; dbt_runtime/_paths.py)."""
    parsed = state_reference(state)
    if parsed is None:
        return None
    if isinstance(parsed, KeptState):
        if kept_runs is None:
            raise InvalidParameter(
                f"parameter 'state': {state!r} names a kept run, which only a flow run can fetch"
            )
        return kept_runs.fetch(parsed)
    return ResolvedState(under_root(parsed, state_root()))


def state_dir(state: str | None, kept_runs: KeptRuns | None = None) -> Path | None:
    """Validate `state`: a directory holding a dbt manifest.json to compare or defer against."""
    resolved = resolve_state(state, kept_runs)
    if resolved is None:
        return None
    if not (resolved.path / "manifest.json").is_file():
        raise InvalidParameter(
            f"parameter 'state': {state!r} is not a directory with a dbt manifest.json"
        )
    return resolved.path


def build_invocation(
    command: DbtCommand | str,
    target: Target | str,
    select: Sequence[str] | str | None = None,
    exclude: Sequence[str] | str | None = None,
    vars: Mapping[str, Any] | str | None = None,  # noqa: A002 - dbt's own name for it
    full_refresh: bool = False,
    state: str | None = None,
    kept_runs: KeptRuns | None = None,
) -> DbtInvocation:
    """Turn flow parameters into dbt arguments, refusing flags the command does not take.

    A `state` naming a kept run (`prod:last-success`, `flow-run:<id>`) is looked up in
    `kept_runs`; without it only directories are accepted.
    """
    try:
        command = DbtCommand(command)
    except ValueError:
        allowed = ", ".join(c.value for c in DbtCommand)
        raise InvalidParameter(
            f"parameter 'command': {command!r} is not one of: {allowed}"
        ) from None
    try:
        target = Target(target)
    except ValueError:
        allowed = ", ".join(t.value for t in Target)
        raise InvalidParameter(f"parameter 'target': {target!r} is not one of: {allowed}") from None

    args: list[str] = [*command.value.split(), "--target", target.value]

    def require(param: str, flag: str) -> None:
        if param not in _command_params(command):
            raise InvalidParameter(
                f"parameter {flag!r}: `dbt {command.value}` has no --{flag.replace('_', '-')} "
                "option; clear it or pick another command"
            )

    for name, values in (("select", select), ("exclude", exclude)):
        chosen = selectors(name, values)
        if chosen:
            require(name, name)
            args += [f"--{name}", *chosen]
    rendered_vars = dbt_vars(vars)
    if rendered_vars is not None:
        require("vars", "vars")
        args += ["--vars", rendered_vars]
    if full_refresh:
        require("full_refresh", "full_refresh")
        args.append("--full-refresh")
    if command is DbtCommand.retry:
        resolved = retry_source(state, target, kept_runs)
        if (resolved.path / "run_results.json").is_file():
            return DbtInvocation(command, target, tuple(args), resolved.path)
        assert kept_runs is not None  # retry_source only accepts this for a kept run
        return kept_runs.resume(resolved, target)  # no run_results.json: the run crashed
    state_path = state_dir(state, kept_runs)
    if state_path is not None:
        require("state", "state")
        args += ["--state", str(state_path)]
    parameters = {
        "command": command.value,
        "select": selectors("select", select),
        "exclude": selectors("exclude", exclude),
        "vars": json.loads(rendered_vars) if rendered_vars else {},
        "full_refresh": full_refresh,
        "state": state or "",
    }
    return DbtInvocation(command, target, tuple(args), parameters=parameters)


def retry_source(
    state: str | None, target: Target, kept_runs: KeptRuns | None = None
) -> ResolvedState:
    """For `command=retry`: the kept artifacts of the run to retry, on the same target."""
    how = (
        "command 'retry' needs the flow run to retry: its id (flow-run:<id>), "
        f"`{target.value}:last-failure`, or a directory with a run_results.json"
    )
    if not state:
        raise InvalidParameter(f"parameter 'state': {how}")
    resolved = resolve_state(state, kept_runs)
    assert resolved is not None
    if resolved.target is not None and resolved.target != target.value:
        raise InvalidParameter(
            f"parameter 'target': flow run {resolved.flow_run_id} ran on target "
            f"{resolved.target!r}; retry it with target={resolved.target}"
        )
    if resolved.flow_run_id is None and not (resolved.path / "run_results.json").is_file():
        raise InvalidParameter(f"parameter 'state': {state!r} has no run_results.json; {how}")
    check_retried_command(resolved.path / "run_results.json", state)
    return resolved


# What `dbt retry` may replay: dbt re-runs the command (and its vars) the run_results.json
# names, so only the commands this deployment itself starts are accepted.
RETRYABLE_DBT_COMMANDS = frozenset(
    {"build", "run", "test", "seed", "snapshot", "source-freshness", "freshness"}
)


def check_retried_command(run_results: Path, state: str) -> None:
    """Refuse a run_results.json whose command this deployment does not run, or whose vars
    are templates: `dbt retry` would replay them as they are."""
    if not run_results.is_file():
        return
    try:
        args = dict(json.loads(run_results.read_text()).get("args") or {})
    except (ValueError, TypeError, AttributeError):
        raise InvalidParameter(
            f"parameter 'state': {state!r} holds no dbt run_results.json"
        ) from None
    which = str(args.get("which", ""))
    if which not in RETRYABLE_DBT_COMMANDS:
        raise InvalidParameter(
            f"parameter 'state': the run in {state!r} ran `dbt {which}`, which this deployment "
            f"does not retry (it retries: {', '.join(sorted(RETRYABLE_DBT_COMMANDS))})"
        )
    if args.get("vars"):
        dbt_vars(args["vars"])


class NothingSelected(InvalidParameter):
    """`select` matched no enabled node: dbt only warns ("Nothing to do") and exits 0."""


class NothingBuilt(RuntimeError):
    """A whole-project run executed no node: a broken project path, not a success."""


# Commands that always execute nodes of a healthy project when nothing narrows the selection.
_NODE_COMMANDS = frozenset(
    {DbtCommand.build, DbtCommand.run, DbtCommand.test, DbtCommand.seed, DbtCommand.snapshot}
)


def require_selected_nodes(invocation: DbtInvocation, executed_nodes: int) -> None:
    """Refuse to call a run successful when it executed nothing.

    dbt reports a selector that matches no node as a warning and succeeds; for an operator
    that is almost always a typo (`fct_shipment` for `fct_shipments`), so the run fails instead.
    Without a selection, zero nodes means the project dbt saw is empty (a broken project
    path): a nightly must not go green while building nothing.
    """
    if executed_nodes:
        return
    if "--select" not in invocation.args:
        if invocation.command in _NODE_COMMANDS and "--exclude" not in invocation.args:
            raise NothingBuilt(
                f"{invocation.label} executed no node although nothing narrowed the selection: "
                "the project dbt read is empty or not the tenant's (check the project path)"
            )
        return
    start = invocation.args.index("--select") + 1
    chosen: list[str] = []
    for arg in invocation.args[start:]:
        if arg.startswith("--"):
            break
        chosen.append(arg)
    raise NothingSelected(
        f"parameter 'select': {' '.join(chosen)!r} matches no enabled node of the project, so "
        "dbt did nothing; check the names (`dbt ls --select ...` lists what a selector matches)"
    )
