"""Rows of django-axes' models (sign-in attempts and their logs) for tests/test_admin.py,
which builds one of each registered model: axes registers its admin pages, where staff see
and clear lock-outs."""

import itertools

from axes.models import AccessAttempt, AccessFailureLog, AccessLog

_seq = itertools.count(1)


def _fields() -> dict:
    n = next(_seq)
    return {"username": f"someone{n}", "ip_address": f"192.0.2.{n % 250 + 1}", "user_agent": f"agent {n}",
            "http_accept": "text/html", "path_info": "/staff/login/"}


ADMIN_BUILDERS = {
    AccessAttempt: lambda: AccessAttempt.objects.create(
        **_fields(), get_data="", post_data="username=someone&password=********", failures_since_start=1
    ),
    AccessLog: lambda: AccessLog.objects.create(**_fields()),
    AccessFailureLog: lambda: AccessFailureLog.objects.create(**_fields()),
}
