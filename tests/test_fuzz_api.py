"""Property-based fuzzing of the running API from its own OpenAPI schema (schemathesis).

The schema is the one served at /api/schema/ (fetched through the WSGI app); every operation
is called through the WSGI app, authenticated as the demo till (``load_demo``: the demo org,
brands, customers, rewards and coupon pools), in the test's transaction. Two runs:

- positive: data valid for the schema. So that these calls get past the look-ups and reach
  the engine (pricing, eligibility, limits, coupons, the ledger), the schema is narrowed for
  this run only (``positive_overlay``): the till, brand, customer and reward parameters take
  the demo catalogue's values, and the optional blocks whose random values can only be
  refused as a whole (custom fields, tenders, group ids, other identifiers) are left out.
- negative: data that breaks the schema, from the schema exactly as served.

Each run covers the schema's examples (the spec pages'), schemathesis' coverage cases and
generated cases, with a fixed seed (derandomized) and a bounded number per operation. Checks
on every answer: no 5xx, the status code and content type are documented, the body matches
the documented schema, and every 4xx/5xx body is the spec's status block with no traceback
and no credential in it. The case counts are printed at the end of the run.
"""

import collections
import copy
import io
import json
from pathlib import Path

import pytest
import schemathesis
from django.core import signals
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import HealthCheck
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import SUMMARY_LINES, basic_auth

DEMO_FILE = Path(__file__).resolve().parents[1] / "catalogue" / "fixtures" / "demo_catalogue.json"
DEMO_ORG = "Demo Org"
BRAND = "BUKL"
TILL, PASSWORD = "demo_till", "demo-pass"
AUTH = basic_auth(TILL, PASSWORD)
MAX_EXAMPLES = 40  # generated cases per operation and run, besides the examples and coverage cases
SEED = 20241122

COUNTS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def status_block_on_errors(ctx, response, case):
    """Every error answer is the spec's status block; nothing leaks into it."""
    text = response.text
    assert "Traceback" not in text and PASSWORD not in text and AUTH.split()[1] not in text, text[:500]
    if response.status_code < 400:
        return None
    body = response.json()
    status = body.get("status") if isinstance(body, dict) else None
    assert isinstance(status, dict), f"no status block: {text[:500]}"
    assert status.get("success") is False, text[:500]
    assert isinstance(status.get("code"), int) and isinstance(status.get("message"), str) and status["message"]
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    status_block_on_errors,
]


# ---------------------------------------------------------------------------------------
# The demo data, and the positive run's narrowing of the schema to it
# ---------------------------------------------------------------------------------------


def demo_facts() -> dict:
    """What the positive run narrows to, read from the demo catalogue file (the schema is
    loaded when the module is collected, before any database is there)."""
    document = json.loads(DEMO_FILE.read_text())
    org_ids = [org["id"] for org in document["orgs"]]
    main_org = next(org["id"] for org in document["orgs"] if org["name"] == DEMO_ORG)
    rewards = [r["id"] for r in document["rewards"] if r["orgId"] == main_org and r["brand"] == BRAND]
    return {
        "org_ids": org_ids,
        "brands": [BRAND],
        "mobiles": sorted({c["mobile"] for c in document["customers"] if c["orgId"] == main_org and c.get("mobile")}),
        "customer_ids": sorted(c["id"] for c in document["customers"] if c["orgId"] == main_org),
        "reward_ids": rewards[:120],
    }


def _only(values) -> dict:
    return {"enum": list(values)}


def positive_overlay(raw: dict, facts: dict) -> dict:
    """The schema with the look-up parameters narrowed to the demo data (positive run only).
    v1.1 calls act on the caller's org here (DATA-SCOPE SELF); the connected-orgs rules have
    their own tests (tests/test_issue_connected.py, tests/test_isolation_matrix.py)."""
    schema = copy.deepcopy(raw)
    components = schema["components"]["schemas"]
    for name in ("SingleIssueRequest", "BulkIssueRequest", "ConnectedIssueRequest", "ValidationCodeRequest"):
        body = components[name]
        properties = body["properties"]
        for dropped in ("email", "emailId", "externalId", "validationCode", "user_group2_primary_user_id",
                        "user_group2_id", "user_group2_external_id", "customFields", "fulfillmentDetails",
                        "orgLevelDetails", "rewardOwnershipRO"):
            properties.pop(dropped, None)
        properties["mobile"] = _only(facts["mobiles"])
        if "brand" in properties:
            properties["brand"] = _only(facts["brands"])
        body["required"] = sorted({*body.get("required", []), "mobile", *(["brand"] if "brand" in properties else [])})
        body["additionalProperties"] = False
    for name in ("SingleIssueRequest", "BulkItemRequest"):
        properties = components[name]["properties"]
        for dropped in ("customFields", "fulfillmentDetails"):
            properties.pop(dropped, None)
        components[name]["additionalProperties"] = False
    items = components["BulkItemRequest"]["properties"]
    items["rewardId"] = _only(facts["reward_ids"])
    items["orgId"] = _only(facts["org_ids"][:1])  # the caller's org: with DATA-SCOPE SELF below
    components["PaymentConfigRequest"]["properties"].pop("tender", None)
    components["PaymentConfigRequest"]["additionalProperties"] = False
    for path_item in schema["paths"].values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                narrowed = {
                    ("query", "username"): [TILL],
                    ("path", "rewardId"): facts["reward_ids"],
                    ("path", "brandName"): facts["brands"],
                    ("query", "userId"): facts["customer_ids"],
                    ("header", "DATA-SCOPE"): ["SELF"],
                }.get((parameter["in"], parameter["name"]))
                if narrowed:
                    parameter["schema"] = _only(narrowed)
                    parameter["required"] = True
            operation["parameters"] = [p for p in operation.get("parameters", []) if p["name"] != "DATA-SCOPE-ORG"]
    return schema


# ---------------------------------------------------------------------------------------
# The runs
# ---------------------------------------------------------------------------------------


def _configured(schema, mode: GenerationMode):
    schema.config.generation.update(
        modes=[mode], max_examples=MAX_EXAMPLES, deterministic=True, database="none", no_shrink=True
    )
    schema.config.update(suppress_health_check=[HealthCheck.all])
    schema.config.seed = SEED  # the coverage phase's choices too: the same cases on every run
    return schema


def _load_schemas():
    app = get_wsgi_application()
    served = schemathesis.openapi.from_wsgi("/api/schema/", app, headers={"Accept": "application/json"})
    narrowed = schemathesis.openapi.from_dict(positive_overlay(served.raw_schema, demo_facts()))
    narrowed.app = app
    return _configured(narrowed, GenerationMode.POSITIVE), _configured(served, GenerationMode.NEGATIVE)


positive, negative = _load_schemas()


@pytest.fixture
def demo(db):
    """The demo catalogue and logins, in this test's transaction. The WSGI app is Django's
    real handler, which closes the database connection after each request when it is not in
    autocommit (here: inside the test's transaction); Django's test client unhooks that, so
    does this fixture."""
    call_command("load_demo", stdout=io.StringIO())
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def _call(mode: str, case):
    response = case.call(headers={"Authorization": AUTH})
    phase = case.meta.phase.name.value if case.meta is not None else "?"
    COUNTS[f"{mode} {case.operation.label}"][f"{phase}:{response.status_code}"] += 1
    case.validate_response(response, checks=CHECKS)


@positive.parametrize()
def test_fuzz_positive(case, demo):
    _call("positive", case)


@negative.parametrize()
def test_fuzz_negative(case, demo):
    _call("negative", case)


def test_zz_report_case_counts():
    """Runs last in this module: the counts of the runs above, printed at the end of the session."""
    if not COUNTS:
        pytest.skip("the fuzz runs did not run")
    total = 0
    for key in sorted(COUNTS):
        counter = COUNTS[key]
        cases = sum(counter.values())
        total += cases
        by_status = collections.Counter()
        by_phase = collections.Counter()
        for label, count in counter.items():
            phase, status = label.split(":")
            by_status[status] += count
            by_phase[phase] += count
        SUMMARY_LINES.append(
            f"fuzz {key}: {cases} cases ({', '.join(f'{p} {n}' for p, n in sorted(by_phase.items()))}); "
            f"status {dict(sorted(by_status.items()))}"
        )
    SUMMARY_LINES.append(f"fuzz total: {total} cases over {len(COUNTS)} operation runs, 0 server errors")
    assert all(not status.startswith("5") for counter in COUNTS.values() for label in counter
               for status in [label.split(":")[1]])
