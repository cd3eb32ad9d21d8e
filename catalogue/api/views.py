"""GET …/v1/user/reward/brand/{brandName}?userId=…: a customer's rewards (R11).

Validates every parameter (15006 without userId; 400 naming each bad parameter), looks
up the brand (3004) and the customer (1014) in the caller's org (or, with DATA-SCOPE
OTHER / ALL, in the connected org the customer belongs to), calls
``reward_list_for_customer`` once (or, on PostgreSQL, its in-memory twin
``catalogue.list_index.reward_list_indexed``, after one statement for the catalogue version,
the customer and what the customer holds) and renders its result.
"""

from django.conf import settings
from django.utils import timezone
from rest_framework import viewsets
from rest_framework.response import Response
from rest_framework.settings import api_settings

from catalogue import list_index
from catalogue.filters import RewardFilterSet
from catalogue.models import Customer
from catalogue.selectors import PageRequest, customer_get, reward_list_for_customer
from issuance.api import kept_principals
from issuance.api.permissions import CanIssueThroughApi
from issuance.api.views import data_scope_orgs
from issuance.errors import ErrorCode, IssuanceError, bad_request
from issuance.resolution import brand_for

from .serializers import reward_list_body

DEFAULT_PAGE_SIZE = 20
MAX_PAGE = 2**31 - 1


def _integer(params, name: str, *, minimum: int, maximum: int, errors: list[str]) -> int | None:
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    if not text.isdigit() or len(text) > 19 or not minimum <= int(text) <= maximum:
        errors.append(f"{name}: must be an integer between {minimum} and {maximum}, not '{text[:50]}'")
        return None
    return int(text)


def page_request(params, errors: list[str]) -> PageRequest:
    """page: 1-based, 0 = unpaged, absent = 1. size: default 20; above
    LIST_MAX_PAGE_SIZE it is clamped to it (pagingDto.size tells the size used)."""
    page = _integer(params, "page", minimum=0, maximum=MAX_PAGE, errors=errors)
    size = _integer(params, "size", minimum=1, maximum=MAX_PAGE, errors=errors)
    return PageRequest(
        page=1 if page is None else page,
        size=min(size or DEFAULT_PAGE_SIZE, settings.LIST_MAX_PAGE_SIZE),
        unpaged_ceiling=settings.LIST_UNPAGED_CEILING,
    )


def customer_id(params) -> int:
    raw = (params.get("userId") or "").strip()
    if not raw:
        raise IssuanceError(ErrorCode.MISSING_IDENTIFIER)
    if not raw.isdigit():
        raise bad_request(f"userId: must be a customer id (an integer), not '{raw[:50]}'")
    return int(raw)


class RewardListViewSet(viewsets.ViewSet):
    """The rewards of a brand that one customer may take, filtered, sorted and paged.

    Authentication: a principal this process authenticated the usual way for the same
    Authorization header is taken as kept and re-checked inside the call's first statement
    (issuance.api.kept_principals); when the check fails, or the call fails before it ran, the
    call is made anew with the usual authentication."""

    permission_classes = [CanIssueThroughApi]
    authentication_classes = [kept_principals.KeptPrincipalAuthentication, *api_settings.DEFAULT_AUTHENTICATION_CLASSES]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        kept_principals.keep(request)  # authenticated and permitted the usual way: keep it

    def handle_exception(self, exc):
        if isinstance(exc, kept_principals.PrincipalChanged) or kept_principals.unconfirmed(self.request):
            return self._anew()
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        if kept_principals.unconfirmed(request):  # answered without the statement (OPTIONS)
            response = self._anew()
        return super().finalize_response(request, response, *args, **kwargs)

    def _anew(self):
        """Nothing is answered to a kept principal its statement did not confirm: the call is
        made again from the start, with the usual authentication."""
        kept_principals.forget(self.request)
        return type(self).as_view({"get": "list"})(self.request._request, *self.args, **self.kwargs)

    def list(self, request, brand_name: str):
        # R12: DATA-SCOPE SELF (default) reads the caller's org; OTHER the listed child
        # orgs; ALL the caller's org and its children. The customer's org decides.
        scope = data_scope_orgs(request, write=False)
        org = request.user.profile.org
        now = timezone.now()
        params = request.query_params
        user_id = customer_id(params)
        if scope != {org.pk}:
            found = Customer.objects.filter(pk=user_id, org_id__in=scope).select_related("org").first()
            if found is None:
                raise IssuanceError(ErrorCode.CUSTOMER_NOT_FOUND)
            org = found.org
        errors: list[str] = []
        page = page_request(params, errors)
        if list_index.enabled():
            filter_errors, filters = list_index.validated_filters(params)
            errors.extend(filter_errors)
            if errors:
                raise bad_request("; ".join(errors))
            result = list_index.indexed_list(
                org=org, brand_name=brand_name, customer_id=user_id, params=params, filters=filters, page=page,
                now=now, principal_check=kept_principals.check_of(request),
                principal_checked=lambda found: kept_principals.confirm(request, found))
            if result is not None:
                return Response(reward_list_body(result))
        filterset = RewardFilterSet(params, now=now, time_zone=org.time_zone)
        if not filterset.is_valid():
            errors.extend(f"{name}: {message}" for name, messages in filterset.errors.items() for message in messages)
        if errors:
            raise bad_request("; ".join(errors))
        brand = brand_for(org=org, name=brand_name)
        customer = customer_get(org=org, customer_id=user_id)
        result = reward_list_for_customer(org=org, brand=brand, customer=customer, filterset=filterset, page=page, now=now)
        return Response(reward_list_body(result))
