"""Changed periods: the periods whose families' rows (families.FAMILIES) differ from the previous run."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import date

from kpis.engine import state
from kpis.engine.context import RunContext
from kpis.engine.families import Contribution, contributions, plain
from kpis.engine.tables import set_aside, state_table
from kpis.metrics import Grain

# An incremental run that finds this share of the months changed recomputes every period.
MOST_MONTHS_CHANGED = 0.75


def restrict_to_changed_periods(ctx: RunContext) -> None:
    """Incremental run: trim kx_grain and kx_period to the periods whose values may have changed
    since the previous run, and list in kx_pubper the published periods to replace (those plus
    the periods that left the run's range). Runs on the full facts, before the components.

    A changed period: one holding a month where some family's row differs between the
    previous run's facts and this run's (rows compared as multisets, so a deletion, a move to
    another month or partner, and an as-of-dependent flag all show), or a period new to the
    range. A new or removed join source, a renamed key, or a state computed by another
    CODE_VERSION or with other settings may change rows of every period: then nothing is
    trimmed. Nor is it once most months have changed (MOST_MONTHS_CHANGED).
    """
    if ctx.previous is None:
        return
    # The previous run's small tables were set aside when the facts were patched in place.
    old = set_aside if ctx.result.delta else functools.partial(state_table, ctx.previous)
    keys_changed = labels_changed(ctx, old)
    (previous_as_of, previous_code), *_ = ctx.fetch(f"SELECT as_of, code FROM {old('kx_state')}")
    if keys_changed or previous_code != state.code_and_settings(ctx):
        return
    # The previous run's rows as that run read them: with its own as-of date.
    if not changed_months(ctx, old, date.fromisoformat(str(previous_as_of)[:10])):
        return
    trim_periods(ctx, old)


def family_pairs(
    ctx: RunContext, old: Callable[[str], str], previous_as_of: date
) -> Iterable[tuple[Contribution, Contribution]]:
    """Each family's rows now and as the previous run read them."""
    if ctx.result.delta:
        # Only the patched facts' rows can differ; their previous rows were kept before patching.
        return [
            (now, Contribution(now.names(), f"kx_before_{i}", now.months, now.reach))
            for i, now in enumerate(contributions(ctx, plain, ctx.as_of))
        ]
    return zip(contributions(ctx, plain, ctx.as_of), contributions(ctx, old, previous_as_of), strict=True)


def changed_months(ctx: RunContext, old: Callable[[str], str], previous_as_of: date) -> bool:
    """kx_dirty_mi: the months of the families' rows that changed; False (stopping early) once
    most months have."""
    ctx.exec(f"CREATE {ctx.fact_table('kx_dirty_mi')} (mi INTEGER)")
    first, last = ctx.result.first_month, ctx.result.last_month
    assert first is not None and last is not None, "the periods are built first"
    for now, before in family_pairs(ctx, old, previous_as_of):
        ctx.exec(f"INSERT INTO kx_dirty_mi (mi) {now.changed_months(before, affected_only=ctx.result.delta)}")
        dirty = ctx.fetch(f"SELECT COUNT(DISTINCT mi) FROM kx_dirty_mi WHERE mi BETWEEN {first} AND {last}")
        if dirty[0][0] >= MOST_MONTHS_CHANGED * (last - first + 1):
            # Comparing the other families would cost more than the few periods it could spare.
            return False
    return True


def trim_periods(ctx: RunContext, old: Callable[[str], str]) -> None:
    """Keep in kx_grain and kx_period the periods of the changed months and the new periods;
    kx_pubper: those and the periods gone from the range."""
    # A changed month's month, quarter and year, wherever it lies: a month that has just left
    # the range still changes its quarter and year if they stay.
    ctx.exec(
        f"""CREATE {ctx.fact_table("kx_dirty_per")} AS
        SELECT a.grain, a.pidx FROM kx_allper a
        WHERE EXISTS (SELECT 1 FROM kx_dirty_mi d WHERE a.pidx = CASE a.grain
                          WHEN '{Grain.MONTH}' THEN d.mi WHEN '{Grain.QUARTER}' THEN d.mi / 3
                          ELSE d.mi / 12 END)
        UNION SELECT grain, pidx FROM (SELECT grain, pidx FROM kx_allper
                                       EXCEPT SELECT grain, pidx FROM {old("kx_allper")}) n"""
    )
    ctx.exec(
        f"""CREATE {ctx.fact_table("kx_pubper")} AS
        SELECT a.grain, a.label FROM kx_allper a
        JOIN kx_dirty_per d ON d.grain = a.grain AND d.pidx = a.pidx
        UNION SELECT o.grain, o.label FROM {old("kx_allper")} o
        WHERE NOT EXISTS (SELECT 1 FROM kx_allper a WHERE a.grain = o.grain AND a.pidx = o.pidx)"""
    )
    for table in ("kx_grain", "kx_period"):
        ctx.exec(
            f"DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM kx_dirty_per d "
            f"WHERE d.grain = {table}.grain AND d.pidx = {table}.pidx)"
        )
    ctx.analyze("kx_grain", "kx_period", "kx_pubper")
    ctx.result.restricted = True
    ctx.result.periods_recomputed = ctx.fetch("SELECT COUNT(*) FROM kx_pubper")[0][0]


def labels_changed(
    ctx: RunContext, old: Callable[[str], str], *, periods: bool = False, new_keys: bool = False
) -> bool:
    """Whether the previous state's labels differ from this run's: a join source new or gone, a
    published key renamed or gone (`new_keys`: or new), and (`periods`) a period label new or
    gone. `old(name)` names the previous state's table `name`. EXCEPT hashes; an EXISTS over a
    join would plan a nested loop."""
    tests = [
        f"EXISTS (SELECT id FROM kx_js EXCEPT SELECT id FROM {old('kx_js')})",
        f"EXISTS (SELECT id FROM {old('kx_js')} EXCEPT SELECT id FROM kx_js)",
        f"EXISTS (SELECT scope, id, key FROM {old('kx_keys')} EXCEPT SELECT scope, id, key FROM kx_keys)",
    ]
    if new_keys:
        tests.append(
            f"EXISTS (SELECT scope, id, key FROM kx_keys EXCEPT SELECT scope, id, key FROM {old('kx_keys')})"
        )
    if periods:
        tests += [
            f"EXISTS (SELECT grain, pidx, label FROM kx_allper "
            f"EXCEPT SELECT grain, pidx, label FROM {old('kx_allper')})",
            f"EXISTS (SELECT grain, pidx, label FROM {old('kx_allper')} "
            "EXCEPT SELECT grain, pidx, label FROM kx_allper)",
        ]
    return bool(ctx.fetch("SELECT " + " OR ".join(tests))[0][0])
