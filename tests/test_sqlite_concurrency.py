"""`make run`'s SQLite: concurrent writers queue (BEGIN IMMEDIATE + busy timeout + WAL)
instead of failing with "database is locked". Real processes on a real SQLite file."""

import os
import subprocess
import sys
import textwrap

import pytest
from django.conf import settings

WRITER = textwrap.dedent(
    """
    import os, sys, threading, django
    sys.path.insert(0, {root!r})
    os.environ["DJANGO_SETTINGS_MODULE"] = "rewards_site.settings.base"
    django.setup()
    from decimal import Decimal
    from django.db import connection
    from issuance import ledger

    errors = []

    def credit():
        try:
            for _ in range(10):
                ledger.points_credit(account_id={account_id}, amount=Decimal("1"), reason="sqlite writer")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=credit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("ERRORS", errors)
    sys.exit(1 if errors else 0)
    """
)

SETUP = textwrap.dedent(
    """
    import os, sys, django
    sys.path.insert(0, {root!r})
    os.environ["DJANGO_SETTINGS_MODULE"] = "rewards_site.settings.base"
    django.setup()
    from django.core.management import call_command
    call_command("migrate", verbosity=0)
    from catalogue.models import Customer, Organisation
    from issuance.ledger import account_for_customer
    org = Organisation.objects.create(name="sqlite")
    customer = Customer.objects.create(org=org, mobile="1")
    print(account_for_customer(customer).pk)
    """
)

CHECK = textwrap.dedent(
    """
    import os, sys, django
    sys.path.insert(0, {root!r})
    os.environ["DJANGO_SETTINGS_MODULE"] = "rewards_site.settings.base"
    django.setup()
    from issuance import ledger
    check = ledger.account_check({account_id})
    print(check.balance, check.ok)
    """
)


@pytest.mark.slow
def test_concurrent_sqlite_writers_queue_instead_of_failing(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    root = str(settings.BASE_DIR)

    def run(script, **kwargs):
        return subprocess.run([sys.executable, "-c", script.format(root=root, **kwargs)], env=env,
                              capture_output=True, text=True, timeout=300)

    setup = run(SETUP)
    assert setup.returncode == 0, setup.stderr[-2000:]
    account_id = int(setup.stdout.strip().splitlines()[-1])
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER.format(root=root, account_id=account_id)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [w.communicate(timeout=300) for w in writers]
    for writer, (out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, out + err[-2000:]
    check = run(CHECK, account_id=account_id)
    assert check.stdout.split() == ["120.0000", "True"], check.stdout + check.stderr
