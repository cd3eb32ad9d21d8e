"""python manage.py load_demo: the demo catalogue and the demo logins (never in production)."""

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from catalogue.catalogue_io.importer import CatalogueFileError, catalogue_import, document_load
from catalogue.models import Organisation, Till, UserProfile
from issuance.groups import API_GROUP, groups_ensure

DEMO_FILE = Path(__file__).resolve().parents[2] / "fixtures" / "demo_catalogue.json"
DEMO_ORG = "Demo Org"
DEMO_TILL = "demo_till"
ADMIN = ("admin", "admin-demo")
TILL_USER = ("demo_till", "demo-pass")


class Command(BaseCommand):
    help = (
        "Load the demo catalogue (catalogue/fixtures/demo_catalogue.json) and the demo users "
        "admin/admin-demo and demo_till/demo-pass. Idempotent. Refused when ALLOW_DEMO_DATA is off."
    )

    def handle(self, *args, **options):
        if not getattr(settings, "ALLOW_DEMO_DATA", False):
            raise CommandError(
                "demo data is disabled here (settings.ALLOW_DEMO_DATA is False, as in production): "
                "load_demo would create well-known logins and passwords"
            )
        try:
            document = document_load(DEMO_FILE.read_bytes())
            with transaction.atomic():
                result = catalogue_import(document=document)
                org = Organisation.objects.get(name=DEMO_ORG)
                admin = _user_ensure(*ADMIN, org=org, staff=True)
                till_user = _user_ensure(*TILL_USER, org=org, staff=False)
                till_user.extend(_till_login_ensure(org, TILL_USER[0]))
        except CatalogueFileError as exc:
            raise CommandError(f"{DEMO_FILE}: {exc.summary()}") from exc
        self.stdout.write(f"Demo catalogue {DEMO_FILE.name}:")
        for line in result.report():
            self.stdout.write(f"  {line}")
        for name, changes in ((ADMIN[0], admin), (TILL_USER[0], till_user)):
            self.stdout.write(f"  user {name}: {', '.join(changes) if changes else 'unchanged'}")


def _user_ensure(username: str, password: str, *, org: Organisation, staff: bool) -> list[str]:
    """Create or correct one demo login; the list says what changed."""
    user, created = get_user_model().objects.get_or_create(username=username)
    changes = ["created"] if created else []
    wanted = {"is_active": True, "is_staff": staff, "is_superuser": staff}
    for attr, value in wanted.items():
        if getattr(user, attr) != value:
            setattr(user, attr, value)
            if not created:
                changes.append(f"{attr}={value}")
    # check_password runs the slow hasher; unusable passwords (set by the import) fail fast.
    if created or not user.check_password(password):
        user.set_password(password)
        changes.append("password set")
    if changes:
        user.save()
    profile, made = UserProfile.objects.get_or_create(user=user, defaults={"org": org})
    if made:
        changes.append(f"profile in org {org.name!r}")
    elif profile.org_id != org.pk:
        profile.org = org
        profile.save(update_fields=["org"])
        changes.append(f"profile moved to org {org.name!r}")
    return changes


def _till_login_ensure(org: Organisation, username: str) -> list[str]:
    """The till user may book on the demo till and use the API (the API permission group)."""
    changes = []
    user = get_user_model().objects.get(username=username)
    till = Till.objects.get(org=org, code=DEMO_TILL)
    if not till.users.filter(pk=user.pk).exists():
        till.users.add(user)
        changes.append(f"login of till {DEMO_TILL}")
    if not Group.objects.filter(name=API_GROUP).exists():
        groups_ensure()
        changes.append(f"group {API_GROUP!r} created")
    group = Group.objects.get(name=API_GROUP)
    if not user.groups.filter(pk=group.pk).exists():
        user.groups.add(group)
        changes.append(f"member of {API_GROUP!r}")
    return changes
