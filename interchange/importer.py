"""INTERCHANGE.md program import: a folder (or zip) of CSV files, all or nothing, streamed in bulk.

Each file is read row by row with `csv.reader`; every row is checked on its own (cells, choices,
the data-quality rules of `deals.rules` and `program.validation`) as it is read, and streamed into a
staging table (`interchange.staging`: COPY on PostgreSQL, batched inserts on SQLite). Then the
checks that need the database run once per file, set-based (unknown or refused keys, duplicate
keys, partners that may not act, a deal claimed twice), and one `INSERT ... SELECT ... ON CONFLICT`
upserts the valid rows by key. Memory stays flat: one row in Python at a time, plus the errors.

All or nothing: the import runs in one transaction. Valid rows are written file by file, so that
later files can reference them; when any row was refused, every file is still read to the end (so
every bad row is listed, at its file and line) and the transaction is rolled back before
ImportFailed is raised.
"""

import csv
import io
import re
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TextIO
from zoneinfo import ZoneInfo

from django.db import DataError, IntegrityError, transaction
from tqdm import tqdm

from interchange import commission_plans
from interchange.mdf_budgets import MdfBudgetFile
from interchange.parsing import CellError, parse_date, parse_datetime, plausible_bounds
from interchange.staging import Stage
from program.models import ProgramSettings

# file -> (required columns, optional columns), in import order (INTERCHANGE.md).
FILES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "join_sources.csv": (("key", "name", "kind"), ()),
    "partners.csv": (
        ("key", "name", "type", "join_source", "applied_at", "status"),
        ("joined_at", "tier", "referred_by"),
    ),
    "accounts.csv": (("key", "name"), ("domain",)),
    "deals.csv": (
        ("key", "account", "amount", "created_at", "status"),
        ("name", "closed_at", "sourcing_partner"),
    ),
    "registrations.csv": (
        ("key", "partner", "account", "amount", "submitted_at", "status"),
        ("decided_at", "deal"),
    ),
    "touches.csv": (("deal", "partner", "kind", "touched_at"), ()),
    "costs.csv": (("date", "amount", "category"), ("partner", "join_source", "note")),
    "targets.csv": (("metric", "period", "value"), ("partner", "join_source")),
    "commission_plans.csv": (commission_plans.REQUIRED, commission_plans.OPTIONAL),
    "mdf_budgets.csv": (("quarter", "amount"), ("partner", "tier", "note")),
}


class ImportFailed(Exception):
    """The import was refused and rolled back; `errors` lists every bad row as `file:line: column: reason`."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} error(s); nothing was imported")


@dataclass
class FileSummary:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """Rows read, created, updated and unchanged (what the audit entry and the API report)."""
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
        }


@dataclass
class ImportResult:
    files: dict[str, FileSummary] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [
            f"{name}: {s.rows} rows, {s.created} created, {s.updated} updated, {s.unchanged} unchanged"
            for name, s in self.files.items()
        ]

    def timing_lines(self) -> list[str]:
        """Each file's time and rate, then the total."""
        lines = [
            f"{name}: {s.rows:,} rows in {s.seconds:.1f} s ({s.rows / max(s.seconds, 1e-6):,.0f} rows/s)"
            for name, s in self.files.items()
        ]
        rows = sum(s.rows for s in self.files.values())
        seconds = sum(s.seconds for s in self.files.values())
        lines.append(f"all files: {rows:,} rows in {seconds:.1f} s ({rows / max(seconds, 1e-6):,.0f} rows/s)")
        return lines


@dataclass
class FileProgress:
    """Where the import of one file stands: what a progress bar or a polling client shows."""

    file: str
    rows: int  # rows read so far
    total: int  # rows in the file (its lines but the header; blank lines count until skipped)
    seconds: float  # since the file was opened
    stage: str  # "reading" (rows streamed to the database), "writing" (checks and upsert), "done"

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        if self.stage == "done":
            return 0.0
        return (self.total - self.rows) / self.rate if self.rate > 0 else None

    def as_dict(self) -> dict[str, Any]:
        left = self.seconds_left
        return {
            "file": self.file,
            "rows": self.rows,
            "total": self.total,
            "seconds": round(self.seconds, 1),
            "rows_per_second": round(self.rate),
            "seconds_left": None if left is None else round(left, 1),
            "stage": self.stage,
        }


ProgressCallback = Callable[[FileProgress], None]
# How often (rows) a callback hears of a file's progress while it is read.
PROGRESS_EVERY = 10_000


def import_program(
    source: Path | str | zipfile.ZipFile,
    *,
    progress: bool = False,
    on_progress: ProgressCallback | None = None,
) -> ImportResult:
    """Import the INTERCHANGE files found in a folder or a zip archive, in one transaction.

    `progress`: a bar per file on the terminal (rows, rate, time left); `on_progress`: called with
    a FileProgress every PROGRESS_EVERY rows and when a file's stage changes (the API's progress).
    Raises ImportFailed (and writes nothing) when any row is invalid.
    """
    folder = _ZipFolder(source) if isinstance(source, zipfile.ZipFile) else _DirFolder(Path(source))
    return _ProgramImport(folder, progress=progress, on_progress=on_progress).run()


class Folder(Protocol):
    """Where the files come from: a folder, a zip archive, or one file in memory (interchange.rows)."""

    def exists(self, name: str) -> bool: ...
    def count_lines(self, name: str) -> int: ...
    def open(self, name: str) -> AbstractContextManager[TextIO]: ...


class _DirFolder:
    def __init__(self, path: Path) -> None:
        if not path.is_dir():
            raise ImportFailed([f"{path}: not a directory"])
        self.path = path

    def exists(self, name: str) -> bool:
        return (self.path / name).is_file()

    def count_lines(self, name: str) -> int:
        with (self.path / name).open("rb") as raw:
            return _count_lines(raw)

    @contextmanager
    def open(self, name: str) -> Iterator[TextIO]:
        with (self.path / name).open(encoding="utf-8-sig", errors=UNDECODABLE, newline="") as stream:
            yield stream


class _ZipFolder:
    """The files may sit at the archive's root or in one folder inside it."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.members: dict[str, str] = {}
        for member in sorted(archive.namelist(), key=lambda n: (n.count("/"), n)):
            path = PurePosixPath(member)
            if member.endswith("/") or "__MACOSX" in path.parts:
                continue
            self.members.setdefault(path.name, member)

    def exists(self, name: str) -> bool:
        return name in self.members

    def count_lines(self, name: str) -> int:
        with self.archive.open(self.members[name]) as raw:
            return _count_lines(raw)

    @contextmanager
    def open(self, name: str) -> Iterator[TextIO]:
        with self.archive.open(self.members[name]) as raw:
            yield io.TextIOWrapper(raw, encoding="utf-8-sig", errors=UNDECODABLE, newline="")


class _Row:
    """One CSV record: its cells, its parsed values and the problems found in it."""

    __slots__ = ("file", "line", "cells", "errors", "key", "values", "keep_existing")

    def __init__(self, file: str, line: int, cells: dict[str, str]) -> None:
        self.file = file
        self.line = line
        self.cells = cells
        self.errors: list[tuple[str, str]] = []
        self.key: str = ""
        self.values: dict[str, Any] = {}
        self.keep_existing: tuple[str, ...] = ()

    def error(self, column: str, reason: str) -> None:
        self.errors.append((column, reason))

    def has_error(self, column: str) -> bool:
        return any(c == column for c, _ in self.errors)

    def text(self, column: str, *, required: bool = False, max_length: int | None = None) -> str:
        value = self.cells.get(column, "")
        if required and not value:
            self.error(column, "is required")
        elif max_length is not None and len(value) > max_length:
            self.error(column, f"is longer than {max_length} characters")
        return value

    def parse(self, column: str, parser, *, required: bool = False) -> Any:
        text = self.text(column, required=required)
        if not text:
            return None
        try:
            return parser(text)
        except CellError as exc:
            self.error(column, str(exc))
            return None

    def choice(self, column: str, choices: tuple[str, ...]) -> str | None:
        text = self.text(column, required=True)
        if text and text not in choices:
            self.error(column, f"'{text}' is not one of: {', '.join(choices)}")
            return None
        return text or None

    def add_rule_errors(self, errors: dict[str, list[str]]) -> None:
        """Rule messages, except on columns that could not even be read."""
        for column, messages in errors.items():
            if not self.has_error(column):
                for message in messages:
                    self.error(column, message)


# Bytes that are not UTF-8 decode to lone surrogates (U+DC80-U+DCFF), which valid text never holds:
# the row that has them is reported at its own line, and reading goes on. Strict decoding fails a
# whole read-ahead chunk, so the error landed lines early and lost the rows before it.
UNDECODABLE = "surrogateescape"
_SURROGATES = re.compile("[\udc80-\udcff]")


def _bad_characters(text: str) -> str | None:
    if _SURROGATES.search(text):
        return "is not valid UTF-8"
    if "\x00" in text:
        return "contains the NUL character"
    return None


def _check_characters(row: _Row) -> None:
    for column, text in row.cells.items():
        if reason := _bad_characters(text):
            row.error(column, reason)
            # The row is refused; its key stays readable so rows that refer to it say so.
            row.cells[column] = _SURROGATES.sub("\ufffd", text).replace("\x00", "\ufffd")


def _count_lines(stream: Any) -> int:
    count = 0
    while chunk := stream.read(1 << 20):
        count += chunk.count(b"\n")
    return count


class _ProgramImport(MdfBudgetFile):
    def __init__(self, folder: Folder, *, progress: bool, on_progress: ProgressCallback | None) -> None:
        self.folder = folder
        self.progress = progress
        self.on_progress = on_progress
        program = ProgramSettings.load()
        self.tz = ZoneInfo(program.time_zone)
        self.protection = timedelta(days=program.registration_protection_days)
        self.bounds = plausible_bounds()
        # (file order, line, sequence, message): sorted at the end, so each file's errors come by
        # line, and a row's errors in the order they were found.
        self.errors: list[tuple[int, int, int, str]] = []
        # entity -> key -> "file:line" of refused rows, so references to them say why they are unknown.
        self.refused: dict[str, dict[str, str]] = defaultdict(dict)
        self.result = ImportResult()
        self.stage = Stage()
        self.file_order = {name: index for index, name in enumerate(FILES)}
        self.header: list[str] = []  # the header of the file being read

    # --- driver ---------------------------------------------------------------------------------
    def run(self) -> ImportResult:
        with transaction.atomic():
            self.stage.begin()
            for name, handler in self.handlers().items():
                if self.folder.exists(name):
                    summary = self.result.files[name] = FileSummary()
                    started = time.monotonic()
                    self.current_started = started
                    handler(name)
                    summary.seconds = time.monotonic() - started
                    self._report(name, summary.rows, summary.rows, "done")
            self.stage.end()
            if self.errors:
                raise ImportFailed([message for *_, message in sorted(self.errors)])
        return self.result

    def _report(self, file: str, rows: int, total: int, stage: str) -> None:
        if self.on_progress is not None:
            seconds = time.monotonic() - self.current_started
            self.on_progress(FileProgress(file=file, rows=rows, total=total, seconds=seconds, stage=stage))

    def rows(self, file: str) -> Iterator[_Row]:
        """The file's records, one at a time, each checked for its field count and characters."""
        for line, values in self.records(file):
            row = _Row(file, line, dict(zip(self.header, map(str.strip, values), strict=True)))
            if _bad_characters("".join(values)):  # one scan of the row; the cells only if needed
                _check_characters(row)
            yield row

    def records(self, file: str) -> Iterator[tuple[int, list[str]]]:
        """The file's records as (line, cells as read), past a valid header (`self.header`), each
        with as many cells as the header; reports progress."""
        required, _optional = FILES[file]
        summary = self.result.files[file]
        total = self.folder.count_lines(file) - 1
        with self.folder.open(file) as stream:
            reader = csv.reader(stream)
            try:
                header = [column.strip() for column in next(reader)]
            except StopIteration:
                self.error(file, 1, "-", "the file is empty; it needs a header row")
                return
            except csv.Error as exc:
                self.error(file, 1, "-", f"unreadable header: {exc}")
                return
            if any(_bad_characters(column) for column in header):
                self.error(file, 1, "-", "the header is not valid UTF-8 text")
                return
            missing = [column for column in required if column not in header]
            for column in missing:
                self.error(file, 1, column, "required column is missing from the header")
            for column in sorted({c for c in header if header.count(c) > 1}):
                self.error(file, 1, column, "column appears twice in the header")
            if missing or len(set(header)) != len(header):
                return
            self.header = header
            bar = tqdm(
                desc=f"{file:<18}",
                total=max(total, 0),
                unit=" rows",
                unit_scale=True,
                disable=not self.progress,
                leave=True,
                mininterval=0.5,
            )
            previous_line = reader.line_num
            width = len(header)
            try:
                for values in reader:
                    line, previous_line = previous_line + 1, reader.line_num
                    if not "".join(values).strip():
                        continue
                    summary.rows += 1
                    if summary.rows % PROGRESS_EVERY == 0:
                        bar.update(PROGRESS_EVERY)
                        self._report(file, summary.rows, total, "reading")
                    if len(values) != width:
                        self.error(file, line, "-", f"has {len(values)} fields, the header has {width}")
                        continue
                    yield line, values
            except csv.Error as exc:
                self.error(file, reader.line_num, "-", f"malformed CSV: {exc}")
            finally:
                bar.update(summary.rows % PROGRESS_EVERY)
                bar.total = summary.rows
                bar.set_postfix_str("checking and writing")
                bar.refresh()
                bar.close()
                self._report(file, summary.rows, summary.rows, "writing")

    # --- errors ---------------------------------------------------------------------------------
    def error(self, file: str, line: int, column: str, reason: str) -> None:
        self.errors.append(
            (self.file_order[file], line, len(self.errors), f"{file}:{line}: {column}: {reason}")
        )

    def refuse(self, row: _Row, entity: str | None) -> None:
        """Report a row's own problems (found while reading it) and remember its key as refused."""
        for column, reason in row.errors:
            self.error(row.file, row.line, column, reason)
        if entity and row.key:
            self.refused[entity].setdefault(row.key, f"{row.file}:{row.line}")

    def refuse_staged(
        self, file: str, entity: str | None, line: int, key: str | None, column: str, reason: str
    ) -> None:
        """Report a problem a set-based check found in a staged row."""
        self.error(file, line, column, reason)
        if entity and key:
            self.refused[entity].setdefault(key, f"{file}:{line}")

    def unknown(self, entity: str, label: str, key: str) -> str:
        where = self.refused[entity].get(key)
        return f"{label} '{key}' was refused ({where})" if where else f"unknown {label} '{key}'"

    def date_value(self, text: str) -> date:
        return parse_date(text, self.tz, self.bounds)

    def datetime_value(self, text: str) -> datetime:
        return parse_datetime(text, self.tz, self.bounds)

    def guarded(self, file: str, write: Callable[[], int]) -> int:
        """A write the checks should make safe; if the database still refuses it, the file is
        reported (the transaction rolls back in any case)."""
        try:
            with transaction.atomic():
                return write()
        except (IntegrityError, DataError) as exc:
            reason = str(exc).strip().splitlines()[0]
            self.errors.append(
                (
                    self.file_order[file],
                    0,
                    len(self.errors),
                    f"{file}:-: -: refused by the database: {reason}",
                )
            )
            return 0
