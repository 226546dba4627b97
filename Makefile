# Thin verbs; the logic lives in Python (`python -m migration ...`), not here.
PYTHON_VERSION := $(shell cat .python-version)
VENV           := .venv
PY             := $(VENV)/bin/python
# Keyed on the content of the pins (not mtimes): a fresh clone or touched file reuses a good venv.
STAMP          := $(VENV)/.installed-$(shell cat .python-version requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
export PATH    := $(CURDIR)/$(VENV)/bin:$(PATH)
# make variables (not settings of the runtime): DRY_RUN=1 prints a cloud plan and changes nothing.
DRY_RUN_FLAG   := $(if $(filter-out 0,$(DRY_RUN)),--dry-run)

.PHONY: setup run run-cloudlike stop test pytest lint checks typecheck deploy cloud-deploy cloud-quickstart pins bench

# A venv on the Python .python-version names (pyenv, python3.12 or uv's managed Python).
setup: $(STAMP)
$(STAMP):
	@py=$$(command -v python$(PYTHON_VERSION) || command -v python3); \
	  $$py -c 'import sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(0 if v == "$(PYTHON_VERSION)" else "need Python $(PYTHON_VERSION), found " + v + " at " + sys.executable)' \
	  && $$py -m venv --clear $(VENV)
	@# uv at its pin from requirements-dev.txt, then uv installs the pins, compiled to bytecode as
	@# pip does (where PYTHONDONTWRITEBYTECODE is set, nothing compiles later: every process would
	@# compile prefect and dbt again). 51 s into a fresh venv here, 138 s with pip (2026-12-01).
	$(PY) -m pip install --quiet --disable-pip-version-check "$$(grep '^uv==' requirements-dev.txt)"
	$(PY) -m uv pip install --quiet --compile-bytecode --python $(PY) -r requirements-dev.txt
	touch $@

# The main job on the embedded default: local Prefect server + worker, deploy prefect.yaml,
# one ad-hoc run on target=local; exits non-zero unless the run Completed. TENANT=NAME runs that
# tenant's deployment (default: prefect.yaml's first).
run: setup
	$(PY) -m migration local run $(if $(TENANT),--tenant "$(TENANT)")

# As Prefect Cloud runs it: a fresh environment per flow run (only what the Prefect image holds;
# the pull steps install the rest), kept artifacts in S3 (moto), dbt on the Snowflake emulator;
# a scheduled-style prod build and an ad-hoc dev build. Non-zero unless both Completed.
run-cloudlike: setup
	$(PY) -m migration cloudlike run

stop:
	@if [ -x $(PY) ]; then $(PY) -m migration local stop && $(PY) -m migration cloudlike stop; \
	  else echo "nothing was started"; fi

lint: checks typecheck

checks: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m detect_secrets.pre_commit_hook --baseline .secrets.baseline $$(git ls-files --cached --others --exclude-standard)

typecheck: setup
	$(PY) -m mypy

# The quick checks first; then mypy beside pytest (-j2): a cold mypy runs about 90 s on one core
# while the other idled. Non-zero if either fails.
test: setup checks
	$(MAKE) --no-print-directory -j2 typecheck pytest

pytest: setup
	$(PY) -m pytest

# Deploy prefect.yaml to whatever PREFECT_API_URL points at (the work pool must exist), then
# notifications.yaml; a destination block missing there is a loud warning here (a workstation
# server has no Slack), and an error in `make cloud-deploy`.
deploy: setup
	$(PY) -m prefect --no-prompt deploy --all
	$(PY) -m migration notifications apply --allow-missing-blocks

# Prefect Cloud (PREFECT_API_URL/PREFECT_API_KEY set, e.g. by `prefect cloud login`): managed
# pool, block check, deploy. DRY_RUN=1 prints every command and changes nothing.
cloud-deploy: setup
	$(PY) -m migration cloud deploy $(DRY_RUN_FLAG)

# The GitHub quickstart path: concurrency limits, uvx prefect-cloud deploy (pinned by
# requirements-quickstart.txt), prefect.yaml's schedules and notifications.
cloud-quickstart: setup
	$(PY) -m migration cloud quickstart $(DRY_RUN_FLAG)

# Regenerate the pinned requirements from requirements*.in.
pins: setup
	$(PY) -m uv pip compile requirements.in --python-version $(PYTHON_VERSION) --no-header -q -o requirements.txt
	$(PY) -m uv pip compile requirements-dev.in --python-version $(PYTHON_VERSION) --no-header -q -o requirements-dev.txt
	$(PY) -m uv pip compile requirements-quickstart.in --python-version $(PYTHON_VERSION) --no-header -q -o requirements-quickstart.txt

# Per-node visibility vs plain dbt on synthetic projects, plus the trigger path through a worker.
# BENCH_SIZES (model counts, default "100 500 2000"), BENCH_REPEATS (A/B pairs, default 3; or
# one count per size, e.g. "5 2").
bench: setup
	$(PY) -m migration bench $(if $(BENCH_SIZES),--sizes "$(BENCH_SIZES)") $(if $(BENCH_REPEATS),--repeats "$(BENCH_REPEATS)")
