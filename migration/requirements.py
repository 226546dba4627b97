"""`python -m migration requirements install`: the pull step that installs requirements.txt, and
skips pip when every pin is already installed.

prefect.yaml's pull steps run before every flow run. `pip install -r requirements.txt` with all
of it installed still costs pip's resolver: measured 1.5-8 s on this 2-core machine, paid on
every run of a warm worker. The pins are exact (`name==version`, compiled by `make pins`), so
"already satisfied" is a cheap, exact check against the installed distributions' metadata.
Anything missing or at another version, and pip installs the file as
`prefect.deployments.steps.pip_install_requirements` would. A fresh container (Prefect Cloud's
managed pool) always installs; a warm process worker skips.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

DEFAULT_FILE = "requirements.txt"


def unsatisfied(requirements_file: Path) -> list[str]:
    """The requirements in the file the current environment does not satisfy (with why)."""
    from packaging.requirements import InvalidRequirement, Requirement

    missing: list[str] = []
    for raw in requirements_file.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            if line.startswith("-"):  # an option (-r, --index-url): let pip interpret the file
                missing.append(f"{line} (pip option)")
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            missing.append(f"{line} (not a plain requirement)")
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            missing.append(f"{requirement} (not installed)")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            missing.append(f"{requirement} (installed {installed})")
    return missing


def install(requirements_file: Path) -> int:
    missing = unsatisfied(requirements_file)
    if not missing:
        print(f"{requirements_file}: every requirement is installed; pip skipped")
        return 0
    print(f"{requirements_file}: installing; {len(missing)} unsatisfied, e.g. {missing[0]}")
    argv = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    return subprocess.run([*argv, "-r", str(requirements_file)], check=False).returncode


def main(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        print(f"error: requirements file {path} not found", file=sys.stderr)
        return 2
    return install(path)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "requirements",
        help="install requirements.txt unless every pin is installed (a prefect.yaml pull step)",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    install_parser = actions.add_parser(
        "install", help="pip install -r FILE, skipped when every requirement is satisfied"
    )
    install_parser.add_argument("--file", default=DEFAULT_FILE, help="default: %(default)s")
    install_parser.set_defaults(handler=main)
