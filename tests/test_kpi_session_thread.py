"""kpis.engine.SessionThread: work on its own database session, its error handed back to the caller."""

import threading

import pytest

from kpis.engine import SessionThread


def test_finish_re_raises_what_the_work_raised_and_join_returns_it():
    def work(n: int) -> None:
        raise ValueError(f"chunk {n} failed")

    worker = SessionThread(work, 3, name="kpi-test")
    with pytest.raises(ValueError, match="chunk 3 failed"):
        worker.finish()
    assert isinstance(worker.join(), ValueError)


def test_finish_returns_when_the_work_succeeded_and_on_exit_ran():
    done, exited = [], threading.Event()
    worker = SessionThread(
        lambda: done.append(threading.current_thread().name), name="kpi-test", on_exit=exited.set
    )
    worker.finish()
    assert done == ["kpi-test"] and exited.is_set() and worker.join() is None
