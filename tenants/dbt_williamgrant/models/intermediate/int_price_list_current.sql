{{ config(materialized='ephemeral') }}

-- Ephemeral: list prices with their validity window, inlined as a CTE into
-- the models that use it (no object is created in the warehouse).
select
    price_list_id,
    brand_code,
    market_code,
    currency_code,
    list_price_per_9l_case_local,
    valid_from,
    valid_to
from {{ ref('stg_price_list') }}
