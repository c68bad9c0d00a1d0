"""Import benchmark: the bench-size INTERCHANGE folder imported into a fresh PostgreSQL database.

`make bench` (= `python -m bench.imports` after the KPI and API benchmarks) needs DATABASE_URL on
PostgreSQL. It writes the folder once with `seed_demo --partners 10000 --deals 1000000 --out`
(~5.1M rows; into `BENCH_DATA_DIR`, default `var/bench-data/`, reused while it is complete), drops
and creates the database `<name>_import_bench` on that server, migrates it, imports the folder
with `import_program` (one transaction, as the command does) and prints each file's rows/s, the
total, the peak memory and the machine.

Targets (docs/benchmarks.md): deals.csv under 60 s, the whole folder under 5 minutes, memory flat.
"""

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from bench.kpis import machine

FILES = (
    "join_sources.csv",
    "partners.csv",
    "accounts.csv",
    "deals.csv",
    "registrations.csv",
    "touches.csv",
    "costs.csv",
    "targets.csv",
)


def fresh_database(url: str) -> str:
    """`<DATABASE_URL's database>_import_bench`, dropped and created empty."""
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql", "pgsql"):
        sys.exit("bench.imports needs DATABASE_URL=postgres://... (the targets are PostgreSQL figures)")
    name = parsed.path.lstrip("/") + "_import_bench"
    import psycopg2

    admin = psycopg2.connect(urlunparse(parsed._replace(path="/postgres")))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return urlunparse(parsed._replace(path="/" + name))


def ensure_folder(folder: Path, *, partners: int, deals: int) -> None:
    done = folder / ".complete"
    if done.exists() and done.read_text() == f"{partners} {deals}":
        print(f"  folder {folder} (reused)", flush=True)
        return
    started = time.perf_counter()
    # Without DATABASE_URL: `seed_demo --out` needs no database (a fresh checkout can run it).
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PRM_VAR_DIR"] = str(folder.parent / ".seed-var")
    subprocess.run(
        [sys.executable, "manage.py", "seed_demo", "--partners", str(partners), "--deals", str(deals),
         "--out", str(folder)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    done.write_text(f"{partners} {deals}")
    print(f"  folder {folder} written in {time.perf_counter() - started:.1f} s", flush=True)


def backend_cpu(pid: int) -> float:
    """User + system CPU seconds of a local process (the PostgreSQL backend), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _SlowStatements:
    """A `connection.execute_wrapper` printing the statements slower than `seconds` (None: none) with
    their wall and backend CPU seconds: where a file's time goes (COPY is not seen: it bypasses it)."""

    def __init__(self, seconds: float | None, backend: int) -> None:
        self.seconds = seconds
        self.backend = backend

    def __call__(self, execute, sql, params, many, context):
        if self.seconds is None:
            return execute(sql, params, many, context)
        backend = self.backend
        started, cpu = time.perf_counter(), backend_cpu(backend)
        try:
            return execute(sql, params, many, context)
        finally:
            seconds = time.perf_counter() - started
            if seconds >= self.seconds:
                text = " ".join(sql.split())
                print(
                    f"    {seconds:7.2f} s (postgres CPU {backend_cpu(backend) - cpu:6.2f} s)  {text[:160]}",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partners", type=int, default=10_000)
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--folder", type=Path, help="an INTERCHANGE folder to import instead")
    parser.add_argument(
        "--statements",
        type=float,
        metavar="SECONDS",
        help="also print each SQL statement that takes at least SECONDS (wall), as it ends",
    )
    args = parser.parse_args()

    data_dir = Path(os.environ.get("BENCH_DATA_DIR", "var/bench-data"))
    folder = args.folder or data_dir / f"program-{args.partners}-{args.deals}"
    print(f"Import benchmark; {machine()}; load {os.getloadavg()[0]:.1f}", flush=True)
    if args.folder is None:
        ensure_folder(folder, partners=args.partners, deals=args.deals)
    os.environ["DATABASE_URL"] = fresh_database(os.environ.get("DATABASE_URL", ""))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prm.settings")
    os.environ.setdefault("PRM_DB_ROLE", "command")  # an operator's command: no statement timeout
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from interchange.importer import import_program

    call_command("migrate", verbosity=0)
    present = [name for name in FILES if (folder / name).exists()]
    rows = sum(sum(1 for _ in (folder / name).open("rb")) - 1 for name in present)
    print(f"  into {connection.settings_dict['NAME']}: {rows:,} rows in {len(present)} files", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    # CPU seconds per file, of this process and of its PostgreSQL backend (same machine): on a
    # shared machine they say what the import costs better than the wall time does.
    cpu: dict[str, tuple[float, float]] = {}
    last = [time.process_time(), backend_cpu(backend)]

    def on_progress(progress) -> None:
        if progress.stage == "done":
            now = [time.process_time(), backend_cpu(backend)]
            cpu[progress.file] = (now[0] - last[0], now[1] - last[1])
            last[:] = now

    started = time.perf_counter()
    with transaction.atomic(), connection.execute_wrapper(_SlowStatements(args.statements, backend)):
        result = import_program(folder, progress=sys.stdout.isatty(), on_progress=on_progress)
    seconds = time.perf_counter() - started
    print(f"  {'file':<18} {'rows':>10}      {'wall':>8}   {'rate':>10}         CPU: python + postgres")
    for name, summary in result.files.items():
        rate = summary.rows / max(summary.seconds, 1e-6)
        python, postgres = cpu.get(name, (0.0, 0.0))
        line = (
            f"  {name:<18} {summary.rows:>10,} rows {summary.seconds:8.1f} s {rate:>10,.0f} rows/s"
            f"  {python:6.1f} s + {postgres:6.1f} s"
        )
        print(line, flush=True)
    total = sum(s.rows for s in result.files.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    python, postgres = sum(c[0] for c in cpu.values()), sum(c[1] for c in cpu.values())
    print(
        f"  all files, commit included {total:>10,} rows {seconds:8.1f} s {total / seconds:>10,.0f} rows/s"
        f"  {python:6.1f} s + {postgres:6.1f} s; peak {peak:.0f} MB; load {os.getloadavg()[0]:.1f}"
    )
    deals = result.files.get("deals.csv")
    if deals is not None:
        print(f"  targets: deals.csv < 60 s: {'met' if deals.seconds < 60 else 'not met'}; "
              f"all files < 300 s: {'met' if seconds < 300 else 'not met'}")  # fmt: skip


if __name__ == "__main__":
    main()
