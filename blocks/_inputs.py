"""Inputs of the block registration scripts: environment variables and stdin, never argv.

Secrets on a command line end up in shell history and in `ps` output for every user on the
machine; secrets in a repository file end up in git. So the scripts read every value from the
environment, or one secret from stdin (`--password-stdin`-style, for piping from a vault CLI),
and validate everything before registering anything (blocks/_cli.py). Pure functions: the
environment and stdin are parameters, so the tests need no server.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO


class InputError(ValueError):
    """A missing or malformed input; the message names the environment variable to fix."""


@dataclass(frozen=True)
class EnvInput:
    """One environment variable a script reads, as `--help` documents it."""

    name: str
    help: str
    secret: bool = False
    required: bool = True
    pattern: re.Pattern[str] | None = None
    example: str = ""

    def describe(self) -> str:
        tags = (["secret"] if self.secret else []) + ([] if self.required else ["optional"])
        suffix = f" ({', '.join(tags)})" if tags else ""
        example = f", e.g. {self.example}" if self.example else ""
        return f"  {self.name}{suffix}\n      {self.help}{example}"


def _has_control_characters(value: str) -> bool:
    # Newlines are legitimate inside a PEM key only; callers that accept them say so.
    return any(unicodedata.category(ch)[0] == "C" for ch in value)


def env_value(spec: EnvInput, env: Mapping[str, str], multiline: bool = False) -> str | None:
    """The validated value of `spec` in `env`; None when unset and optional.

    Never echoes a secret in an error: the message names the variable and what is wrong.
    """
    raw = env.get(spec.name)
    value = raw.strip() if raw is not None else ""
    if not value:
        if spec.required:
            raise InputError(f"{spec.name} is not set: {spec.help}")
        return None
    return check_value(spec, value, multiline)


def check_value(spec: EnvInput, value: str, multiline: bool = False) -> str:
    shown = "" if spec.secret else f" {value!r}"
    text = value.replace("\n", "").replace("\r", "") if multiline else value
    if _has_control_characters(text):
        raise InputError(f"{spec.name}{shown} contains control characters (a stray newline?)")
    if spec.pattern is not None and not spec.pattern.fullmatch(value):
        example = f", e.g. {spec.example}" if spec.example else ""
        raise InputError(f"{spec.name}{shown} is malformed: expected {spec.help}{example}")
    return value


def read_stdin_secret(stream: IO[str], spec: EnvInput, multiline: bool = False) -> str:
    """One secret from stdin (e.g. `vault read -field=password ... | python -m blocks...`)."""
    if stream.isatty():
        raise InputError(
            f"stdin is a terminal: pipe {spec.name}'s value in (e.g. from your vault's CLI) "
            "instead of typing it, or set the environment variable"
        )
    value = stream.read().strip()
    if not value:
        raise InputError(f"stdin was empty: expected the value of {spec.name}")
    return check_value(spec, value, multiline)


def help_text(title: str, inputs: list[EnvInput]) -> str:
    return title + "\n" + "\n".join(spec.describe() for spec in inputs)


def secret_value(
    spec: EnvInput, env: Mapping[str, str], stdin: IO[str] | None, stdin_flag: str | None = None
) -> str:
    """A required secret: from stdin when the script's `stdin_flag` was given, else from `env`;
    both at once is refused (which one was meant?)."""
    if stdin_flag is not None:
        if env.get(spec.name, "").strip():
            raise InputError(f"{spec.name} is set and {stdin_flag} was given too: use one")
        assert stdin is not None
        return read_stdin_secret(stdin, spec)
    value = env_value(spec, env)
    assert value is not None  # required
    return value
