"""The Prefect flow that runs a tenant's dbt project (see dbt_project.py)."""
