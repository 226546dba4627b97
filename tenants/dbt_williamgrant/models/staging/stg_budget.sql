-- Finance budget, monthly by market, in GBP (group functional currency).
with source as (
    select * from {{ ref('raw_budget') }}
)

select
    cast({{ dbt.date_trunc('month', 'budget_month') }} as date) as budget_month,
    upper(trim(market_code))                                    as market_code,
    cast(budget_volume_9l_cases as decimal(18, 2))              as budget_volume_9l_cases,
    cast(budget_net_sales_gbp as decimal(18, 2))                as budget_net_sales_gbp
from source
