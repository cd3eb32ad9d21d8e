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


# ---------------------------------------------------------------- issuing through the API

import base64  # noqa: E402
from decimal import Decimal  # noqa: E402

from tests import factories as f  # noqa: E402

ISSUE_SINGLE = "/api_gateway/rewards/core/v1/user/reward/{}/issue?username=till1&skip_validation=true"
ISSUE_BULK = "/api_gateway/rewards/core/v1/user/rewards/issue?username=till1&skip_validation=true"


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def api_user_for(org, username: str = "till_user", till_code: str = "till1"):
    """A till login in ``org`` with the API permission group and till ``till_code``."""
    from django.contrib.auth.models import Group

    from issuance.groups import API_GROUP

    user = f.UserFactory(username=username)
    f.UserProfileFactory(user=user, org=org)
    user.groups.add(Group.objects.get(name=API_GROUP))
    till = f.TillFactory(org=org, code=till_code)
    till.users.add(user)
    return user


@pytest.fixture
def list_index_off(settings):
    """The list API reads the database on every call (catalogue.selectors), as on SQLite."""
    settings.LIST_INDEX = False


@pytest.fixture
def org():
    return f.OrganisationFactory(name="Demo", allow_skip_validation=True)


@pytest.fixture
def brand(org):
    return f.BrandFactory(org=org, name="BUKL")


@pytest.fixture
def api_user(org):
    return api_user_for(org)


@pytest.fixture
def customer(org):
    return f.CustomerFactory(org=org, mobile="11223569865", email="c1@example.com", external_id="ext-c1")


@pytest.fixture
def account(customer):
    return f.PointsAccountFactory(customer=customer, opening_balance=Decimal("100000"))


@pytest.fixture
def api_client(api_user, org):
    """A registered API client (bearer tokens) on ``api_user``'s till."""
    from catalogue.models import Till
    from tests.oauth_factories import api_client_for

    return api_client_for(Till.objects.get(org=org, code="till1"))[0]


@pytest.fixture
def api(api_user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_auth(api_user.username, "pass"))
    return client


# ---------------------------------------------------------------- case counts of generated suites

# Lines a test module wants shown at the end of the run (the fuzzing and bad-input suites
# append their case counts here); printed as a "case counts" section even with -q.
SUMMARY_LINES: list[str] = []


def pytest_terminal_summary(terminalreporter):
    if SUMMARY_LINES:
        terminalreporter.section("case counts")
        for line in SUMMARY_LINES:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _no_kept_principals():
    """Principals the list API keeps per process (issuance.api.kept_principals) do not carry
    from one test to the next (the rows they were read from are rolled back)."""
    from issuance.api import kept_principals

    kept_principals.clear()
    yield
    kept_principals.clear()
