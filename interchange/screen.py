"""PostgreSQL: the large files screened cheaply, so that the full parser runs only on the rows it must.

Parsing every cell in Python (datetimes, amounts, choices, the rules of `deals.rules`) cost ~30 µs a
row, most of an import's CPU. On PostgreSQL the hot files (deals, registrations, touches) are staged
as text into `imp_raw`: the reader checks field counts and characters as before, and each row's
formatted cells against one compiled pattern (`Screen.formats`: a datetime
`YYYY-MM-DD[T ]HH:MM[:SS[.ffffff]]` with an offset or Z, an amount of at most MONEY_MAX_DIGITS digits,
MONEY_DECIMAL_PLACES of them decimals, above 0, a choice among its values; one regex call a row).
Then one query over the staged text takes the rows whose cells are in that form, whose dates are
within the plausible range, texts within their lengths, and which keep the file's row rules
(`Screen.cells`, `Screen.rules`), and converts them in SQL: a cast of such text gives exactly the
value the parser would. Every other row, a "suspect", goes through the very parser and rules of the
SQLite path (`file_steps`, `deal_files`), which gives the value or the message. The screen may hold
back valid rows (Python converts them), never pass a bad one; it writes no message.

Bounds and sizes come from program.validation (plausible_bounds, MONEY_*), once per import.
"""

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from operator import itemgetter
from typing import TYPE_CHECKING

from deals.models import Deal, DealRegistration, Touch
from interchange.staging import STAGE, column_type
from program.validation import MONEY_DECIMAL_PLACES, MONEY_MAX_DIGITS

if TYPE_CHECKING:
    from interchange.file_steps import FileSteps
    from interchange.importer import _Row
    from interchange.parsing import Bounds

DEAL_STATUSES = tuple(Deal.Status.values)
REGISTRATION_STATUSES = tuple(DealRegistration.Status.values)
TOUCH_KINDS = tuple(Touch.Kind.values)
# The lengths `deal_files` checks a key and a name against.
KEY_MAX_LENGTH = 100
NAME_MAX_LENGTH = 200

RAW = "imp_raw"
SUSPECT = "imp_suspect"
# Suspect rows go through Python this many at a time (memory stays flat however many there are).
CHUNK_ROWS = 5000

# Formats (Python patterns, matched whole on the cells as read, before stripping).
DATETIME_FORMAT = (
    r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[T ](?:[01][0-9]|2[0-3]):[0-5][0-9]"
    r"(?::[0-5][0-9](?:\.[0-9]{1,6})?)?(?:Z|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])"
)
# At most the whole digits MAX_AMOUNT has, and one of them or of the cents not 0.
AMOUNT_FORMAT = (
    rf"(?=[0-9.]*[1-9])[0-9]{{1,{MONEY_MAX_DIGITS - MONEY_DECIMAL_PLACES}}}"
    rf"(?:\.[0-9]{{1,{MONEY_DECIMAL_PLACES}}})?"
)
# No leap-year arithmetic: a 29 February (and a 30th or 31st a month lacks) is a suspect.
_IMPOSSIBLE_DAYS = ("02-29", "02-30", "02-31", "04-31", "06-31", "09-31", "11-31")


def choice_format(choices: Iterable[str]) -> str:
    return "(?:" + "|".join(re.escape(c) for c in choices) + ")"


def optional(pattern: str) -> str:
    return f"(?:{pattern})?"


def literal(text: str) -> str:
    """A SQL string literal (the screen's constants are ours: bounds, days)."""
    return "'" + text.replace("'", "''") + "'"


def raw(column: str) -> str:
    return f"r.{column}"


def text_ok(column: str, *, required: bool = False, max_length: int | None = None) -> str:
    checks = [f"{raw(column)} <> ''"] if required else []
    if max_length is not None:
        checks.append(f"length({raw(column)}) <= {max_length}")
    return " AND ".join(checks) or "true"


def date_ok(column: str, bounds: "Bounds", *, required: bool) -> str:
    """A datetime cell (in DATETIME_FORMAT) whose date, as written (in its own offset, as
    parsing._plausible reads it), exists and is within the plausible range."""
    cell = raw(column)
    day = f'substr({cell}, 1, 10) COLLATE "C"'
    check = (
        f"substr({cell}, 6, 5) NOT IN ({', '.join(literal(d) for d in _IMPOSSIBLE_DAYS)}) "
        f"AND {day} >= {literal(bounds[0].isoformat())} AND {day} <= {literal(bounds[1].isoformat())}"
    )
    return check if required else f"({cell} = '' OR ({check}))"


def moment(column: str) -> str:
    """The value of a screened datetime cell (NULL when empty)."""
    return f"CAST(NULLIF({raw(column)}, '') AS timestamp with time zone)"


@dataclass(frozen=True)
class Screen:
    """What a file's rows are screened with: its columns as read (`raw`); the Python patterns of its
    formatted cells (`formats`: column -> pattern); the SQL checks of its cells (`cells`) and of the row
    (`rules`, evaluated only on formatted cells); the SQL value of the key and of each staged column
    for a plain row (`key`, `values`)."""

    raw: tuple[str, ...]
    formats: dict[str, str]
    cells: list[str]
    rules: str
    key: str
    values: list[str]

    def pattern(self) -> re.Pattern[str]:
        """One pattern for a row's formatted cells joined by \\x1f (which none of them can hold)."""
        return re.compile("\x1f".join(self.formats.values()), re.ASCII)

    def plain(self) -> str:
        """A staged row is plain: formatted (not `py`), its cells and its rules in order."""
        cells = " AND ".join(f"({check})" for check in self.cells)
        # CASE: the rules cast cells, which only a formatted cell survives.
        return f"CASE WHEN NOT r.py AND {cells} THEN ({self.rules}) ELSE false END"


def _money() -> str:
    return column_type(Deal._meta.get_field("amount"))


def deal_screen(bounds: "Bounds") -> Screen:
    """deals.csv: the cells as `DealFiles._deals` reads them and `deals.rules.deal_errors`."""
    closed = [s for s in DEAL_STATUSES if s != "open"]
    return Screen(
        raw=("key", "account", "name", "amount", "created_at", "closed_at", "status", "sourcing_partner"),
        formats={
            "amount": AMOUNT_FORMAT,
            "created_at": DATETIME_FORMAT,
            "closed_at": optional(DATETIME_FORMAT),
            "status": choice_format(DEAL_STATUSES),
        },
        cells=[
            text_ok("key", required=True, max_length=KEY_MAX_LENGTH),
            text_ok("account", required=True),
            text_ok("name", max_length=NAME_MAX_LENGTH),
            date_ok("created_at", bounds, required=True),
            date_ok("closed_at", bounds, required=False),
        ],
        rules=(
            "(r.status = 'open' AND r.closed_at = '') OR "
            f"(r.status IN ({', '.join(literal(c) for c in closed)}) AND r.closed_at <> '' "
            f"AND {moment('closed_at')} >= {moment('created_at')})"
        ),
        key="r.key",
        values=[
            "r.account",
            "r.name",
            f"CAST(r.amount AS {_money()})",
            moment("created_at"),
            moment("closed_at"),
            "r.status",
            "r.sourcing_partner",
        ],
    )


def registration_screen(bounds: "Bounds", protection: timedelta) -> Screen:
    """registrations.csv: as `DealFiles._registrations` and `deals.rules.registration_errors`."""
    decided = ("approved", "rejected")  # registration_errors: these need decided_at
    return Screen(
        raw=("key", "partner", "account", "amount", "submitted_at", "status", "decided_at", "deal"),
        formats={
            "amount": AMOUNT_FORMAT,
            "submitted_at": DATETIME_FORMAT,
            "status": choice_format(REGISTRATION_STATUSES),
            "decided_at": optional(DATETIME_FORMAT),
        },
        cells=[
            text_ok("key", required=True, max_length=KEY_MAX_LENGTH),
            text_ok("partner", required=True),
            date_ok("submitted_at", bounds, required=True),
            date_ok("decided_at", bounds, required=False),
            text_ok("account", required=True),
        ],
        rules=(
            f"(r.decided_at = '' AND r.status NOT IN ({', '.join(literal(c) for c in decided)})) OR "
            f"(r.decided_at <> '' AND {moment('decided_at')} >= {moment('submitted_at')})"
        ),
        key="r.key",
        values=[
            "r.partner",
            "r.account",
            f"CAST(r.amount AS {_money()})",
            moment("submitted_at"),
            "r.status",
            moment("decided_at"),
            "r.deal",
            f"{moment('submitted_at')} + interval '1 microsecond' * {_microseconds(protection)}",
        ],
    )


def touch_screen(bounds: "Bounds") -> Screen:
    """touches.csv: as `DealFiles._touches` (no row rules)."""
    return Screen(
        raw=("deal", "partner", "kind", "touched_at"),
        formats={"kind": choice_format(TOUCH_KINDS), "touched_at": DATETIME_FORMAT},
        cells=[
            text_ok("deal", required=True),
            text_ok("partner", required=True),
            date_ok("touched_at", bounds, required=True),
        ],
        rules="true",
        key="NULL",
        values=["r.deal", "r.partner", "r.kind", moment("touched_at")],
    )


def _microseconds(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def suspect_chunks(
    fetch: Callable[[str, Sequence[object]], Iterator[tuple]], columns: str
) -> Iterator[list[tuple]]:
    """The suspect rows (SUSPECT, keyed by line) in line order, CHUNK_ROWS at a time."""
    last = 0
    while chunk := list(
        fetch(
            f"SELECT line, {columns} FROM {SUSPECT} WHERE line > %s ORDER BY line LIMIT %s",
            [last, CHUNK_ROWS],
        )
    ):
        yield chunk
        last = chunk[-1][0]


def _cells(indexes: Iterable[int]) -> Callable[[list[str]], tuple[str, ...]]:
    """The cells at `indexes` of a record, always as a tuple (itemgetter of one index gives a str)."""
    getter = itemgetter(*indexes, -1)  # -1: one more cell, dropped, so there are always two
    return lambda values: getter(values)[:-1]


def load_screened(
    importer: "FileSteps",
    file: str,
    entity: str | None,
    columns: list[tuple[str, str]],
    parse: Callable[["_Row"], tuple],
    screen: Screen,
) -> None:
    """Stage `file` as `FileSteps._load` does (the same rows, values and messages), parsing in
    Python only the rows the screen does not pass."""
    from interchange.importer import _bad_characters, _check_characters, _Row

    stage = importer.stage
    # Rows whose characters are refused: their messages, by line (the reader replaced those
    # characters, which COPY could not take; such a row is always a suspect).
    early: dict[int, list[tuple[str, str]]] = {}

    def read() -> Iterator[tuple]:
        pick = check = None
        formatted = screen.pattern().fullmatch
        for line, values in importer.records(file):
            if pick is None or check is None:
                header = importer.header
                # An absent optional column reads as "" (the cell after the last).
                where = {c: header.index(c) if c in header else len(header) for c in screen.raw}
                pick = _cells(where[c] for c in screen.raw)
                check = _cells(where[c] for c in screen.formats)
            if _bad_characters("".join(values)):
                row = _Row(file, line, dict(zip(header, map(str.strip, values), strict=True)))
                _check_characters(row)
                early[line] = row.errors
                yield (line, True, *(row.cells.get(c, "") for c in screen.raw))
                continue
            values.append("")
            yield (line, formatted("\x1f".join(check(values))) is None, *map(str.strip, pick(values)))

    stage.load_raw(RAW, screen.raw, read())
    names = ", ".join(screen.raw)
    stage.create(columns)
    staged = ", ".join(["line", "ok", "key", *(c for c, _ in columns)])
    # The plain rows, converted in SQL; the others (the suspects) then through the parser.
    stage.execute(
        f"INSERT INTO {STAGE} ({staged}) SELECT r.line, true, {screen.key}, {', '.join(screen.values)} "
        f"FROM {RAW} r WHERE {screen.plain()}"
    )
    stage.execute(
        f"CREATE TEMPORARY TABLE {SUSPECT} AS SELECT r.line, {names} FROM {RAW} r "
        f"WHERE NOT EXISTS (SELECT 1 FROM {STAGE} s WHERE s.line = r.line)"
    )
    stage.execute(f"CREATE UNIQUE INDEX ON {SUSPECT} (line)")

    def parsed(chunk: list[tuple]) -> Iterator[tuple]:
        for line, *cells in chunk:
            row = _Row(file, line, dict(zip(screen.raw, cells, strict=True)))
            row.errors = early.pop(line, [])
            values = parse(row)
            if row.errors:
                importer.refuse(row, entity)
            yield (line, not row.errors, row.key or None, *values)

    for chunk in suspect_chunks(stage.fetch, names):
        stage.append(columns, parsed(chunk), analyze=False)
    stage.execute(f"DROP TABLE {SUSPECT}")
    stage.execute(f"DROP TABLE {RAW}")
    stage.execute(f"ANALYZE {STAGE}")
