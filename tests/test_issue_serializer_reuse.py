"""issuance.api.views.validated keeps one serializer per class and thread: what it gives for a
body never depends on the bodies validated before it (errors, nested items, defaults)."""

import threading

import pytest
from rest_framework.exceptions import ValidationError

from issuance.api.serializers import BulkIssueSerializer, SingleIssueSerializer
from issuance.api.views import validated

BODIES = [
    (SingleIssueSerializer, {"mobile": "123", "quantity": 2, "paymentConfig": {"id": 5, "points": "1.5"}}),
    (SingleIssueSerializer, {"mobile": True, "quantity": 0, "paymentConfig": {"id": "x"}}),
    (SingleIssueSerializer, {"email": "a@example.com", "requestId": "r1"}),
    (SingleIssueSerializer, {}),
    (BulkIssueSerializer, {"mobile": "9", "rewards": [{"rewardId": 1}, {"rewardId": 2, "quantity": 3}]}),
    (BulkIssueSerializer, {"mobile": "9", "rewards": [{"rewardId": 0}, {"rewardId": "y"}]}),
    (BulkIssueSerializer, {"rewards": []}),
    (BulkIssueSerializer, {"externalId": 77, "rewards": [{"rewardId": 4, "paymentConfig": {"tender": {"amount": "2.50"}}}]}),
]


def fresh(serializer_class, body):
    serializer = serializer_class(data=body)
    if serializer.is_valid():
        return "valid", serializer.validated_data
    return "invalid", serializer.errors


def kept(serializer_class, body):
    try:
        return "valid", validated(serializer_class, body)
    except ValidationError as error:
        return "invalid", error.detail


@pytest.mark.parametrize("order", range(5))
def test_same_results_as_a_fresh_serializer_in_any_order(order):
    import random

    bodies = BODIES * 2
    random.Random(order).shuffle(bodies)
    for serializer_class, body in bodies:
        assert kept(serializer_class, body) == fresh(serializer_class, body), body


def test_one_serializer_per_thread():
    validated(SingleIssueSerializer, {"mobile": "1"})
    from issuance.api import views

    mine = views._serializers.__dict__[SingleIssueSerializer]
    theirs = []
    thread = threading.Thread(target=lambda: (validated(SingleIssueSerializer, {"mobile": "2"}),
                                              theirs.append(views._serializers.__dict__[SingleIssueSerializer])))
    thread.start()
    thread.join()
    assert theirs and theirs[0] is not mine
    assert validated(SingleIssueSerializer, {"mobile": "1"})["mobile"] == "1"
