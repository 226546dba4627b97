"""Operator tooling for the dbt Cloud -> Prefect migration of the William Grant dbt project."""
