"""Bulk upserts from JSON rows (the API's /bulk/ endpoints), validated exactly as the CSV import.

The rows become one in-memory INTERCHANGE file that `interchange.importer` reads like any other:
the same parsing, rules, references and all-or-nothing transaction. A row's errors come back with
its index in the list and the field, never a CSV line.

External keys: an object synced from another system carries `<system>:<external id>` as its
`key`, so a CRM upserts by its own ids, each unique within its system (two systems may use the same
id). References to accounts and deals in a bulk request are external ids of the same system;
references to partners are the partner's own key in the program (partners are not synced).
"""

import csv
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from interchange.importer import FILES, ImportFailed, ImportResult, _ProgramImport

SYSTEM_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,29}$")
KEY_MAX_LENGTH = 100
MAX_ROWS = 1000
_FIRST_ON_LINE = re.compile(r"\(first on line (\d+)\)")
_REFUSED_AT = re.compile(r"\([a-z_]+\.csv:(\d+)\)")
_ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<column>[^:]+): (?P<reason>.*)$", re.S)


@dataclass(frozen=True)
class Resource:
    file: str
    # Fields holding an external id of this system: "external_id" (the row's own) and references.
    external: tuple[str, ...]


RESOURCES = {
    "accounts": Resource("accounts.csv", ("external_id",)),
    "deals": Resource("deals.csv", ("external_id", "account")),
    "registrations": Resource("registrations.csv", ("external_id", "account", "deal")),
    "touches": Resource("touches.csv", ("deal",)),
}


class BulkRefused(Exception):
    """Nothing was written; `errors` maps "rows.<index>.<field>" (or "rows") to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(f"{len(errors)} field(s) refused")
        self.errors = errors


def external_key(system: str, external_id: str) -> str:
    return f"{system}:{external_id}"


class _OneFile:
    def __init__(self, name: str, text: str) -> None:
        self.name, self.text = name, text

    def exists(self, name: str) -> bool:
        return name == self.name

    def count_lines(self, name: str) -> int:
        return self.text.count("\n")

    @contextmanager
    def open(self, name: str) -> Iterator[TextIO]:
        yield io.StringIO(self.text, newline="")


def _cell(value: Any) -> str | None:
    """A JSON value as the CSV cell the importer reads; None when it cannot be one."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return None
    if isinstance(value, str | int | float):
        return str(value)
    return None


def bulk_upsert(*, resource: str, system: str, rows: list[Any]) -> ImportResult:
    """Create or update `rows` of `resource` by their external ids in `system`, all or nothing.

    Raises BulkRefused listing every bad row by index and field (the CSV import's messages).
    """
    spec = RESOURCES[resource]
    required, optional = FILES[spec.file]
    columns = [c for c in (*required, *optional) if c != "key"]
    fields = [*(["external_id"] if "key" in required else []), *columns]
    errors: dict[str, list[str]] = {}
    if not SYSTEM_PATTERN.match(system or ""):
        errors["system"] = [
            "1 to 30 characters: lower-case letters, digits, - and _, starting with a letter or digit"
        ]
    if not isinstance(rows, list) or not rows:
        errors["rows"] = ["a non-empty list of objects"]
    elif len(rows) > MAX_ROWS:
        errors["rows"] = [f"at most {MAX_ROWS} rows per request"]
    if errors:
        raise BulkRefused(errors)
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow([("key" if f == "external_id" else f) for f in fields])
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            errors[f"rows.{index}"] = ["must be an object"]
            writer.writerow([""] * len(fields))
            continue
        for name in sorted(set(row) - set(fields)):
            errors[f"rows.{index}.{name}"] = [f"unknown field; the fields are {', '.join(fields)}"]
        cells = []
        for name in fields:
            text = _cell(row.get(name))
            if text is None:
                errors.setdefault(f"rows.{index}.{name}", []).append("must be a string or a number")
                text = ""
            if name in spec.external and text:
                if len(external_key(system, text)) > KEY_MAX_LENGTH:
                    errors.setdefault(f"rows.{index}.{name}", []).append(
                        f"is longer than {KEY_MAX_LENGTH - len(system) - 1} characters"
                    )
                text = external_key(system, text)
            cells.append(text.replace("\r\n", "\n"))
        writer.writerow(cells)
    try:
        result = _ProgramImport(_OneFile(spec.file, out.getvalue()), progress=False, on_progress=None).run()
    except ImportFailed as exc:
        errors = _merge(errors, _by_index(exc.errors, system))
    if errors:
        raise BulkRefused(errors)
    return result


def _by_index(messages: list[str], system: str) -> dict[str, list[str]]:
    """`file:line: column: reason` -> {"rows.<index>.<field>": [reason]} (line 2 is index 0)."""
    errors: dict[str, list[str]] = {}
    for message in messages:
        match = _ERROR.match(message)
        if not match:
            errors.setdefault("rows", []).append(message)
            continue
        line, column = int(match["line"]), match["column"]
        reason = match["reason"].replace(f"'{system}:", "'")  # the client's ids, not our keys
        # Line numbers of the in-memory file mean nothing to the client: indexes do.
        reason = _FIRST_ON_LINE.sub(lambda m: f"(first at index {int(m[1]) - 2})", reason)
        reason = _REFUSED_AT.sub(lambda m: f"(index {int(m[1]) - 2})", reason)
        field = "external_id" if column == "key" else column
        name = "rows" if line < 2 else (f"rows.{line - 2}" if column == "-" else f"rows.{line - 2}.{field}")
        errors.setdefault(name, []).append(reason)
    return errors


def _merge(first: dict[str, list[str]], second: dict[str, list[str]]) -> dict[str, list[str]]:
    merged = {name: list(messages) for name, messages in first.items()}
    for name, messages in second.items():
        merged.setdefault(name, []).extend(m for m in messages if m not in merged.get(name, []))
    return merged
