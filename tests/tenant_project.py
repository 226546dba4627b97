"""A second tenant for the tests, shaped unlike William Grant's: its own dbt project name and
profile name, two seeds, three models, generic and singular tests, and its own blocks.

Its `local` target writes its own DuckDB file next to the one the stack names (WG_DUCKDB_PATH):
DuckDB lets one process write a file, and two tenants build side by side.
"""

from __future__ import annotations

from pathlib import Path

from dbt_runtime.project import REPO_ROOT

NAME = "dbt_shop"
PROJECT = "shop"
PROFILE = "shop_analytics"
DEPLOYMENT = "shop"
# runbook/adding-a-tenant.md's commands: tests/integration/test_tenants.py runs them as written
# in a clone (tests/integration/test_docs_commands.py leaves them out: they change the
# repository they run in, which the session's deploys read).
RUNBOOK = REPO_ROOT / "runbook" / "adding-a-tenant.md"
ADD_COMMAND = (
    ".venv/bin/python -m migration tenants add dbt_shop"
    ' --schedule shop-prod-nightly prod "0 6 * * *"'
)
RUN_COMMAND = "make run TENANT=dbt_shop"

_SNOWFLAKE = """    {target}:
      type: snowflake
      account: "{{{{ prefect.blocks.snowflake-credentials.shop-dbt-{target}.account }}}}"
      user: "{{{{ prefect.blocks.snowflake-credentials.shop-dbt-{target}.user }}}}"
      role: "{{{{ prefect.blocks.snowflake-credentials.shop-dbt-{target}.role }}}}"
      password: "{{{{ prefect.blocks.snowflake-credentials.shop-dbt-{target}.password }}}}"
      database: "{{{{ prefect.blocks.snowflake-connector.shop-dbt-{target}.database }}}}"
      warehouse: "{{{{ prefect.blocks.snowflake-connector.shop-dbt-{target}.warehouse }}}}"
      schema: "{{{{ prefect.blocks.snowflake-connector.shop-dbt-{target}.schema }}}}"
      threads: 2
"""

FILES = {
    "dbt_project.yml": f"""name: {PROJECT}
version: "1.0.0"
config-version: 2
profile: {PROFILE}
model-paths: ["models"]
seed-paths: ["seeds"]
test-paths: ["tests"]
target-path: target
models:
  {PROJECT}:
    +materialized: table
""",
    "profiles.yml": f"""{PROFILE}:
  target: local
  outputs:
    local:
      type: duckdb
      path: "{{{{ env_var('WG_DUCKDB_PATH', 'x.duckdb') | replace('.duckdb', '-shop.duckdb') }}}}"
      schema: shop
      threads: 2
"""
    + _SNOWFLAKE.format(target="dev")
    + _SNOWFLAKE.format(target="prod"),
    "seeds/shop_customers.csv": "customer_id,name\n1,Ada\n2,Grace\n3,Linus\n",
    "seeds/shop_orders.csv": "order_id,customer_id,amount\n10,1,12.5\n11,1,7.5\n12,2,30\n13,3,4\n",
    "models/stg_orders.sql": "select order_id, customer_id, amount from {{ ref('shop_orders') }}\n",
    "models/customer_revenue.sql": (
        "select c.customer_id, c.name, sum(o.amount) as revenue\n"
        "from {{ ref('shop_customers') }} as c\n"
        "join {{ ref('stg_orders') }} as o on o.customer_id = c.customer_id\n"
        "group by c.customer_id, c.name\n"
    ),
    "models/top_customer.sql": (
        "select * from {{ ref('customer_revenue') }} order by revenue desc limit 1\n"
    ),
    "models/schema.yml": """version: 2
models:
  - name: stg_orders
    columns:
      - name: order_id
        data_tests: [unique, not_null]
  - name: customer_revenue
    columns:
      - name: customer_id
        data_tests: [unique, not_null]
""",
    "tests/revenue_is_positive.sql": (
        "select * from {{ ref('customer_revenue') }} where revenue <= 0\n"
    ),
}


def write_shop_project(dest: Path) -> Path:
    """The second tenant's dbt project in `dest` (tenants/dbt_shop of a repository copy)."""
    for name, text in FILES.items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text(text)
    return dest
