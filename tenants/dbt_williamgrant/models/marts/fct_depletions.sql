{#-
    Incremental sell-out fact, grain: one depletion record.
    Upsert on depletion_id:
      * Snowflake -> MERGE
      * DuckDB    -> delete+insert (robust unique_key upsert in dbt-duckdb)
    Late corrections from distributors are picked up through a look-back
    window on updated_at (var incremental_lookback_days).
-#}
{{
    config(
        materialized='incremental',
        unique_key='depletion_id',
        incremental_strategy=('merge' if target.type == 'snowflake' else 'delete+insert'),
        on_schema_change='append_new_columns'
    )
}}

select
    depletion_id,
    depletion_date,
    depletion_month,
    brand_code,
    market_code,
    distributor_id,
    channel,
    volume_9l_cases,
    currency_code,
    list_price_per_9l_case_local,
    list_value_local,
    list_value_gbp,
    updated_at,
    {{ dbt.current_timestamp() }} as dbt_loaded_at
from {{ ref('int_depletions_enriched') }}

{#- A whole number of days, nothing else: the value is pasted into SQL below. -#}
{%- set lookback_days = var('incremental_lookback_days', 3) | string | trim -%}
{%- if not modules.re.fullmatch('[0-9]{1,4}', lookback_days) -%}
    {{ exceptions.raise_compiler_error("var('incremental_lookback_days') must be a whole number of days (0-9999)") }}
{%- endif -%}

{% if is_incremental() %}
where updated_at >= (
    select {{ dbt.dateadd('day', -1 * (lookback_days | int), 'max(updated_at)') }}
    from {{ this }}
)
{% endif %}
