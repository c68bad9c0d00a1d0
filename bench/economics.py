"""Commission ledger benchmark: building the ledger of the bench program, in rows per second.

`python -m bench.economics` needs DATABASE_URL on PostgreSQL. Like bench.kpis it works in its own
database `<name>_bench` (created and migrated on first use), seeded with `seed_demo --partners
10000 --deals 1000000` unless it already holds a program of that many deals (seed_demo brings the
demo commission plans, interchange/seed_economics.py). It empties the ledger, then prints:

- the first build (every entry created), with won deals and entries per second;
- a rerun on unchanged data (idempotent: nothing changes);
- a rebuild after lowering the amount of 1% of the won deals (pending entries adjusted in place).
"""

import argparse
import os
import time

from bench.database import bench_database_url
from bench.kpis import machine


def timed(label: str, fn):
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    return seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partners", type=int, default=10_000)
    parser.add_argument("--deals", type=int, default=1_000_000)
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", "")
    os.environ["DATABASE_URL"] = bench_database_url(url, command="bench.economics")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prm.settings")
    os.environ.setdefault("PRM_DB_ROLE", "command")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from deals.models import Deal
    from economics.ledger import build_ledger
    from economics.models import CommissionEntry
    from economics.payout_models import Payout, PayoutBatch, PayoutLine

    print(f"Commission ledger benchmark on {connection.settings_dict['NAME']}; {machine()}", flush=True)
    call_command("migrate", verbosity=0)
    if Deal.objects.count() != args.deals:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT tablename FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename <> 'django_migrations'"
            )
            tables = [r[0] for r in cursor.fetchall()]
            cursor.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
        call_command("migrate", verbosity=0)
        seconds, _ = timed(
            "seed", lambda: call_command("seed_demo", partners=args.partners, deals=args.deals)
        )
        print(f"  seed_demo --partners {args.partners} --deals {args.deals}: {seconds:.1f} s", flush=True)
    with connection.cursor() as cursor:
        # The payouts made of the entries go with them (their lines reference the entries).
        cursor.execute(
            f"TRUNCATE {PayoutLine._meta.db_table}, {Payout._meta.db_table}, {PayoutBatch._meta.db_table}, "
            f"{CommissionEntry._meta.db_table} RESTART IDENTITY"
        )
        cursor.execute("VACUUM ANALYZE")
    won = Deal.objects.filter(status="won").count()
    print(f"  data: {Deal.objects.count()} deals, {won} won", flush=True)

    seconds, result = timed("first", build_ledger)
    entries = CommissionEntry.objects.count()
    print(
        f"  {'first build (empty ledger)':<40} {seconds:8.2f} s  {entries} entries  "
        f"{won / seconds:,.0f} won deals/s  {entries / seconds:,.0f} entries/s",
        flush=True,
    )
    seconds, result = timed("rerun", build_ledger)
    print(
        f"  {'rerun on unchanged data':<40} {seconds:8.2f} s  {result.keys_changed} keys changed", flush=True
    )
    step = 100
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Deal._meta.db_table} SET amount = ROUND(amount * 0.9, 2) "
            f"WHERE status = 'won' AND id % {step} = 0 AND amount >= 1"
        )
    seconds, result = timed("lowered", build_ledger)
    print(
        f"  {'after lowering 1% of the won deals':<40} {seconds:8.2f} s  {result.keys_changed} keys changed "
        f"({result.adjusted} adjusted, {result.created} created)",
        flush=True,
    )


if __name__ == "__main__":
    main()
