{{ config(materialized='table') }}

-- Sell-in converted from local currency to GBP with the monthly average rate
-- of the shipment month. GBP amounts are never converted (rate forced to 1).
with shipments as (
    select * from {{ ref('stg_shipments') }}
),

fx as (
    select * from {{ ref('stg_fx_rates') }}
)

select
    shipments.shipment_id,
    shipments.shipment_date,
    shipments.shipment_month,
    shipments.brand_code,
    shipments.market_code,
    shipments.distributor_id,
    shipments.cases_shipped,
    shipments.volume_9l_cases,
    shipments.currency_code,
    shipments.gross_sales_local,
    shipments.net_sales_local,
    case
        when shipments.currency_code = 'GBP' then 1
        else fx.rate_to_gbp
    end                                                        as fx_rate_to_gbp,
    round(
        shipments.gross_sales_local
        * case when shipments.currency_code = 'GBP' then 1 else fx.rate_to_gbp end,
        2
    )                                                          as gross_sales_gbp,
    round(
        shipments.net_sales_local
        * case when shipments.currency_code = 'GBP' then 1 else fx.rate_to_gbp end,
        2
    )                                                          as net_sales_gbp,
    shipments.updated_at
from shipments
left join fx
    on  fx.currency_code = shipments.currency_code
    and fx.rate_month = shipments.shipment_month
