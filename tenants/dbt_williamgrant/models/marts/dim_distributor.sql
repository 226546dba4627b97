select
    distributors.distributor_id,
    distributors.distributor_name,
    distributors.market_code,
    markets.market_name,
    markets.region,
    distributors.channel,
    case when distributors.channel = 'own_distribution' then true else false end
                                                               as is_own_route_to_market,
    distributors.is_active,
    distributors.updated_at
from {{ ref('stg_distributors') }} as distributors
left join {{ ref('stg_markets') }} as markets
    on markets.market_code = distributors.market_code
