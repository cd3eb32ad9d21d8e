"""python manage.py export_catalogue [--org ID ...] [-o FILE] [--include-secrets]"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from catalogue.catalogue_io import jsonio
from catalogue.catalogue_io.exporter import catalogue_export
from catalogue.models import Organisation


class Command(BaseCommand):
    help = (
        "Export catalogues in the import format (docs/catalogue-format.md). Vendor header values "
        "are masked unless --include-secrets is given."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--org",
            type=int,
            action="append",
            dest="orgs",
            metavar="ID",
            help="org id to export (repeatable); default: every org",
        )
        parser.add_argument("-o", "--output", help="file to write (default: standard output)")
        parser.add_argument(
            "--include-secrets",
            action="store_true",
            help="write vendor header values in clear (treat the file as a secret)",
        )

    def handle(self, *args, orgs: list[int] | None, output: str | None, include_secrets: bool, **options):
        if orgs:
            missing = sorted(set(orgs) - set(Organisation.objects.filter(pk__in=orgs).values_list("pk", flat=True)))
            if missing:
                raise CommandError(f"unknown org id(s): {', '.join(map(str, missing))}")
        text = jsonio.dumps(catalogue_export(org_ids=orgs, include_secrets=include_secrets))
        if output is None:
            self.stdout.write(text, ending="")
            return
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"{output}: cannot write: {exc.strerror}") from exc
        if include_secrets:
            self.stderr.write(f"{output} holds vendor secrets in clear: keep it out of version control.")
