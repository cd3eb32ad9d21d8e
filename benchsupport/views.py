"""Bench-only baselines, on the same server, auth and permission as the API (docs/performance.md).

- ``PingView``: authenticated, permission-checked, renders a tiny status block: what any API
  call costs before it does work (HTTP, WSGI, middleware, DRF, auth) — baseline (1).
- ``BareIssueView``: the same, plus the issue's bare SQL (``bare_issue.STATEMENTS``) on
  Django's connection in one transaction — baseline (2). The single issue call minus this is
  the engine's own cost.
"""

from decimal import Decimal

from django.db import connection, transaction
from rest_framework.response import Response
from rest_framework.views import APIView

from issuance.api.exceptions import status_body
from issuance.api.permissions import CanIssueThroughApi

from .bare_issue import issue_bare

OK = {"success": True, "code": 200, "message": "OK"}
_IDS = ("customer", "series", "reward", "org", "till", "brand")


class PingView(APIView):
    permission_classes = [CanIssueThroughApi]
    required_scopes = ("rewards:read",)

    def get(self, request):
        return Response({"status": OK})

    def post(self, request):
        return Response({"status": OK})


class BareIssueView(APIView):
    permission_classes = [CanIssueThroughApi]

    def post(self, request):
        data = request.data
        try:
            params = {name: int(data[name]) for name in _IDS}
            params["points"] = Decimal(str(data.get("points", "10")))
        except (KeyError, TypeError, ValueError):
            return Response(status_body(400, "customer, series, reward, org, till, brand: integers"), status=400)
        # The bench loader gives each account its customer's id; a caller may name another.
        params["account"] = int(data.get("account") or params["customer"])
        params["actor"] = request.user.pk
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                names = issue_bare(cursor, params)
        except LookupError:
            return Response(status_body(8004, "fail to issue reward as Coupon Series ID is invalid"), status=422)
        return Response({"status": OK, "transactionId": names["line_id"], "couponCode": names["code"]})
