"""The command line every block registration script shares: parser, exit codes, error output.

A script states only what is its own: its inputs (`EnvInput`s, listed in `--help`), its flags,
a `prepare` that reads and validates everything, and what the returned `Save` registers. `run`
does the rest the same way for every script: inputs come from the environment or stdin (never
argv: a secret there lands in shell history and `ps`), nothing is registered unless all of them
are valid, and each kind of failure has one exit code and an `error: ...` line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Protocol

from blocks._inputs import EnvInput, InputError, help_text

EXIT_OK = 0
EXIT_SERVER_ERROR = 1  # Prefect, the destination or a check failed; the input was fine
EXIT_BAD_INPUT = 2  # argparse's own code for usage errors: nothing was registered

# Registers the block(s) and returns what to tell the operator; called only on valid input.
Save = Callable[[], str]
# (parsed flags, environment, stdin) -> the Save; raises InputError naming what to fix.
Prepare = Callable[[argparse.Namespace, Mapping[str, str], IO[str]], Save]


class ServerError(RuntimeError):
    """Saving (or checking) failed on the server's side; the message says what was attempted."""


def script_parser(
    command: str,
    doc: str | None,
    environment: Mapping[str, Sequence[EnvInput]] | None = None,
    notes: str = "",
) -> argparse.ArgumentParser:
    """A parser whose `--help` is the script's docstring, then every environment variable it
    reads (`environment`: section title -> inputs), `notes`, where secrets may come from and
    the exit codes. `command` is how the script is run (dbt_runtime.project.register_command).
    """
    sections = [help_text(title, list(specs)) for title, specs in (environment or {}).items()]
    secrets = any(spec.secret for specs in (environment or {}).values() for spec in specs)
    closing = " ".join(
        part
        for part in (
            notes,
            "Secrets are read only from the environment or stdin, never from arguments."
            if secrets
            else "",
            f"Exit codes: {EXIT_OK} done, {EXIT_SERVER_ERROR} server or check failure, "
            f"{EXIT_BAD_INPUT} bad input (nothing registered).",
        )
        if part
    )
    return argparse.ArgumentParser(
        prog=command,
        description=doc,
        epilog="\n\n".join([*sections, textwrap.fill(closing, width=95)]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def run(
    parser: argparse.ArgumentParser,
    prepare: Prepare,
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    stdin: IO[str] | None = None,
) -> int:
    """Parse `argv`, `prepare` (validate everything), then save; the script's exit code.

    `env` and `stdin` default to the process's own; tests pass their own, so need no server
    to prove that bad input registers nothing.
    """
    args = parser.parse_args(argv)
    try:
        save = prepare(args, os.environ if env is None else env, stdin or sys.stdin)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        print(save(), flush=True)
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SERVER_ERROR
    return EXIT_OK


class Main(Protocol):
    """A script's `main(argv, env, stdin)`: its exit code."""

    def __call__(
        self,
        argv: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        stdin: IO[str] | None = None,
    ) -> int: ...


def script_main(build_parser: Callable[[], argparse.ArgumentParser], prepare: Prepare) -> Main:
    """The script's `main`: `run` with its parser and its `prepare`."""

    def main(
        argv: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        stdin: IO[str] | None = None,
    ) -> int:
        return run(build_parser(), prepare, argv, env, stdin)

    return main
