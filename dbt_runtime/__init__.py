"""The runtime the flows run on: parameters -> validated dbt invocation -> dbt through
prefect-dbt with a task run per node -> kept artifacts, summary and failure reasons.

Imports none of flows/, migration/ or blocks/ (import-linter contracts in pyproject.toml).
"""
