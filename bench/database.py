"""The PostgreSQL database the benchmarks seed once and reuse."""

import sys
from urllib.parse import urlparse, urlunparse


def bench_database_url(url: str, *, command: str) -> str:
    """`<DATABASE_URL's database>_bench` on the same server, created when missing.

    Exits with a message when `url` is not PostgreSQL: the targets are PostgreSQL figures.
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql", "pgsql"):
        sys.exit(f"{command} needs DATABASE_URL=postgres://... (the targets are PostgreSQL figures)")
    name = parsed.path.lstrip("/") + "_bench"
    import psycopg2

    admin = psycopg2.connect(urlunparse(parsed._replace(path="/postgres")))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return urlunparse(parsed._replace(path="/" + name))
