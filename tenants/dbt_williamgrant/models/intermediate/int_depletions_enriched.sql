-- Sell-out enriched with distributor channel and valued at list price
-- (local currency and GBP) for the depletion date.
with depletions as (
    select * from {{ ref('stg_depletions') }}
),

distributors as (
    select * from {{ ref('stg_distributors') }}
),

prices as (
    select * from {{ ref('int_price_list_current') }}
),

fx as (
    select * from {{ ref('stg_fx_rates') }}
)

select
    depletions.depletion_id,
    depletions.depletion_date,
    depletions.depletion_month,
    depletions.brand_code,
    depletions.market_code,
    depletions.distributor_id,
    distributors.channel,
    depletions.volume_9l_cases,
    prices.currency_code,
    prices.list_price_per_9l_case_local,
    cast(depletions.volume_9l_cases * prices.list_price_per_9l_case_local as decimal(18, 2))
                                                               as list_value_local,
    cast(
        depletions.volume_9l_cases * prices.list_price_per_9l_case_local
        * case when prices.currency_code = 'GBP' then 1 else fx.rate_to_gbp end
        as decimal(18, 2)
    )                                                          as list_value_gbp,
    depletions.updated_at
from depletions
left join distributors
    on distributors.distributor_id = depletions.distributor_id
left join prices
    on  prices.brand_code = depletions.brand_code
    and prices.market_code = depletions.market_code
    and depletions.depletion_date between prices.valid_from and prices.valid_to
left join fx
    on  fx.currency_code = prices.currency_code
    and fx.rate_month = depletions.depletion_month
