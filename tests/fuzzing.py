"""What the fuzz tests share: nasty input strategies, Hypothesis settings and the request helper.

The property every fuzz test checks is the one the house rules state: no input ever gives a 500.
`send` makes each request in a savepoint, so a request that breaks the database transaction (as a
server error on PostgreSQL does) cannot make every later example fail with "current transaction is
aborted"; the server's own exception is re-raised with the request attached as a note, so Hypothesis
reports each distinct crash site once, with the request that reached it.
"""

import os
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta, timezone
from urllib.parse import quote, quote_from_bytes

from django.db import transaction
from django.http import HttpResponse
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

# Kept small so the whole fuzz adds about a minute to the suite; raise it locally to dig deeper,
# e.g. FUZZ_EXAMPLES=400 FUZZ_SHRINK=1 pytest tests/test_fuzz_pages.py.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0") or 0)
FUZZ_SHRINK = os.environ.get("FUZZ_SHRINK", "") == "1"


def fuzz_settings(max_examples: int) -> settings:
    """Reproducible in CI: derandomized, no example database, no shrinking (a failure names its
    request in a note already; FUZZ_SHRINK=1 turns shrinking on to minimise it)."""
    phases = [Phase.explicit, Phase.generate, *([Phase.shrink] if FUZZ_SHRINK else [])]
    return settings(
        max_examples=EXAMPLES or max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=phases,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# Every class of value that has given, or could give, a server error somewhere: NUL and other
# control characters, years 0000/0001/9999 and beyond, non-ASCII digits (Arabic-Indic, Devanagari,
# full width) that Python's int()/Decimal() accept, exponent notation, NaN and infinities, numbers
# beyond 64 bits, impossible dates, naive and out-of-range UTC offsets, very long strings, empty and
# blank values, markup and open redirects.
NASTY = (
    "",
    " ",
    " \t\n ",
    "\x00",
    "a\x00b",
    "example.com\x00",
    "\x01\x1f\x7f",
    "%00",
    "0",
    "-0",
    "-1",
    "1.5",
    "0.001",
    "1E+5",
    "1e-7",
    "1_000",
    "NaN",
    "Infinity",
    "-Infinity",
    "٣",
    "١٢٣٤",
    "२०२६",
    "２０２６",
    "abc",
    "true",
    "null",
    "[]",
    "{}",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999999999999999",
    "0000",
    "0001",
    "9999",
    "10000",
    "-2026",
    "0000-01",
    "0001-01",
    "9999-12",
    "0000-Q1",
    "0001-Q1",
    "9999-Q4",
    "2026-00",
    "2026-13",
    "2026-Q0",
    "2026-Q5",
    "٢٠٢٦-٠٣",
    "2026-02-30",
    "0000-00-00",
    "0001-01-01",
    "9999-12-31",
    "2026-03-01T10:00",
    "2026-03-01T10:00:00",
    "2026-03-01T10:00:00-18:30",
    "2026-03-01T10:00:00+23:59",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59Z",
    "x" * 3000,
    "é" * 300,
    "\u202e\ufeff\u200b",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "../../etc/passwd",
    "//evil.example",
    "https://evil.example/",
    "javascript:alert(1)",
)

_offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)

nasty_text: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(NASTY),
    _text,
    st.from_regex(r"\A-?[0-9]{1,5}(-(Q[0-9]|[0-9]{1,3}))?\Z"),
    st.integers(-(2**70), 2**70).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.dates().map(date.isoformat),
    st.datetimes(timezones=st.one_of(st.none(), st.just(UTC), _offsets)).map(datetime.isoformat),
)


def maybe_valid(*valid: str) -> st.SearchStrategy[str]:
    """Mostly one of the valid values (so a form gets past its first field), sometimes a nasty one."""
    return st.one_of(st.sampled_from(valid), st.sampled_from(valid), nasty_text)


# A query value is text, or raw bytes (invalid UTF-8 and all) percent-encoded as they are.
query_value = st.one_of(nasty_text, nasty_text, st.binary(max_size=12))


def query_string(pairs: Iterable[tuple[str, str | bytes]]) -> str:
    def encoded(value: str | bytes) -> str:
        return quote_from_bytes(value, safe="") if isinstance(value, bytes) else quote(value, safe="")

    return "&".join(f"{encoded(name)}={encoded(value)}" for name, value in pairs)


def query_pairs(names: Iterable[str], *, max_size: int = 6) -> st.SearchStrategy[list[tuple]]:
    """Query parameters drawn from the names a page reads (repeats included) and a few stray ones."""
    name = st.one_of(st.sampled_from(sorted(names)), st.sampled_from(sorted(names)), _text)
    return st.lists(st.tuples(name, query_value), max_size=max_size)


def send(description: str, call: Callable[[], HttpResponse]) -> HttpResponse:
    """Make one request in a savepoint; a server error fails the example, naming the request."""
    try:
        with transaction.atomic():
            response = call()
    except Exception as exc:
        exc.add_note(f"request: {description}")
        raise
    assert response.status_code < 500, f"{description} -> {response.status_code}"
    return response
