"""Shared pytest fixtures for the whole suite.

pytest-django is configured in pyproject.toml (DJANGO_SETTINGS_MODULE=rewards_site.settings.test);
the database comes from DATABASE_URL (``make test`` points it at a throwaway PostgreSQL 15).
"""

import threading
from collections.abc import Callable

import pytest
from django.db import connection


@pytest.fixture
def run_concurrently():
    """Run ``fn(i)`` in ``threads`` real threads released together by a barrier; return,
    in thread order, what each returned or the exception it raised.

    Each thread gets its own database connection (Django connections are per thread) and
    closes it at the end, so the test database can be flushed afterwards. Use with
    ``django_db(transaction=True)`` on PostgreSQL: rows must be committed to be seen by
    other connections, and only separate connections exercise the row locks.
    """

    def run(fn: Callable[[int], object], *, threads: int, timeout: float = 60.0) -> list:
        barrier = threading.Barrier(threads)
        outcomes: list = [None] * threads

        def worker(i: int) -> None:
            try:
                barrier.wait(timeout=timeout)
                outcomes[i] = fn(i)
            except BaseException as exc:  # noqa: BLE001  (reported to the test, not swallowed)
                outcomes[i] = exc
            finally:
                connection.close()

        pool = [threading.Thread(target=worker, args=(i,), name=f"concurrent-{i}") for i in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(timeout)
        stuck = [thread.name for thread in pool if thread.is_alive()]
        assert not stuck, f"threads still running after {timeout}s (deadlock?): {stuck}"
        return outcomes

    return run
