"""API load benchmark: the KPI list and the deal list at 50 concurrent clients, beside the floor.

`python -m bench.api` needs DATABASE_URL on PostgreSQL. Like bench.kpis it works in its own
database `<name>_bench` (created and migrated on first use), seeded with
`seed_demo --partners 10000 --deals 1000000` unless it already holds that program, with a
published KPI set (a full recompute runs when there is none). It then serves the app with
gunicorn on 127.0.0.1 and drives it with wrk (Debian package `wrk`), printing p50 / p95 / p99
latency and requests per second for:

- `GET /api/v1/kpi-values/` and `GET /api/v1/deals/` (first page of 50) as a partner manager
  authenticated with an API token: the whole stack (token auth, role check, filters, cursor
  pagination, serializers);
- the floor: a bare Django view (no DRF, no auth) that runs the same page query and dumps the
  rows as JSON, served by the same gunicorn.

Target (docs/benchmarks.md): p95 < 50 ms at 50 concurrent clients. Traffic goes only to 127.0.0.1;
each run is bounded by --seconds.

This module is also the WSGI entry point gunicorn loads (`bench.api:application`): the app's own
URLs plus the two floor views under /bench-floor/.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from bench.database import bench_database_url

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prm.settings")

PAGE_SIZE = 50
CONCURRENCY = 50
WRK_REPORT = """
done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT %d %d %.1f %.2f %.2f %.2f %d\\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout,
    summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.errors.status))
end
"""


# --- The floor: the same queries as the API, with nothing around them ---------------------------
def _floor_deals(request):
    from django.http import HttpResponse

    from deals.models import Deal

    rows = list(
        Deal.objects.select_related("account")
        .order_by("-id")
        .values(
            "id",
            "key",
            "name",
            "account_id",
            "account__name",
            "amount",
            "status",
            "created_at",
            "closed_at",
            "sourcing_partner_id",
            "updated_at",
        )[: PAGE_SIZE + 1]
    )
    return HttpResponse(json.dumps(rows[:PAGE_SIZE], default=str), content_type="application/json")


def _floor_kpi_values(request):
    from django.http import HttpResponse

    from kpis.selectors import published_values

    rows = list(published_values(grain="month").order_by("id").values()[: PAGE_SIZE + 1])
    return HttpResponse(json.dumps(rows[:PAGE_SIZE], default=str), content_type="application/json")


def _urlpatterns():
    from django.urls import include, path

    return [
        path("bench-floor/deals/", _floor_deals),
        path("bench-floor/kpi-values/", _floor_kpi_values),
        path("", include("prm.urls")),
    ]


def __getattr__(name: str):
    # Django reads `urlpatterns` lazily, after setup, when this module is the ROOT_URLCONF.
    if name == "urlpatterns":
        return _urlpatterns()
    if name == "application":
        from django.conf import settings
        from django.core.wsgi import get_wsgi_application

        settings.ROOT_URLCONF = "bench.api"
        return get_wsgi_application()
    raise AttributeError(name)


# --- The benchmark -------------------------------------------------------------------------------
def _prepare(partners: int, deals: int) -> str:
    """Seed when needed, publish KPIs when needed; returns a partner manager's API token."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from api.services import api_token_create
    from deals.models import Deal
    from kpis.models import KpiValue
    from kpis.services import kpi_run_create, kpi_run_execute
    from partners.models import Partner
    from partners.roles import StaffRole
    from partners.services import staff_user_create

    call_command("migrate", verbosity=0)
    # gunicorn serves with DEBUG off, from STATIC_ROOT like production (else each worker warns).
    call_command("collectstatic", interactive=False, verbosity=0)
    if Deal.objects.count() < deals or Partner.objects.count() < partners:
        print(f"  seeding: seed_demo --partners {partners} --deals {deals} (once)", flush=True)
        call_command("seed_demo", partners=partners, deals=deals, if_empty=True, verbosity=0)
    if not KpiValue.objects.exists():
        print("  publishing a KPI set (full recompute, once)", flush=True)
        run, _ = kpi_run_create(trigger="command", mode="full")
        kpi_run_execute(run_id=run.pk)
    with connection.cursor() as cursor:
        # Planner statistics must know the freshly published KPI set (autovacuum may not have run yet).
        cursor.execute("ANALYZE")
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(username="bench-manager").first()
    if user is None:
        user = staff_user_create(
            username="bench-manager",
            email="bench@example.com",
            password="load test passphrase, not for production",
            role=StaffRole.PARTNER_MANAGER,
        )
    _, secret = api_token_create(user=user, name=f"bench {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(
        f"  data: {Partner.objects.count()} partners, {Deal.objects.count()} deals, "
        f"{KpiValue.objects.count()} KPI values",
        flush=True,
    )
    connection.close()
    return secret


def _wait_until_up(base: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {server.returncode}")
        try:
            urllib.request.urlopen(base + "/api/v1/schema/", timeout=2).read()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("gunicorn did not start")


def _etag(url: str, token: str) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers["ETag"]


def _wrk(
    url: str,
    *,
    seconds: int,
    token: str | None,
    script: str,
    clients: int = CONCURRENCY,
    headers: tuple[str, ...] = (),
) -> dict:
    command = [
        "wrk",
        f"-t{min(2, clients)}",
        f"-c{clients}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        script,
    ]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    for header in headers:
        command += ["-H", header]
    output = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    line = next((line for line in output.splitlines() if line.startswith("RESULT ")), "")
    if not line or line.split()[1] == "0":
        raise RuntimeError(f"wrk made no request to {url}:\n{output}")
    requests, errors, rps, p50, p95, p99, bad_status = line.split()[1:]
    return {
        "requests": int(requests),
        "errors": int(errors),
        "bad_status": int(bad_status),
        "rps": float(rps),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partners", type=int, default=10_000)
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=20, help="per endpoint (bounded run)")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1)
    parser.add_argument(
        "--worker-class", choices=("sync", "gthread"), default="sync", help="gunicorn worker class"
    )
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--clients", type=int, default=CONCURRENCY, help="concurrent connections")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench.api needs wrk: apt-get install wrk")

    os.environ["DATABASE_URL"] = bench_database_url(os.environ.get("DATABASE_URL", ""), command="bench.api")
    from bench.kpis import machine

    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"API benchmark; {machine()}; load average before: {load}", flush=True)
    token = _prepare(args.partners, args.deals)

    env = {
        **os.environ,
        "DEBUG": "0",
        "SECURE_SSL_REDIRECT": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        # The benchmark measures the read path; keep the write throttle out of the way.
        "DB_CONN_MAX_AGE": "600",
    }
    base = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "bench.api:application",
            "--bind",
            f"127.0.0.1:{args.port}",
            "--workers",
            str(args.workers),
            "--worker-class",
            args.worker_class,
            *(["--threads", str(args.threads)] if args.worker_class == "gthread" else []),
            "--log-level",
            "warning",
        ],
        env=env,
        start_new_session=True,
    )
    results: list[tuple[str, dict]] = []
    try:
        _wait_until_up(base, server)
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(WRK_REPORT)
        kpi_list = f"{base}/api/v1/kpi-values/?grain=month"
        # What a BI tool polling with the ETag it was given gets: 304 until the next publication.
        polling = (f"If-None-Match: {_etag(kpi_list, token)}",)
        cases = [
            ("KPI list  /api/v1/kpi-values/", kpi_list, token, ()),
            ("KPI list, If-None-Match (304)", kpi_list, token, polling),
            ("KPI floor (bare view, same query)", f"{base}/bench-floor/kpi-values/", None, ()),
            ("deal list /api/v1/deals/", f"{base}/api/v1/deals/", token, ()),
            ("deal floor (bare view, same query)", f"{base}/bench-floor/deals/", None, ()),
        ]
        threads = f" x {args.threads} threads" if args.worker_class == "gthread" else ""
        print(
            f"  {args.workers} gunicorn {args.worker_class} workers{threads}, "
            f"wrk -c{args.clients} -d{args.seconds}s, page of {PAGE_SIZE}",
            flush=True,
        )
        print(f"  {'endpoint':<38} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>7}")
        for label, url, auth, headers in cases:
            options = {"token": auth, "script": script.name, "clients": args.clients, "headers": headers}
            _wrk(url, seconds=5, **options)  # warm up
            figures = _wrk(url, seconds=args.seconds, **options)
            results.append((label, figures))
            print(
                f"  {label:<38} {figures['p50']:8.1f} {figures['p95']:8.1f} {figures['p99']:8.1f} "
                f"{figures['rps']:8.0f} {figures['errors']:7d}",
                flush=True,
            )
        os.unlink(script.name)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    print(f"  load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    failed = [label for label, f in results if f["errors"]]
    if failed:
        sys.exit(f"errors (non-2xx or socket) on: {', '.join(failed)}")


if __name__ == "__main__":
    main()
