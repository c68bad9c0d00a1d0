"""The names of the temp tables a run writes, which of them make a state, and the components a cell holds."""

from __future__ import annotations

from django.db import connection

from kpis.engine.families import FAMILIES, SIGNED_FAMILIES

# The components kx_s holds; *_med are medians * 10, the rest integer sums (cents or counts).
COMPONENTS = [
    "won_c",
    "won_n",
    "src_c",
    "src_n",
    "inf_c",
    "inf_n",
    "dir_c",
    "dir_n",
    "lost_src",
    "lost_inf",
    "lost_dir",
    "attr_c",
    "cyc_src_med",
    "cyc_inf_med",
    "cyc_dir_med",
    "apps_n",
    "apps_ok",
    "joined_n",
    "activated_n",
    "prov",
    "fs_n",
    "ttfs_sum",
    "ttfs_med",
    "leads_n",
    "regs_ok",
    "regs_rej",
    "opp_inf",
    "active_n",
    "cost_c",
    "newcust_n",
    # Counted costs of the commission and MDF categories; revenue of the won deals linked to MDF.
    "comm_c",
    "mdf_c",
    "mdfrev_c",
]


MEDIAN_COMPONENTS = ("cyc_src_med", "cyc_inf_med", "cyc_dir_med", "ttfs_med")


# A cell: one scope's (program, partner or join source, with its id) period. kx_s, kx_m and kx_cells
# hold components per cell.
CELL_KEY = ("scope", "sid", "grain", "pidx")


CELL_NAMES = ", ".join(CELL_KEY)


CELL_COLUMNS = ", ".join(CELL_KEY + tuple(COMPONENTS))


CELL_DDL = "scope VARCHAR(12), sid BIGINT, grain VARCHAR(8), pidx INTEGER, " + ", ".join(
    f"{c} BIGINT" for c in COMPONENTS
)


NULLABLE_COMPONENTS = set(MEDIAN_COMPONENTS)


# Facts every scope reads (a chunked run shares them in its schema) and the per-scope tables.
FACT_TABLES = [
    "kx_js",
    "kx_touch_all",
    "kx_deal",
    "kx_partner",
    "kx_reg",
    "kx_cost",
    "kx_link",
    "kx_tgt",
    "kx_actm",
    "kx_fs",
    "kx_tw",
    "kx_attr",
    "kx_newcust",
    "kx_grain",
    "kx_period",
    "kx_recon",
]


SCOPE_TABLES = ["kx_s", "kx_opp", "kx_m", "kx_metric", "kx_v", "kx_target", "kx_pub"]


# The restriction of an incremental run to the periods its changes touched (_restrict_to_changed_periods).
CHANGE_TABLES = ["kx_dirty_mi", "kx_dirty_per", "kx_pubper", "kx_pubcell", "kx_pubslice"]


# Delta facts: the changed rows, the affected keys, the previous rows of those keys, and the previous
# run's small tables that every run rebuilds.


DELTA_TABLES = (
    ["kx_chg", "kx_chg_partner", "kx_aff_deal", "kx_aff_account", "kx_aff_reg", "kx_aff_cost"]
    + [
        "kx_aff_partner",
        "kx_asof_deal",
        "kx_asof_partner",
        "kx_own_partner",
        "kx_recalc_partner",
        "kx_recalc_actm",
        "kx_recalc_fs",
        "kx_aff_reg_before",
        "kx_aff_reg_now",
        "kx_aff_count_before",
        "kx_aff_count_now",
        "kx_act_gone",
        "kx_act_new",
        "kx_act_adj",
        "kx_sale_gone",
        "kx_sale_new",
        "kx_fs_adj",
        "kx_prev_js",
        "kx_prev_keys",
        "kx_prev_allper",
        "kx_prev_state",
    ]
    + [f"kx_before_{i}" for i in range(len(FAMILIES))]
    + ["kx_aff_touch", "kx_aff_touch_now", "kx_aff_touch_live", "kx_aff_deal_before", "kx_aff_deal_now"]
    + ["kx_aff_claim"]
    # Patched cells (_patch_cells); kx_signed_<family>: the signed rows of each family compared by its keys.
    + ["kx_dmed", "kx_dmed_deals", "kx_dgrain", "kx_dcell", "kx_dflag", "kx_touched", "kx_newcell"]
    + ["kx_act_per"]
    + [f"kx_signed_{name}" for name in SIGNED_FAMILIES]
)


TEMP_TABLES = (
    FACT_TABLES
    + ["kx_keys", "kx_allper", "kx_cells", "kx_state"]
    + CHANGE_TABLES
    + SCOPE_TABLES
    + DELTA_TABLES
)


# (table, columns) lookups the patching reads by (created on the facts when a run first patches them).
DELTA_INDEXES = [
    ("kx_deal", "id"),
    ("kx_deal", "sp"),
    ("kx_deal", "account_id"),
    ("kx_touch_all", "deal_id"),
    ("kx_touch_all", "partner_id"),
    ("kx_partner", "id"),
    ("kx_reg", "id"),
    ("kx_reg", "partner_id"),
    ("kx_cost", "id"),
    ("kx_cost", "partner_id"),
    ("kx_link", "cost_id"),
    ("kx_link", "deal_id"),
    ("kx_actm", "partner_id"),
    ("kx_fs", "partner_id"),
    ("kx_attr", "deal_id"),
    ("kx_newcust", "account_id"),
    ("kx_cells", "scope, sid, grain, pidx"),
]


# (table, columns) lookups of the drill-down (kpis.drilldown), which reads the published state by
# period and scope: built with the DELTA_INDEXES once the state describes the published set.
DRILL_INDEXES = [
    ("kx_deal", "closed_mi"),
    ("kx_attr", "partner_id, closed_mi"),
    ("kx_attr", "js, closed_mi"),
    ("kx_touch_all", "touched_mi"),
    ("kx_reg", "submitted_mi"),
    ("kx_reg", "decided_mi"),
    ("kx_cost", "mi"),
    ("kx_newcust", "closed_mi"),
]


def set_aside(table: str) -> str:
    """The temp copy of the previous run's `table` (kx_js -> kx_prev_js) that patched facts keep."""
    return f"kx_prev_{table[3:]}"


def index_name(table: str, columns: str) -> str:
    return f"{table}_{columns.replace(', ', '_')}"


def delta_index(table: str, columns: str, *, schema: str | None = None) -> str:
    """The statement creating one of DELTA_INDEXES on `table` (in `schema`, else the search path)."""
    where = f"{schema}.{table}" if schema else table
    return f"CREATE INDEX IF NOT EXISTS {index_name(table, columns)} ON {where} ({columns})"


# A run's facts live on as the state the next incremental run diffs against: on PostgreSQL the run's
# schema (RUN_NAMESPACE_PREFIX + id, which also holds a chunked run's shared tables), on SQLite tables
# named RUN_NAMESPACE_PREFIX + id + "_" + table. KpiPublication.state_run_id names the one that
# describes the published set.
RUN_NAMESPACE_PREFIX = "kpirun_"


STATE_TABLES = [
    "kx_js",
    "kx_keys",
    "kx_partner",
    "kx_touch_all",
    "kx_deal",
    "kx_reg",
    "kx_cost",
    "kx_link",
    "kx_tgt",
    "kx_actm",
    "kx_fs",
    "kx_attr",
    "kx_newcust",
    "kx_allper",
    # The components of every cell (scope, sid, grain, pidx) of the published set.
    "kx_cells",
    # One row (the run's as-of date and CODE_VERSION), written last: missing or empty = no state.
    "kx_state",
]


def run_schema(run_id: int) -> str:
    """A run's namespace: its PostgreSQL schema (its facts, and a chunked run's shared staged rows),
    or on SQLite the prefix of its state tables' names."""
    return f"{RUN_NAMESPACE_PREFIX}{int(run_id)}"


def state_table(run_id: int, table: str) -> str:
    """The name of one of a run's state tables, from any session."""
    if connection.vendor == "postgresql":
        return f"{run_schema(run_id)}.{table}"
    return f"{run_schema(run_id)}_{table}"
