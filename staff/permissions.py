"""Who may use the staff pages, and in which organisations.

Every staff view is a ``StaffView``: signed in (else the staff sign-in page), holding
``issuance.staff_issue`` (the "staff issuers" group) and a ``UserProfile`` (else 403).
A staff member acts for their profile's org and that org's child orgs (R12's connected
orgs); every read and write below filters on ``request.staff_org_ids``, so a row of
another org answers exactly like an unknown id (404).
"""

from django.contrib.auth.views import redirect_to_login
from django.template.response import TemplateResponse
from django.views import View

from catalogue.models import Organisation, UserProfile

STAFF_PERMISSION = "issuance.staff_issue"
APPROVER_PERMISSION = "issuance.approve_goodwill"


def staff_orgs(user) -> list[Organisation]:
    """The profile org first, then its children (two queries); empty without a profile."""
    profile = UserProfile.objects.filter(user_id=user.pk).select_related("org").first()
    if profile is None:
        return []
    return [profile.org, *Organisation.objects.filter(parent_id=profile.org_id).order_by("name")]


def forbidden(request, message: str) -> TemplateResponse:
    return TemplateResponse(request, "staff/403.html", {"message": message}, status=403)


class StaffView(View):
    """Base of every staff page: login, the staff permission, an org."""

    permission = STAFF_PERMISSION
    permission_message = "Your account may not use the staff pages (it needs the “staff issuers” group)."

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), "staff:login")
        if not request.user.has_perm(STAFF_PERMISSION) or not request.user.has_perm(self.permission):
            return forbidden(request, self.permission_message)
        orgs = staff_orgs(request.user)
        if not orgs:
            return forbidden(request, "Your account has no organisation (no user profile).")
        request.staff_orgs = orgs
        request.staff_org_ids = frozenset(org.pk for org in orgs)
        request.is_approver = request.user.has_perm(APPROVER_PERMISSION)
        return super().dispatch(request, *args, **kwargs)


class ApproverView(StaffView):
    permission = APPROVER_PERMISSION
    permission_message = "Approving goodwill needs the “goodwill approvers” group."
