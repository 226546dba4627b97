-- Sell-in: one row per shipment invoice line. Volumes are converted from
-- physical cases to the industry-standard 9-litre case equivalent.
with source as (
    select * from {{ ref('raw_shipments') }}
)

select
    upper(trim(shipment_id))                                   as shipment_id,
    cast(shipment_date as date)                                as shipment_date,
    cast({{ dbt.date_trunc('month', 'shipment_date') }} as date) as shipment_month,
    upper(trim(brand_code))                                    as brand_code,
    upper(trim(market_code))                                   as market_code,
    upper(trim(distributor_id))                                as distributor_id,
    cast(bottles_per_case as integer)                          as bottles_per_case,
    cast(bottle_size_ml as integer)                            as bottle_size_ml,
    cast(cases_shipped as integer)                             as cases_shipped,
    cast(
        cases_shipped * bottles_per_case * bottle_size_ml / 9000.0
        as decimal(18, 2)
    )                                                          as volume_9l_cases,
    cast(gross_amount_local as decimal(18, 2))                 as gross_sales_local,
    cast(discount_amount_local as decimal(18, 2))              as discount_local,
    cast(gross_amount_local - discount_amount_local as decimal(18, 2)) as net_sales_local,
    upper(trim(currency_code))                                 as currency_code,
    cast(updated_at as timestamp)                              as updated_at
from source
