with source as (
    select * from {{ ref('raw_distributors') }}
)

select
    upper(trim(distributor_id))                               as distributor_id,
    trim(distributor_name)                                    as distributor_name,
    upper(trim(market_code))                                  as market_code,
    lower(trim(channel))                                      as channel,
    cast(is_active as boolean)                                as is_active,
    cast(updated_at as timestamp)                             as updated_at
from source
