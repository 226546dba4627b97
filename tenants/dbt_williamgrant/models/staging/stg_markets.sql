with source as (
    select * from {{ ref('raw_markets') }}
)

select
    upper(trim(market_code))                                  as market_code,
    trim(market_name)                                         as market_name,
    trim(region)                                              as region,
    upper(trim(currency_code))                                as currency_code
from source
