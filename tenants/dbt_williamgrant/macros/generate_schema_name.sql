{#-
    Schema naming is governed entirely by model/seed/snapshot configs.

    dbt's default behaviour concatenates target.schema and the custom schema
    (e.g. "main_staging"). We deliberately replace it:
      * a node that sets a custom schema (+schema: raw / staging /
        intermediate / marts / snapshots) is built in EXACTLY that schema
        (whitespace trimmed);
      * a node without a custom schema falls back to target.schema.

    Why: the orchestration layer (Prefect flows, Makefile, CI) must never
    hard-code or compute schema names. It only picks a target; where each
    layer lands is declared once, here in the dbt project, and is identical
    on DuckDB (local) and Snowflake (dev/prod databases isolate environments).
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none or (custom_schema_name | trim) == '' -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
