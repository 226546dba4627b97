{#-
    Monthly market performance vs budget, grain: month x market.
    All monetary values are expressed in var('reporting_currency')
    (default GBP): GBP amounts are divided by the GBP value of one unit of
    the reporting currency for that month.
-#}
{%- set reporting_currency = var('reporting_currency', 'GBP') | string | trim | upper -%}
{#- An ISO 4217 code, nothing else: the value is pasted into SQL below. -#}
{%- if not modules.re.fullmatch('[A-Z]{3}', reporting_currency) -%}
    {{ exceptions.raise_compiler_error("var('reporting_currency') must be a 3-letter ISO currency code such as GBP or USD") }}
{%- endif -%}

with shipments as (
    select
        shipment_month                                         as performance_month,
        market_code,
        sum(volume_9l_cases)                                   as shipped_volume_9l_cases,
        sum(net_sales_gbp)                                     as net_sales_gbp
    from {{ ref('fct_shipments') }}
    group by shipment_month, market_code
),

depletions as (
    select
        depletion_month                                        as performance_month,
        market_code,
        sum(volume_9l_cases)                                   as depleted_volume_9l_cases
    from {{ ref('fct_depletions') }}
    group by depletion_month, market_code
),

budget as (
    select
        budget_month                                           as performance_month,
        market_code,
        sum(budget_volume_9l_cases)                            as budget_volume_9l_cases,
        sum(budget_net_sales_gbp)                              as budget_net_sales_gbp
    from {{ ref('stg_budget') }}
    group by budget_month, market_code
),

month_market as (
    select performance_month, market_code from shipments
    union
    select performance_month, market_code from depletions
    union
    select performance_month, market_code from budget
),

reporting_fx as (
    select
        rate_month,
        rate_to_gbp
    from {{ ref('stg_fx_rates') }}
    where currency_code = '{{ reporting_currency }}'
),

combined as (
    select
        month_market.performance_month,
        month_market.market_code,
        markets.market_name,
        markets.region,
        coalesce(shipments.shipped_volume_9l_cases, 0)         as shipped_volume_9l_cases,
        coalesce(depletions.depleted_volume_9l_cases, 0)       as depleted_volume_9l_cases,
        coalesce(budget.budget_volume_9l_cases, 0)             as budget_volume_9l_cases,
        coalesce(shipments.net_sales_gbp, 0)                   as net_sales_gbp,
        coalesce(budget.budget_net_sales_gbp, 0)               as budget_net_sales_gbp,
        {% if reporting_currency == 'GBP' -%}
        cast(1 as {{ dbt.type_numeric() }})
        {%- else -%}
        reporting_fx.rate_to_gbp
        {%- endif %}                                           as reporting_fx_rate_to_gbp
    from month_market
    left join shipments
        on  shipments.performance_month = month_market.performance_month
        and shipments.market_code = month_market.market_code
    left join depletions
        on  depletions.performance_month = month_market.performance_month
        and depletions.market_code = month_market.market_code
    left join budget
        on  budget.performance_month = month_market.performance_month
        and budget.market_code = month_market.market_code
    left join {{ ref('dim_market') }} as markets
        on markets.market_code = month_market.market_code
    left join reporting_fx
        on reporting_fx.rate_month = month_market.performance_month
)

select
    performance_month,
    market_code,
    market_name,
    region,
    cast('{{ reporting_currency }}' as {{ dbt.type_string() }}) as reporting_currency,
    reporting_fx_rate_to_gbp,
    shipped_volume_9l_cases,
    depleted_volume_9l_cases,
    budget_volume_9l_cases,
    shipped_volume_9l_cases - budget_volume_9l_cases           as volume_variance_9l_cases,
    case
        when budget_volume_9l_cases = 0 then null
        else round((shipped_volume_9l_cases - budget_volume_9l_cases) / budget_volume_9l_cases, 4)
    end                                                        as volume_variance_pct,
    round(net_sales_gbp / reporting_fx_rate_to_gbp, 2)         as net_sales,
    round(budget_net_sales_gbp / reporting_fx_rate_to_gbp, 2)  as budget_net_sales,
    round((net_sales_gbp - budget_net_sales_gbp) / reporting_fx_rate_to_gbp, 2)
                                                               as net_sales_variance,
    case
        when budget_net_sales_gbp = 0 then null
        else round((net_sales_gbp - budget_net_sales_gbp) / budget_net_sales_gbp, 4)
    end                                                        as net_sales_variance_pct,
    {{ dbt.concat(["market_code", "'-'", "cast(performance_month as " ~ dbt.type_string() ~ ")"]) }}
                                                               as market_month_key
from combined
