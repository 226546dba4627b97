select
    market_code,
    market_name,
    region,
    currency_code
from {{ ref('stg_markets') }}
