"""Operator tooling for the dbt Cloud -> Prefect migration of the tenants' dbt projects."""
