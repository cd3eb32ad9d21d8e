"""The OpenAPI schema (issuance/api/schema.py, catalogue/api_schema.py): valid, complete for
every API endpoint, its examples (the spec pages') valid against it, served at /api/schema/
with Swagger UI at /api/docs/ from this site's own static files."""

import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from django.contrib.staticfiles import finders
from django.urls import URLResolver, get_resolver

from issuance.api.schema import documented_path, schema_dict

ROOT = Path(__file__).resolve().parents[1]
API_PREFIX = "api_gateway/"
OPERATIONS = {
    "issue-single-reward",
    "issue-bulk-reward",
    "issue-reward-connected-orgs",
    "validation-code",
    "list-user-rewards",
}


@pytest.fixture(scope="module")
def schema() -> dict:
    return schema_dict()


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


# ---------------------------------------------------------------------------------------
# Valid
# ---------------------------------------------------------------------------------------


def test_schema_validates_without_warnings(tmp_path):
    """drf-spectacular's own check: the OpenAPI 3 meta-schema, and no generator warning
    (an unresolvable serializer, authenticator or parameter) is tolerated."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "rewards_site.settings.test"}
    out = tmp_path / "schema.yaml"
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stderr and "Error" not in result.stderr, result.stderr
    assert out.read_text().startswith("openapi: 3.")


# ---------------------------------------------------------------------------------------
# Complete: every URL pattern under api_gateway/ and each method it answers
# ---------------------------------------------------------------------------------------


def _walk(resolver, prefix=""):
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern).removeprefix("^")
        if isinstance(entry, URLResolver):
            yield from _walk(entry, route)
        else:
            yield route, entry


def _methods(pattern) -> list[str]:
    """The methods a pattern answers. HEAD is GET without a body (DRF adds it to a ViewSet's
    actions on its first request) and OPTIONS is generic: neither is an operation of its own."""
    actions = getattr(pattern.callback, "actions", None)  # a DRF ViewSet.as_view({...})
    if actions:
        return sorted(set(actions) - {"head", "options"})
    view_class = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
    if view_class is not None:
        return sorted(m for m in view_class.http_method_names
                      if m not in ("head", "options") and hasattr(view_class, m))
    return ["get"]


def route_path(route: str) -> str:
    """A URL pattern (regex or path converter) as an OpenAPI path, before documented_path."""
    path = "/" + route.removesuffix("$")
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", path)  # re_path groups
    path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", path)  # path() converters
    path = path.replace("\\.", ".").removesuffix("/?")
    return path + "/" if route.removesuffix("$").endswith("/?") else path


def api_endpoints() -> set[tuple[str, str]]:
    """(documented path, method) of every URL pattern under api_gateway/."""
    found = set()
    for route, pattern in _walk(get_resolver()):
        if route.startswith(API_PREFIX):
            found.update((documented_path(route_path(route)), method) for method in _methods(pattern))
    return found


def missing_from(schema: dict) -> list[str]:
    documented = {(path, method) for path, method, _ in operations(schema)}
    return sorted(f"{method.upper()} {path}" for path, method in api_endpoints() - documented)


def test_every_api_endpoint_is_in_the_schema(schema):
    assert len(api_endpoints()) == len(OPERATIONS), api_endpoints()
    assert missing_from(schema) == []


def test_the_completeness_check_fails_when_an_endpoint_is_missing(schema):
    """The check above is not vacuous: drop one operation and it names it."""
    for path, method, operation in list(operations(schema)):
        shrunk = {**schema, "paths": {p: dict(item) for p, item in schema["paths"].items()}}
        del shrunk["paths"][path][method]
        assert missing_from(shrunk) == [f"{method.upper()} {path}"], operation["operationId"]


def test_schema_has_no_operation_without_an_endpoint(schema):
    documented = {(path, method) for path, method, _ in operations(schema)}
    assert documented - api_endpoints() == set()
    assert {operation["operationId"] for _, _, operation in operations(schema)} == OPERATIONS


def test_paths_are_the_spec_pages_paths(schema):
    assert sorted(schema["paths"]) == [
        "/api_gateway/rewards/core/v1.1/user/rewards/issue/",
        "/api_gateway/rewards/core/v1/user/reward/brand/{brandName}",
        "/api_gateway/rewards/core/v1/user/reward/{rewardId}/issue",
        "/api_gateway/rewards/core/v1/user/rewards/issue",
        "/api_gateway/rewards/core/v1/user/validation_code",
    ]


# ---------------------------------------------------------------------------------------
# Every operation: security, parameters, bodies, every response with the status block
# ---------------------------------------------------------------------------------------


def test_security_schemes_are_basic_and_oauth2_client_credentials(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["basicAuth"]["type"] == "http" and schemes["basicAuth"]["scheme"] == "basic"
    flow = schemes["oauth2"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/oauth/token/"
    assert set(flow["scopes"]) == {"rewards:issue", "rewards:read"}
    assert set(schemes) == {"basicAuth", "oauth2"}  # no anonymous access, ever (R1)
    for _, method, operation in operations(schema):
        scope = "rewards:read" if method == "get" else "rewards:issue"
        assert operation["security"] == [{"basicAuth": []}, {"oauth2": [scope]}], operation["operationId"]


def _parameters(operation) -> dict[tuple[str, str], dict]:
    return {(p["in"], p["name"]): p for p in operation.get("parameters", [])}


def test_query_parameters_and_headers_are_documented(schema):
    by_id = {operation["operationId"]: operation for _, _, operation in operations(schema)}
    for operation_id in ("issue-single-reward", "issue-bulk-reward", "issue-reward-connected-orgs"):
        parameters = _parameters(by_id[operation_id])
        assert parameters[("query", "username")]["required"] is True
        assert parameters[("query", "skip_validation")]["schema"] == {"type": "boolean"}
        assert parameters[("query", "dryRun")]["schema"] == {"type": "boolean"}
    connected = _parameters(by_id["issue-reward-connected-orgs"])
    assert set(connected[("header", "DATA-SCOPE")]["schema"]["enum"]) == {"SELF", "OTHER"}
    assert ("header", "DATA-SCOPE-ORG") in connected
    for operation_id in ("issue-single-reward", "issue-bulk-reward"):  # v1 does not read DATA-SCOPE
        assert not any(place == "header" for place, _ in _parameters(by_id[operation_id]))
    assert _parameters(by_id["issue-single-reward"])[("path", "rewardId")]["schema"]["type"] == "integer"
    listing = _parameters(by_id["list-user-rewards"])
    assert {name for place, name in listing if place == "query"} == {
        "userId", "includeExpired", "page", "size", "groupName", "label", "category", "redemptionType",
        "activationStatus", "minPoints", "maxPoints", "minCash", "maxCash", "status", "vendorId",
        "createdOnDaysAgo", "sortBy", "orderBy",
    }
    assert listing[("query", "userId")]["required"] is True
    assert listing[("path", "brandName")]["required"] is True


def test_list_filters_match_the_filterset():
    """A filter added to RewardFilterSet must be documented too."""
    from catalogue.api_schema import LIST_PARAMETERS
    from catalogue.filters import RewardFilterSet

    documented = {p.name for p in LIST_PARAMETERS}
    assert set(RewardFilterSet.base_filters) <= documented


def test_request_bodies_come_from_the_serializers(schema):
    schemas = schema["components"]["schemas"]
    by_id = {operation["operationId"]: operation for _, _, operation in operations(schema)}
    bodies = {
        "issue-single-reward": "SingleIssueRequest",
        "issue-bulk-reward": "BulkIssueRequest",
        "issue-reward-connected-orgs": "ConnectedIssueRequest",
        "validation-code": "ValidationCodeRequest",
    }
    for operation_id, component in bodies.items():
        body = by_id[operation_id]["requestBody"]
        assert body["required"] is True
        assert body["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{component}"}
    bulk = schemas["BulkIssueRequest"]
    assert bulk["required"] == ["rewards"]
    assert bulk["properties"]["rewards"]["minItems"] == 1 and bulk["properties"]["rewards"]["maxItems"] == 100
    assert schemas["BulkItemRequest"]["required"] == ["rewardId"]
    assert {"orgId", "quantity", "paymentConfig", "customFields", "fulfillmentDetails", "requestId"} <= set(
        schemas["BulkItemRequest"]["properties"]
    )
    assert "orgLevelDetails" in schemas["ConnectedIssueRequest"]["properties"]
    assert set(schemas["PaymentConfigRequest"]["properties"]) == {"id", "redemptionValue", "points", "tender"}


EXPECTED_ERRORS = {
    "issue-single-reward": {"400", "401", "403", "404", "409", "413", "415", "422", "503"},
    "issue-bulk-reward": {"400", "401", "403", "404", "409", "413", "415", "422", "503"},
    "issue-reward-connected-orgs": {"400", "401", "403", "404", "409", "413", "415", "422", "503"},
    "validation-code": {"400", "401", "403", "404", "413", "415", "422", "503"},
    "list-user-rewards": {"400", "401", "403", "404", "503"},
}


def _refs(node) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[1]} if "$ref" in node else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*map(_refs, node)) if node else set()
    return set()


def test_every_error_response_is_the_status_block(schema):
    schemas = schema["components"]["schemas"]
    assert schemas["ErrorResponse"]["required"] == ["status"]
    assert set(schemas["Status"]["required"]) == {"success", "code", "message"}
    assert "partnerError" in schemas["Status"]["properties"]
    for _, _, operation in operations(schema):
        responses = operation["responses"]
        assert set(responses) == {"200"} | EXPECTED_ERRORS[operation["operationId"]]
        for code, response in responses.items():
            body_schema = response["content"]["application/json"]["schema"]
            if code != "200":
                alternatives = [body_schema] if "$ref" in body_schema else body_schema["anyOf"]
                assert {"$ref": "#/components/schemas/ErrorResponse"} in alternatives, (operation["operationId"], code)
            assert response["description"]


def test_every_response_shape_is_documented(schema):
    schemas = schema["components"]["schemas"]
    for name in ("SingleIssueResponse", "BulkIssueResponse", "ConnectedIssueResponse", "DryRunResponse",
                 "IssueLine", "ConnectedIssueLine", "RewardListResponse", "RewardDto", "PagingDto",
                 "ValidationCodeResponse", "IntouchEntry", "PaymentConfigOut", "RedemptionDetails"):
        assert name in schemas, name
    assert set(schemas["PagingDto"]["required"]) == {
        "last", "totalElements", "totalPages", "numberOfElements", "first", "size", "number"
    }
    assert "orgId" in schemas["ConnectedIssueLine"]["required"]
    for outcome in ("SingleIssueOutcome", "BulkIssueOutcome", "ConnectedIssueOutcome"):
        assert {"$ref": "#/components/schemas/DryRunResponse"} in schemas[outcome]["oneOf"]


# ---------------------------------------------------------------------------------------
# The examples: the spec pages', valid against the schema they illustrate
# ---------------------------------------------------------------------------------------


def _json_schema(node):
    """OpenAPI 3.0 schema → JSON Schema (``nullable`` → a null alternative)."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _json_schema(value) for key, value in node.items() if key not in ("nullable", "example")}
    if node.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def _validator(schema: dict, body_schema: dict):
    root = {"components": _json_schema(schema["components"]), **_json_schema(body_schema)}
    return jsonschema.Draft4Validator(root)


def _examples(schema):
    for _, _, operation in operations(schema):
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        for name, example in (body or {}).get("examples", {}).items():
            yield f"{operation['operationId']} request {name}", body["schema"], example["value"]
        for code, response in operation["responses"].items():
            content = response["content"]["application/json"]
            for name, example in content.get("examples", {}).items():
                yield f"{operation['operationId']} {code} {name}", content["schema"], example["value"]


def test_the_spec_pages_examples_are_in_the_schema(schema):
    names = [name for name, _, _ in _examples(schema)]
    assert len(names) >= 40
    for expected in ("issue-bulk-reward request WithPaymentConfig", "issue-bulk-reward 200 RewardIssuedPartially",
                     "issue-single-reward 200 CouponIssued", "issue-reward-connected-orgs request ConnectedOrg",
                     "issue-single-reward 422 UserNotInTheGroup", "list-user-rewards 200 RewardsOfACustomer"):
        assert expected in names, names


def test_every_example_is_valid_against_its_schema(schema):
    checked = 0
    for name, body_schema, value in _examples(schema):
        errors = sorted(_validator(schema, body_schema).iter_errors(value), key=str)
        assert not errors, f"{name}: {errors[0].message} at {list(errors[0].absolute_path)}"
        checked += 1
    assert checked >= 40


# ---------------------------------------------------------------------------------------
# Served: /api/schema/ and Swagger UI at /api/docs/, no CDN
# ---------------------------------------------------------------------------------------


def test_schema_is_served_without_credentials(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "Rewards Catalogue API"
    assert set(response.json()["paths"]) == set(schema_dict()["paths"])
    assert client.get("/api/schema/").content.startswith(b"openapi: 3.0.3")


def test_swagger_ui_is_served_from_local_static_files(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "https://" not in html and "http://" not in html and "//cdn" not in html
    assert "<style" not in html and "<script>" not in html  # nothing inline: the CSP allows 'self' only
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    static = [asset for asset in assets if asset.startswith("/static/")]
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in static), assets
    for asset in static:
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not a static file of this site"
    script = next(asset for asset in assets if "script" in asset and not asset.startswith("/static/"))
    init = client.get(script.replace("&amp;", "&"))
    assert init.status_code == 200 and init["Content-Type"].startswith("application/javascript")
    assert b"/api/schema/" in init.content
    assert "script-src 'self'" in page["Content-Security-Policy"]
