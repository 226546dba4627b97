-- Singular test: sell-in and sell-out volumes can never be negative.
-- Returns offending rows; the test passes when no rows come back.
select 'fct_shipments' as source_model, shipment_id as record_id, volume_9l_cases
from {{ ref('fct_shipments') }}
where volume_9l_cases < 0 or cases_shipped < 0

union all

select 'fct_depletions' as source_model, depletion_id as record_id, volume_9l_cases
from {{ ref('fct_depletions') }}
where volume_9l_cases < 0
