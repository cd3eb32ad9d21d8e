"""python manage.py create_api_client --org ID --till CODE --name NAME [--scope S ...]

Prints the client id and secret once; the secret is stored hashed."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apiclients.scopes import ALL_SCOPES
from apiclients.services import api_client_create
from catalogue.models import Till


class Command(BaseCommand):
    help = "Register an OAuth2 client-credentials API client bound to one till; prints its id and secret."

    def add_arguments(self, parser):
        parser.add_argument("--org", type=int, required=True, help="Organisation id")
        parser.add_argument("--till", required=True, help="Till code (the `username` of the API)")
        parser.add_argument("--name", required=True, help="Application name shown in the admin")
        parser.add_argument("--scope", action="append", choices=ALL_SCOPES, dest="scopes",
                            help="Repeat for several; default: rewards:read")
        parser.add_argument("--username", help="Username of the client's identity (default: generated)")

    def handle(self, *args, org, till, name, scopes, username, **options):
        till_row = Till.objects.select_related("org").filter(org_id=org, code=till).first()
        if till_row is None:
            raise CommandError(f"no till {till!r} in organisation {org}")
        try:
            client, secret = api_client_create(
                name=name, till=till_row, scopes=scopes or ["rewards:read"], username=username
            )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        self.stdout.write(f"client_id: {client.application.client_id}\n")
        self.stdout.write(f"client_secret: {secret}\n")
        self.stdout.write(f"scopes: {client.scopes}  till: {till_row.code}  org: {till_row.org}\n")
        self.stderr.write("The secret is shown once; it is stored hashed.\n")
