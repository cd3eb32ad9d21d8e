"""The permission groups people and tills are put in (docs/permissions.md).

Created or completed after every ``migrate`` (post_migrate), so a fresh database always
has them; adding a permission here and migrating grants it.
"""

from django.apps import apps as global_apps

API_GROUP = "default access group"
STAFF_GROUP = "staff issuers"
APPROVER_GROUP = "goodwill approvers"
CATALOGUE_ADMIN_GROUP = "catalogue administrators"

_CATALOGUE_MODELS = "catalogue"


def _group_permissions():
    return {
        API_GROUP: [("issuance", "api_issue")],
        STAFF_GROUP: [
            ("issuance", "staff_issue"),
            ("issuance", "view_issuance"),
            ("issuance", "view_issuanceline"),
            ("issuance", "view_pointsaccount"),
            ("issuance", "view_ledgerentry"),
            ("catalogue", "view_customer"),
            ("catalogue", "view_reward"),
            # The admin's read-only record of goodwill requests and bulk jobs (staff/admin.py).
            ("staff", "view_goodwillrequest"),
            ("staff", "view_bulkjob"),
        ],
        APPROVER_GROUP: [("issuance", "approve_goodwill")],
    }


def groups_ensure(sender=None, apps=global_apps, **kwargs) -> None:
    try:
        Group = apps.get_model("auth", "Group")
        Permission = apps.get_model("auth", "Permission")
    except LookupError:
        return
    for name, perms in _group_permissions().items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = [
            p
            for app_label, codename in perms
            for p in Permission.objects.filter(content_type__app_label=app_label, codename=codename)
        ]
        group.permissions.add(*wanted)
    admins, _ = Group.objects.get_or_create(name=CATALOGUE_ADMIN_GROUP)
    admins.permissions.add(*Permission.objects.filter(content_type__app_label=_CATALOGUE_MODELS))
    admins.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="issuance",
            codename__in=["view_pointsaccount", "change_pointsaccount", "view_ledgerentry", "view_issuance",
                          "view_issuanceline", "view_issuedunit"],
        )
    )
