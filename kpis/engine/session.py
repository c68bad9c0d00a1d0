"""The session settings of a KPI run, which an engine path computed on request takes too, so it
plans and sorts alike (docs/kpis.md, "Engine paths on request").

Two kinds, because PostgreSQL treats them differently:

- `TRANSACTION_SETTINGS` are set for the transaction (SET LOCAL): they end with it, so a request's
  pooled session is as it was afterwards.
- `temp_buffers` sizes the session's pool of buffers for temporary tables, which PostgreSQL
  allocates at the session's first use of a temporary table; from then on it refuses any other
  value for the rest of the session. So it is set for the session, before that first use, and
  only then: a session that already used temporary tables keeps the pool it has (the refusal is
  harmless). Not SET LOCAL: a local value would be reset at commit while the pool keeps the size
  it was allocated with, so SHOW would then report a size the session does not have, and setting
  it to that reported size again would be refused. The pool is a ceiling: buffers are allocated
  as temporary tables fill them, and freed with the session.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from django.db import DatabaseError, connection, transaction

from prm.database import transaction_settings

TEMP_BUFFERS = "1GB"
TRANSACTION_SETTINGS = {
    "work_mem": "256MB",
    "maintenance_work_mem": "256MB",
    # Only unlogged and temp tables are written: nothing to lose if a commit is not flushed.
    "synchronous_commit": "off",
}


def size_temp_buffers() -> None:
    """Set temp_buffers for this session if it has not used a temporary table yet (see above)."""
    if connection.vendor != "postgresql":
        return
    # In a savepoint when inside a transaction: a refusal must not abort the caller's.
    with contextlib.suppress(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('temp_buffers', %s, false)", [TEMP_BUFFERS])


@contextlib.contextmanager
def engine_transaction() -> Iterator[None]:
    """A transaction with a KPI run's settings, for an engine path computed on request. The
    statement timeout stays the process's (a web request's: prm.database). One transaction: if a
    statement fails or is cancelled, rolling it back drops the engine's temporary tables too."""
    size_temp_buffers()
    with transaction_settings(TRANSACTION_SETTINGS):
        yield


class SessionThread:
    """`work(*args)` on a thread with its own database session, started at once. `join()` returns
    what it raised (None when it succeeded); `finish()` joins and re-raises."""

    def __init__(
        self,
        work: Callable[..., object],
        *args: object,
        name: str = "kpi-session",
        on_exit: Callable[[], object] | None = None,
    ) -> None:
        self.error: BaseException | None = None

        def run() -> None:
            try:
                work(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to join() / finish()
                self.error = exc
            finally:
                if on_exit is not None:
                    on_exit()
                connection.close()

        self.thread = threading.Thread(target=run, name=name, daemon=True)
        self.thread.start()

    def join(self) -> BaseException | None:
        self.thread.join()
        return self.error

    def finish(self) -> None:
        if (error := self.join()) is not None:
            raise error
