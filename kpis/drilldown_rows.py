"""The SQL of each drill-down family (kpis.drilldown.FAMILY_COLUMNS): the rows, read from the publishing
run's facts, that make a value; each mirrors the engine component it explains (kpis.engine.components,
kpis.engine.lifecycle), so the two cannot drift apart unnoticed (tests/test_kpi_drilldown.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deals.models import Account, DealRegistration
from kpis.engine.dialect import Dialect
from kpis.engine.periods import ACTIVE_LOOKBACK_DAYS
from kpis.metrics import Scope
from kpis.models import CostEntry
from kpis.periods import active_window_start
from partners.models import Partner

if TYPE_CHECKING:
    from kpis.drilldown import Facts, Part, Query


def _months(q: Query, column: str) -> str:
    return f"{column} BETWEEN {int(q.period.first_month_index)} AND {int(q.period.last_month_index)}"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


def _names() -> tuple[str, str]:
    return Partner._meta.db_table, Account._meta.db_table


def family_select(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    """The SQL of the part's rows (the columns of FAMILY_COLUMNS[part.family], plus `counted`)."""
    return {
        "deals": _deal_rows,
        "influence": _influence_rows,
        "attribution": _attribution_rows,
        "registrations": _registration_rows,
        "opportunities": _opportunity_rows,
        "applications": _partner_rows,
        "cohort": _partner_rows,
        "first_sales": _partner_rows,
        "active": _active_rows,
        "costs": _cost_rows,
        "new_customers": _new_customer_rows,
        "mdf_deals": _mdf_deal_rows,
    }[part.family](facts, q, part, sql)


def _deal_columns(sql: Dialect, counted: str = "0") -> str:
    partner, account = _names()
    return f"""d.id AS deal_id, d.dkey AS deal_key,
        (SELECT a.name FROM {account} a WHERE a.id = d.account_id) AS account,
        d.seg AS segment, d.status,
        (SELECT p.name FROM {partner} p WHERE p.id = d.sp) AS partner,
        d.created_d AS created, d.closed_d AS closed,
        {sql.days_between("d.closed_d", "d.created_d")} AS days, d.cents AS amount, {counted} AS counted"""


def _deal_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    where = [_months(q, "d.closed_mi"), _in("d.status", part.status)]
    if part.segments:
        where.append(_in("d.seg", part.segments))
    if q.scope == Scope.PARTNER:
        where.append(f"d.sp = {int(q.sid)}")
    elif q.scope == Scope.JOIN_SOURCE:
        where.append(f"d.sp IN (SELECT id FROM {facts.t('kx_partner')} WHERE js = {int(q.sid)})")
    counted = {
        "won": "CASE WHEN d.status = 'won' THEN 1 ELSE 0 END",
        "sourced": "CASE WHEN d.seg = 's' THEN 1 ELSE 0 END",
    }
    columns = _deal_columns(sql, counted.get(part.counted, "0"))
    return f"SELECT {columns} FROM {facts.t('kx_deal')} d WHERE {' AND '.join(where)}"


def _influence_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    """Program: every influenced deal won in the period; a partner or join source: each influenced
    deal it touched, once (as the influence component reads them, from the attribution rows)."""
    where = [_months(q, "d.closed_mi"), "d.status = 'won'", "d.seg = 'i'"]
    if q.scope != Scope.PROGRAM:
        column = "partner_id" if q.scope == Scope.PARTNER else "js"
        where.append(
            f"d.id IN (SELECT a.deal_id FROM {facts.t('kx_attr')} a WHERE a.seg = 'i' "
            f"AND a.{column} = {int(q.sid)} AND {_months(q, 'a.closed_mi')})"
        )
    return f"SELECT {_deal_columns(sql)} FROM {facts.t('kx_deal')} d WHERE {' AND '.join(where)}"


def _attribution_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    partner, account = _names()
    where = [_months(q, "x.closed_mi")]
    if q.scope == Scope.PARTNER:
        where.append(f"x.partner_id = {int(q.sid)}")
    elif q.scope == Scope.JOIN_SOURCE:
        where.append(f"x.js = {int(q.sid)}")
    return f"""SELECT x.deal_id, d.dkey AS deal_key,
            (SELECT a.name FROM {account} a WHERE a.id = d.account_id) AS account, x.seg AS segment,
            (SELECT p.name FROM {partner} p WHERE p.id = x.partner_id) AS partner, d.closed_d AS closed,
            x.deal_cents AS deal_amount, x.cents AS amount, 0 AS counted
        FROM {facts.t("kx_attr")} x JOIN {facts.t("kx_deal")} d ON d.id = x.deal_id
        WHERE {" AND ".join(where)}"""


def _scope_where(q: Query, partner: str = "r.partner_id", js: str = "r.js") -> list[str]:
    if q.scope == Scope.PARTNER:
        return [f"{partner} = {int(q.sid)}"]
    if q.scope == Scope.JOIN_SOURCE:
        return [f"{js} = {int(q.sid)}"]
    return []


def _registration_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    partner, account = _names()
    live = DealRegistration._meta.db_table
    if part.status == ("submitted",):  # leads: every registration submitted in the period
        where = [_months(q, "r.submitted_mi")]
    else:
        where = [_months(q, "r.decided_mi"), _in("r.status", part.status)]
    where += _scope_where(q)
    counted = "CASE WHEN r.status = 'approved' THEN 1 ELSE 0 END" if part.counted else "0"
    decided = f"(SELECT l.decided_at FROM {live} l WHERE l.id = r.id)"  # a moment: dated in Python
    return f"""SELECT r.id AS registration_id,
            (SELECT a.name FROM {account} a WHERE a.id = r.account_id) AS account,
            (SELECT p.name FROM {partner} p WHERE p.id = r.partner_id) AS partner, r.status,
            r.submitted_d AS submitted, {decided} AS decided, {counted} AS counted
        FROM {facts.t("kx_reg")} r WHERE {" AND ".join(where)}"""


def _opportunity_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    """Distinct deals with a counting touch (by the scope) dated in the period."""
    account = _names()[1]
    where = ["t.late = 0", _months(q, "t.touched_mi")] + _scope_where(q, "t.partner_id", "t.js")
    return f"""SELECT d.id AS deal_id, d.dkey AS deal_key,
            (SELECT a.name FROM {account} a WHERE a.id = d.account_id) AS account, d.seg AS segment,
            d.status, t.n AS touches, t.first_d AS first_touch, t.last_d AS last_touch, 0 AS counted
        FROM (SELECT t.deal_id, COUNT(*) AS n, MIN(t.touched_d) AS first_d, MAX(t.touched_d) AS last_d
              FROM {facts.t("kx_touch_all")} t WHERE {" AND ".join(where)} GROUP BY t.deal_id) t
        JOIN {facts.t("kx_deal")} d ON d.id = t.deal_id"""


def _partner_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    """Applications (applied in the period), a cohort (joined in it) or its first sales."""
    partner = _names()[0]
    window = int(facts.activation_window_days)
    activated = f"""(SELECT MIN(m.mind) FROM {facts.t("kx_actm")} m WHERE m.partner_id = p.id)"""
    days_activated = sql.days_between("x.activated", "x.joined")
    where = _scope_where(q, "p.id", "p.js")
    if part.family == "applications":
        where.append(_months(q, "p.applied_mi"))
    else:
        where += ["p.joined IS NOT NULL", _months(q, "p.joined_mi")]
    first_sale = f"(SELECT f.fs_d FROM {facts.t('kx_fs')} f WHERE f.partner_id = p.id)"
    if part.family == "first_sales":
        where.append(f"{first_sale} IS NOT NULL")
    as_of = sql.date_literal(facts.as_of)
    counted = {
        "joined": "CASE WHEN x.joined IS NOT NULL THEN 1 ELSE 0 END",
        "activated": f"CASE WHEN x.activated IS NOT NULL AND {days_activated} <= {window} THEN 1 ELSE 0 END",
        "inside": f"CASE WHEN x.joined <= {as_of} AND {sql.days_between(as_of, 'x.joined')} <= {window} "
        "THEN 1 ELSE 0 END",
    }.get(part.counted, "0")
    days = sql.days_between("x.first_sale", "x.joined") if part.family == "first_sales" else days_activated
    return f"""SELECT x.partner_id, x.partner, x.applied, x.joined, x.activated, x.first_sale,
            x.last_activity, {days} AS days, {counted} AS counted
        FROM (SELECT p.id AS partner_id, (SELECT n.name FROM {partner} n WHERE n.id = p.id) AS partner,
                     p.applied, p.joined, {activated} AS activated, {first_sale} AS first_sale,
                     CAST(NULL AS DATE) AS last_activity
              FROM {facts.t("kx_partner")} p WHERE {" AND ".join(where)}) x"""


def _active_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    """Partners with a qualifying activity in the 90 days ending on the period's last day."""
    partner = _names()[0]
    start = sql.date_literal(active_window_start(q.period.end, ACTIVE_LOOKBACK_DAYS))
    end = int(q.period.last_month_index)
    where = [f"a.mi BETWEEN {end - 3} AND {end}", f"a.maxd >= {start}"] + _scope_where(
        q, "a.partner_id", "a.js"
    )
    return f"""SELECT p.id AS partner_id, (SELECT n.name FROM {partner} n WHERE n.id = p.id) AS partner,
            p.applied, p.joined, CAST(NULL AS DATE) AS activated, CAST(NULL AS DATE) AS first_sale,
            a.last_activity, CAST(NULL AS INTEGER) AS days, 0 AS counted
        FROM (SELECT a.partner_id, MAX(a.maxd) AS last_activity FROM {facts.t("kx_actm")} a
              WHERE {" AND ".join(where)} GROUP BY a.partner_id) a
        JOIN {facts.t("kx_partner")} p ON p.id = a.partner_id"""


def _cost_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    partner, cost = _names()[0], CostEntry._meta.db_table
    where = [_months(q, "c.mi")]
    if part.category:
        where.append(_in("c.cat", (part.category,)))
    if q.scope == Scope.PARTNER:
        where.append(f"c.partner_id = {int(q.sid)}")
    elif q.scope == Scope.JOIN_SOURCE:  # tagged with the source or one of its partners, each once
        where.append(f"(c.tag_js = {int(q.sid)} OR c.partner_js = {int(q.sid)})")
    live = f"(SELECT {{}} FROM {cost} e WHERE e.id = c.id)"
    return f"""SELECT c.id AS cost_id, {live.format("e.date")} AS date,
            {live.format("e.category")} AS category,
            (SELECT p.name FROM {partner} p WHERE p.id = c.partner_id) AS partner,
            {live.format("e.note")} AS description, c.cents AS amount, 0 AS counted
        FROM {facts.t("kx_cost")} c WHERE {" AND ".join(where)}"""


def _mdf_deal_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    """Won deals closed in the period and linked to the scope's counted MDF costs (directly or
    through a registration's deal), each once (kpis.engine.components.mdf_return)."""
    costs = [f"c.cat = '{CostEntry.Category.MDF}'"]
    if q.scope == Scope.PARTNER:
        costs.append(f"c.partner_id = {int(q.sid)}")
    elif q.scope == Scope.JOIN_SOURCE:
        costs.append(f"(c.tag_js = {int(q.sid)} OR c.partner_js = {int(q.sid)})")
    linked = f"""SELECT l.deal_id FROM {facts.t("kx_link")} l JOIN {facts.t("kx_cost")} c ON c.id = l.cost_id
        WHERE {" AND ".join(costs)}"""
    where = [_months(q, "d.closed_mi"), "d.status = 'won'", f"d.id IN ({linked})"]
    return f"SELECT {_deal_columns(sql)} FROM {facts.t('kx_deal')} d WHERE {' AND '.join(where)}"


def _new_customer_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    partner, account = _names()
    where = [_months(q, "n.closed_mi")] + _scope_where(q, "n.partner_id", "n.js")
    return f"""SELECT n.deal_id, d.dkey AS deal_key,
            (SELECT a.name FROM {account} a WHERE a.id = n.account_id) AS account,
            (SELECT p.name FROM {partner} p WHERE p.id = n.partner_id) AS partner,
            d.closed_d AS closed, d.cents AS amount, 0 AS counted
        FROM {facts.t("kx_newcust")} n JOIN {facts.t("kx_deal")} d ON d.id = n.deal_id
        WHERE {" AND ".join(where)}"""
