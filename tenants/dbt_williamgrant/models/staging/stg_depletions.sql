-- Sell-out: distributor depletions, already reported in 9L cases.
with source as (
    select * from {{ ref('raw_depletions') }}
)

select
    upper(trim(depletion_id))                                  as depletion_id,
    cast(depletion_date as date)                               as depletion_date,
    cast({{ dbt.date_trunc('month', 'depletion_date') }} as date) as depletion_month,
    upper(trim(brand_code))                                    as brand_code,
    upper(trim(market_code))                                   as market_code,
    upper(trim(distributor_id))                                as distributor_id,
    cast(volume_9l_cases as decimal(18, 2))                    as volume_9l_cases,
    cast(updated_at as timestamp)                              as updated_at
from source
