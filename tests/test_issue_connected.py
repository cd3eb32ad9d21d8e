"""v1.1 issue across connected orgs (issue-reward-connected-orgs.txt, R12)."""

from decimal import Decimal

import pytest

from catalogue import models as cm
from catalogue.choices import PaymentMode, RedemptionType
from issuance.models import IssuanceLine, LedgerEntry, PointsAccount
from tests import factories as f

pytestmark = pytest.mark.django_db

URL = "/api_gateway/rewards/core/v1.1/user/rewards/issue/?username=till1&skip_validation=true"
MOBILE = "11223569865"


@pytest.fixture
def world(org, brand, api, account):
    """The caller's org (parent) with children A and B, and an unconnected org C; the same
    person is a customer in each, with a reward of 10 points per org."""
    child_a = f.OrganisationFactory(name="Child A", parent=org, allow_skip_validation=True)
    child_b = f.OrganisationFactory(name="Child B", parent=org, allow_skip_validation=True)
    other = f.OrganisationFactory(name="Unconnected", allow_skip_validation=True)
    rewards, accounts = {}, {"parent": account}
    rewards["parent"] = points_reward(brand, 350)
    for name, child in (("a", child_a), ("b", child_b), ("c", other)):
        child_brand = f.BrandFactory(org=child, name="BUKL")
        rewards[name] = points_reward(child_brand, {"a": 351, "b": 352, "c": 353}[name])
        customer = f.CustomerFactory(org=child, mobile=MOBILE)
        accounts[name] = f.PointsAccountFactory(customer=customer, opening_balance=Decimal("1000"))
    return {"orgs": {"parent": org, "a": child_a, "b": child_b, "c": other}, "rewards": rewards, "accounts": accounts}


def points_reward(brand, pk):
    reward = f.RewardFactory(pk=pk, brand=brand, redemption_type=RedemptionType.PHYSICAL_REWARD)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("10"))
    return reward


def post(api, rewards, *, scope=None, scope_orgs=None, **top):
    headers = {}
    if scope:
        headers["HTTP_DATA_SCOPE"] = scope
    if scope_orgs is not None:
        headers["HTTP_DATA_SCOPE_ORG"] = scope_orgs
    body = {"mobile": MOBILE, "brand": "BUKL", "transactionNumber": "123456789", **top, "rewards": rewards}
    return api.post(URL, body, format="json", **headers)


def spent(world, name):
    return Decimal(world["accounts"][name].opening_balance) - PointsAccount.objects.get(
        pk=world["accounts"][name].pk
    ).balance


def test_self_scope_issues_in_the_callers_org_and_reports_org_id(api, world):
    response = post(api, [{"rewardId": 350, "quantity": 1}])
    assert response.status_code == 200
    line = response.json()["rewards"][0]
    assert list(line)[:3] == ["status", "orgId", "transactionId"]
    assert line["orgId"] == world["orgs"]["parent"].pk
    assert spent(world, "parent") == 10


def test_other_scope_issues_in_a_child_org_from_that_orgs_customer(api, world):
    child = world["orgs"]["a"]
    response = post(api, [{"rewardId": 351, "quantity": 1, "orgId": child.pk}], scope="OTHER", scope_orgs=str(child.pk))
    assert response.status_code == 200, response.content
    line = response.json()["rewards"][0]
    assert line["orgId"] == child.pk and line["status"]["code"] == 200
    assert spent(world, "a") == 10 and spent(world, "parent") == 0
    assert IssuanceLine.objects.get().customer.org == child


def test_mixed_orgs_in_one_call_each_line_in_its_org(api, world):
    a, b = world["orgs"]["a"], world["orgs"]["b"]
    response = post(
        api,
        [{"rewardId": 352, "quantity": 2, "orgId": b.pk}, {"rewardId": 351, "quantity": 1, "orgId": a.pk}],
        scope="OTHER",
        scope_orgs=f"{a.pk},{b.pk}",
        orgLevelDetails=[{"orgId": a.pk, "notes": "for A"}, {"orgId": b.pk, "params": {"k": "v"}}],
    )
    assert response.status_code == 200
    lines = response.json()["rewards"]
    assert [(line["orgId"], line["rewardId"], line["quantity"]) for line in lines] == [(b.pk, 352, 2), (a.pk, 351, 1)]
    assert response.json()["status"] == {"success": True, "code": 200, "message": "Reward issued successfully"}
    assert spent(world, "a") == 10 and spent(world, "b") == 20
    issuance_a = IssuanceLine.objects.get(reward_id=351).issuance
    assert issuance_a.notes == "for A" and IssuanceLine.objects.get(reward_id=352).issuance.params == {"k": "v"}


def test_partial_results_across_orgs(api, world):
    a, b = world["orgs"]["a"], world["orgs"]["b"]
    cm.Reward.objects.filter(pk=352).update(enabled=False)
    response = post(api, [{"rewardId": 351, "orgId": a.pk}, {"rewardId": 352, "orgId": b.pk}],
                    scope="OTHER", scope_orgs=f"{a.pk},{b.pk}")
    assert response.status_code == 200
    assert response.json()["status"] == {"success": False, "code": 8010, "message": "Reward issued partially"}
    assert [line["status"]["code"] for line in response.json()["rewards"]] == [200, 8003]


def test_points_short_in_one_org_fails_the_whole_call(api, world):
    a, b = world["orgs"]["a"], world["orgs"]["b"]
    PointsAccount.objects.filter(pk=world["accounts"]["b"].pk).update(balance=5, opening_balance=5)
    response = post(api, [{"rewardId": 351, "orgId": a.pk}, {"rewardId": 352, "orgId": b.pk}],
                    scope="OTHER", scope_orgs=f"{a.pk},{b.pk}")
    assert response.status_code == 422
    assert response.json()["status"]["code"] == 8004
    assert not LedgerEntry.objects.exists() and not IssuanceLine.objects.exists()


@pytest.mark.parametrize(
    ("scope", "scope_orgs", "message"),
    [
        ("ALL", None, "DATA-SCOPE ALL is allowed only on GET"),
        ("OTHER", None, "DATA-SCOPE OTHER needs DATA-SCOPE-ORG with 1 to 2 org ids"),
        ("OTHER", "a,b,parent", "DATA-SCOPE OTHER needs DATA-SCOPE-ORG with 1 to 2 org ids"),
        ("OTHER", "x", "DATA-SCOPE OTHER needs DATA-SCOPE-ORG with 1 to 2 org ids"),
        ("OTHER", "c", "DATA-SCOPE-ORG may only name child orgs connected to the caller's org"),
        ("OTHER", "parent", "DATA-SCOPE-ORG may only name child orgs connected to the caller's org"),
        ("EVERYTHING", None, "DATA-SCOPE must be SELF, OTHER or ALL"),
    ],
)
def test_data_scope_refusals_are_403(api, world, scope, scope_orgs, message):
    orgs = world["orgs"]
    if scope_orgs:
        scope_orgs = ",".join(str(orgs[p].pk) if p in orgs else p for p in scope_orgs.split(","))
    response = post(api, [{"rewardId": 350}], scope=scope, scope_orgs=scope_orgs)
    assert response.status_code == 403
    assert response.json() == {"status": {"success": False, "code": 403, "message": message}}
    assert not IssuanceLine.objects.exists()


def test_child_cannot_act_on_its_parent(client, world):
    from tests.conftest import api_user_for, basic_auth

    child, parent = world["orgs"]["a"], world["orgs"]["parent"]
    api_user_for(child, username="child_till", till_code="till1")
    response = client.post(URL, {"mobile": MOBILE, "rewards": [{"rewardId": 350, "orgId": parent.pk}]},
                           content_type="application/json", HTTP_DATA_SCOPE="OTHER",
                           HTTP_DATA_SCOPE_ORG=str(parent.pk), HTTP_AUTHORIZATION=basic_auth("child_till", "pass"))
    assert response.status_code == 403


def test_line_org_outside_the_scope_is_403(api, world):
    a, b = world["orgs"]["a"], world["orgs"]["b"]
    response = post(api, [{"rewardId": 352, "orgId": b.pk}], scope="OTHER", scope_orgs=str(a.pk))
    assert response.status_code == 403
    assert response.json()["status"]["message"] == f"rewards[0].orgId: org {b.pk} is outside the DATA-SCOPE of this call"


def test_a_child_orgs_reward_without_org_id_is_not_found_in_self_scope(api, world):
    response = post(api, [{"rewardId": 351}])
    assert response.status_code == 404
    assert response.json() == {"status": {"success": False, "code": 404, "message": "Reward not found: 351"}}


def test_group_of_the_child_org_from_org_level_details(api, world):
    a = world["orgs"]["a"]
    customer = world["accounts"]["a"].customer
    group = cm.CustomerGroup.objects.create(org=a, primary_member=customer)
    cm.GroupMembership.objects.create(group=group, customer=customer)
    group_account = f.PointsAccountFactory(customer=None, group=group, org=a, opening_balance=Decimal("100"))
    response = post(api, [{"rewardId": 351, "orgId": a.pk}], scope="OTHER", scope_orgs=str(a.pk),
                    orgLevelDetails=[{"orgId": a.pk, "userGroup2Id": group.pk}])
    assert response.json()["rewards"][0]["status"]["code"] == 200
    assert PointsAccount.objects.get(pk=group_account.pk).balance == Decimal("90")
    assert spent(world, "a") == 0
