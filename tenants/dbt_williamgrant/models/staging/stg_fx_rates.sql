-- Monthly average FX rates: how many GBP one unit of currency_code buys.
with source as (
    select * from {{ ref('raw_fx_rates') }}
)

select
    cast({{ dbt.date_trunc('month', 'rate_month') }} as date)  as rate_month,
    upper(trim(currency_code))                                 as currency_code,
    cast(rate_to_gbp as {{ dbt.type_numeric() }})              as rate_to_gbp
from source
