"""Synthetic dbt projects of any size, for `make bench`.

A layered DAG: a few seeds, N models in up to MAX_LAYERS layers (layer 0 are views over the
seeds, every later model is a table joining one or two models of the layer before), and a
`not_null` test on every second model. It runs on DuckDB with a copy of the tenant project's
`local` target, under the tenant's profile name, so the flow's own profile handling
(dbt_runtime/profiles.py) serves it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from dbt_runtime.project import profile_name, tenant

SEED_COUNT = 3
SEED_ROWS = 40
MAX_LAYERS = 8
LOCAL_TARGET = "local"
PROJECT_NAME = "synthetic_bench"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    layer: int
    parents: tuple[str, ...]  # model or seed names this model selects from
    tested: bool

    @property
    def materialized(self) -> str:
        return "view" if self.layer == 0 else "table"


@dataclass(frozen=True)
class SyntheticProject:
    path: Path
    models: int
    seeds: int
    tests: int

    @property
    def nodes(self) -> int:
        """What `dbt build` executes: seeds + models + tests."""
        return self.models + self.seeds + self.tests


def seed_names() -> list[str]:
    return [f"seed_{i}" for i in range(SEED_COUNT)]


def layout(models: int) -> list[ModelSpec]:
    """The DAG of `models` models: layer by layer, each layer reading only the one before."""
    if models < 1:
        raise ValueError(f"models must be at least 1, got {models}")
    layers = min(MAX_LAYERS, models)
    by_layer: list[list[str]] = [[] for _ in range(layers)]
    specs: list[ModelSpec] = []
    for i in range(models):
        layer = i * layers // models
        position = len(by_layer[layer])
        name = f"m{layer}_{position:04d}"
        if layer == 0:
            parents: tuple[str, ...] = (seed_names()[position % SEED_COUNT],)
        else:
            previous = by_layer[layer - 1]
            first = previous[position % len(previous)]
            second = previous[(position + 1) % len(previous)]
            parents = (first,) if first == second else (first, second)
        by_layer[layer].append(name)
        specs.append(ModelSpec(name=name, layer=layer, parents=parents, tested=i % 2 == 0))
    return specs


def model_sql(spec: ModelSpec) -> str:
    if spec.layer == 0:
        return f"select id, grp, amount from {{{{ ref('{spec.parents[0]}') }}}}\n"
    first = spec.parents[0]
    if len(spec.parents) == 1:
        return f"select id, grp, amount + {spec.layer} as amount from {{{{ ref('{first}') }}}}\n"
    second = spec.parents[1]
    return (
        "select a.id, a.grp, a.amount + coalesce(b.amount, 0) as amount\n"
        f"from {{{{ ref('{first}') }}}} as a\n"
        f"left join {{{{ ref('{second}') }}}} as b on a.id = b.id\n"
    )


def tenant_profile() -> tuple[str, dict[str, object]]:
    """The tenant project's profile name and its `local` (DuckDB) target, as the tenant has it."""
    project_dir = tenant().project_dir
    profile = profile_name(project_dir)
    profiles = yaml.safe_load((project_dir / "profiles.yml").read_text())
    return profile, dict(profiles[profile]["outputs"][LOCAL_TARGET])


def write_project(dest: Path, models: int) -> SyntheticProject:
    """Write a synthetic project of `models` models into `dest` (created; must be empty)."""
    specs = layout(models)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ValueError(f"{dest} is not empty: the synthetic project needs a fresh directory")
    profile, local = tenant_profile()
    (dest / "dbt_project.yml").write_text(
        yaml.safe_dump(
            {
                "name": PROJECT_NAME,
                "version": "1.0.0",
                "config-version": 2,
                "profile": profile,
                "model-paths": ["models"],
                "seed-paths": ["seeds"],
                "target-path": "target",
            },
            sort_keys=False,
        )
    )
    (dest / "profiles.yml").write_text(
        yaml.safe_dump(
            {profile: {"target": LOCAL_TARGET, "outputs": {LOCAL_TARGET: local}}}, sort_keys=False
        )
    )
    (dest / "seeds").mkdir()
    for s, name in enumerate(seed_names()):
        rows = "".join(f"{r},g{r % 5},{r * (s + 1)}\n" for r in range(SEED_ROWS))
        (dest / "seeds" / f"{name}.csv").write_text("id,grp,amount\n" + rows)
    models_dir = dest / "models"
    models_dir.mkdir()
    for spec in specs:
        sql = f"{{{{ config(materialized='{spec.materialized}') }}}}\n" + model_sql(spec)
        (models_dir / f"{spec.name}.sql").write_text(sql)
    schema = {
        "version": 2,
        "models": [
            {"name": s.name, "columns": [{"name": "id", "data_tests": ["not_null"]}]}
            for s in specs
            if s.tested
        ],
    }
    (models_dir / "schema.yml").write_text(yaml.safe_dump(schema, sort_keys=False))
    return SyntheticProject(
        path=dest, models=len(specs), seeds=SEED_COUNT, tests=sum(s.tested for s in specs)
    )
