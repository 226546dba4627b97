select
    brand_code,
    brand_name,
    category,
    sub_category,
    is_premium,
    launch_year
from {{ ref('stg_brands') }}
