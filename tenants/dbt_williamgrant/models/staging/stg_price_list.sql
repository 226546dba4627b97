with source as (
    select * from {{ ref('raw_price_list') }}
)

select
    upper(trim(price_list_id))                                 as price_list_id,
    upper(trim(brand_code))                                    as brand_code,
    upper(trim(market_code))                                   as market_code,
    upper(trim(currency_code))                                 as currency_code,
    cast(list_price_per_9l_case as decimal(18, 2))             as list_price_per_9l_case_local,
    cast(valid_from as date)                                   as valid_from,
    cast(valid_to as date)                                     as valid_to,
    cast(updated_at as timestamp)                              as updated_at
from source
