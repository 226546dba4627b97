-- Sell-in fact, grain: one shipment invoice line.
select
    shipment_id,
    shipment_date,
    shipment_month,
    brand_code,
    market_code,
    distributor_id,
    cases_shipped,
    volume_9l_cases,
    currency_code,
    gross_sales_local,
    net_sales_local,
    fx_rate_to_gbp,
    gross_sales_gbp,
    net_sales_gbp,
    updated_at
from {{ ref('int_shipments_gbp') }}
