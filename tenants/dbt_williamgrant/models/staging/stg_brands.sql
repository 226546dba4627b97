with source as (
    select * from {{ ref('raw_brands') }}
)

select
    upper(trim(brand_code))                                   as brand_code,
    trim(brand_name)                                          as brand_name,
    trim(category)                                            as category,
    trim(sub_category)                                        as sub_category,
    cast(is_premium as boolean)                               as is_premium,
    cast(launch_year as integer)                              as launch_year
from source
