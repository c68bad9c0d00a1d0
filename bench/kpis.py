"""KPI engine benchmark: full and incremental recompute against the bare-scan floor.

`make bench` (= `python -m bench.kpis`) needs DATABASE_URL on PostgreSQL. It works in its own
database `<name>_bench` on that server (created and migrated on first use, never the one named),
seeds it with `seed_demo --partners 10000 --deals 1000000` unless it already holds that program,
then prints:

- floor: PostgreSQL alone running the bare aggregate scans the engine cannot avoid (every fact
  table grouped by partner and local month, nothing written);
- full recompute seconds (first publication into an empty KPI table, and a full rerun);
- incremental seconds after changing 1% of the deals (every period changes), and after a night's
  work (the next day's run, after 0.1% of the deals were won: only the latest periods change);
- the ratio full / floor and the machine (nproc, memory, CPU model).

Targets (docs/benchmarks.md): full within 2x the floor and under 60 s on 2 cores; incremental
under 5 s.
"""

import argparse
import os
import platform
import subprocess
import time
from datetime import timedelta

from bench.database import bench_database_url


def machine() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
            platform.processor(),
        )
    memory = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.splitlines()
    total = memory[1].split()[1] if len(memory) > 1 else "?"
    return f"nproc={os.cpu_count()} memory={total} cpu={cpu} python={platform.python_version()}"


def timed(label: str, fn):
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    print(f"  {label:<46} {seconds:8.2f} s", flush=True)
    return seconds, result


def _facts(run) -> str:
    if run.changed_rows is None:
        return "facts built in full"
    return f"facts patched with {run.changed_rows} changed rows"


def floor_seconds(tz: str) -> float:
    """The bare aggregate scans over the same tables, nothing written (best of two), with the
    engine's work_mem."""
    from django.db import connection

    local = "CAST(({col} AT TIME ZONE '" + tz + "') AS DATE)"
    month = "date_trunc('month', {col} AT TIME ZONE '" + tz + "')"
    statements = [
        f"SELECT sourcing_partner_id, {month.format(col='closed_at')}, status, SUM(amount), COUNT(*), "
        f"SUM({local.format(col='closed_at')} - {local.format(col='created_at')}) "
        "FROM deals_deal GROUP BY 1, 2, 3",
        f"SELECT t.partner_id, {month.format(col='t.touched_at')}, COUNT(*), SUM(d.amount) "
        "FROM deals_touch t JOIN deals_deal d ON d.id = t.deal_id "
        "WHERE d.closed_at IS NULL OR t.touched_at <= d.closed_at GROUP BY 1, 2",
        f"SELECT partner_id, {month.format(col='submitted_at')}, status, COUNT(*) "
        "FROM deals_dealregistration GROUP BY 1, 2, 3",
        "SELECT join_source_id, date_trunc('month', applied_at), COUNT(*), COUNT(joined_at) "
        "FROM partners_partner GROUP BY 1, 2",
        "SELECT partner_id, date_trunc('month', date), SUM(amount) FROM kpis_costentry GROUP BY 1, 2",
    ]
    best = float("inf")
    with connection.cursor() as cursor:
        cursor.execute("SET work_mem = '256MB'")
    for _ in range(2):
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
                cursor.fetchall()
        elapsed = time.perf_counter() - started
        best = min(best, elapsed)
    with connection.cursor() as cursor:
        cursor.execute("RESET work_mem")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partners", type=int, default=10_000)
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--reseed", action="store_true", help="drop the bench program and seed again")
    parser.add_argument(
        "--chunks",
        type=int,
        default=int(os.environ.get("KPI_CHUNKS", "0")) or (os.cpu_count() or 1),
        help="KPI_CHUNKS for the runs, computed on that many database sessions (default: cores)",
    )
    parser.add_argument("--skip-first", action="store_true", help="keep the published set (no first run)")
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", "")
    os.environ["DATABASE_URL"] = bench_database_url(url, command="bench.kpis")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prm.settings")
    # A command an operator runs: no web statement timeout (prm/database.py).
    os.environ.setdefault("PRM_DB_ROLE", "command")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from deals.models import Deal, Touch
    from kpis.models import KpiValue
    from kpis.services import kpi_run_create, kpi_run_execute
    from partners.models import Partner
    from program.models import ProgramSettings

    print(f"KPI benchmark on {connection.settings_dict['NAME']}; {machine()}", flush=True)
    call_command("migrate", verbosity=0)
    if args.reseed or Deal.objects.count() != args.deals:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT tablename FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename <> 'django_migrations'"
            )
            tables = [r[0] for r in cursor.fetchall()]
            cursor.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
        call_command("migrate", verbosity=0)
        timed(
            f"seed_demo --partners {args.partners} --deals {args.deals}",
            lambda: call_command("seed_demo", partners=args.partners, deals=args.deals, verbosity=0),
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(
        f"  data: {Partner.objects.count()} partners, {Deal.objects.count()} deals, "
        f"{Touch.objects.count()} touches",
        flush=True,
    )
    tz = ProgramSettings.load().time_zone

    def run(mode: str, as_of=None):
        run, _ = kpi_run_create(trigger="command", mode=mode, as_of=as_of)
        return kpi_run_execute(run_id=run.pk)

    settings.KPI_CHUNKS = args.chunks
    print(f"  KPI_CHUNKS={args.chunks} (database sessions computing a run's chunks at once)", flush=True)
    # The floor is the best of its two runs (until 2026-12-01 this printed and used both runs' sum).
    floor = floor_seconds(tz)
    print(f"  {'floor (bare aggregate scans, best of two)':<46} {floor:8.2f} s", flush=True)
    if args.skip_first and KpiValue.objects.exists():
        first, first_run = float("nan"), None
    else:
        KpiValue.objects.all().delete()
        first, first_run = timed("full recompute, first publication", lambda: run("full"))
    full, full_run = timed("full recompute, rerun on unchanged data", lambda: run("full"))
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE deals_deal SET amount = amount + 1, updated_at = now() "
            "WHERE id IN (SELECT id FROM deals_deal ORDER BY md5(id::text) LIMIT %s)",
            [max(1, args.deals // 100)],
        )
    incremental, inc_run = timed("incremental after changing 1% of the deals", lambda: run("incremental"))
    print(
        f"  published rows: {KpiValue.objects.count()}; "
        f"first run wrote {first_run.rows_written if first_run else '(skipped)'}; "
        f"incremental rewrote {inc_run.rows_written} in {inc_run.periods_recomputed} periods; "
        f"{_facts(inc_run)}"
    )
    # A night's work as programs see it: the next day's run (its as-of date one day later), after
    # deals won that day (0.1% of them), nothing else. (Until 2026-12-02 the night's run kept the
    # day before's as-of date, which moves no cohort or first sale by date.)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE deals_deal SET status = 'won', updated_at = now(), "
            "closed_at = GREATEST(created_at, now()) "
            "WHERE id IN (SELECT id FROM deals_deal WHERE status = 'open' ORDER BY md5(id::text) LIMIT %s)",
            [max(1, args.deals // 1000)],
        )
    next_day = inc_run.as_of + timedelta(days=1)
    nightly, nightly_run = timed(
        "incremental, next day, after 0.1% of the deals won", lambda: run("incremental", next_day)
    )
    print(
        f"  that run recomputed {nightly_run.periods_recomputed} periods and rewrote "
        f"{nightly_run.rows_written} rows; {_facts(nightly_run)}"
    )
    print(f"  ratio full / floor: {full / floor:.1f}x (first publication {first / floor:.1f}x)")
    print(
        "  targets: full <= 2x floor: {}; full < 60 s: {}; incremental < 5 s: {} "
        "(after a night's wins: {})".format(
            "met" if full <= 2 * floor else "NOT met",
            "met" if full < 60 else "NOT met",
            "met" if incremental < 5 else "NOT met",
            "met" if nightly < 5 else "NOT met",
        )
    )


if __name__ == "__main__":
    main()
