"""The Prefect flow that runs the William Grant dbt project (see dbt_williamgrant.py)."""
