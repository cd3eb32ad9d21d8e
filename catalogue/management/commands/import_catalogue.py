"""python manage.py import_catalogue FILE.json [--dry-run]"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from catalogue.catalogue_io.importer import CatalogueFileError, catalogue_import, document_load


class Command(BaseCommand):
    help = (
        "Import a catalogue file (docs/catalogue-format.md). The whole file is validated first and "
        "then written in one transaction; a file with any error writes nothing. Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="catalogue JSON file")
        parser.add_argument("--dry-run", action="store_true", help="validate and report the changes, write nothing")

    def handle(self, *args, file: str, dry_run: bool, **options):
        try:
            text = Path(file).read_bytes()
        except OSError as exc:
            raise CommandError(f"{file}: cannot read: {exc.strerror}") from exc
        try:
            result = catalogue_import(document=document_load(text), dry_run=dry_run)
        except CatalogueFileError as exc:
            raise CommandError(f"{file}: {exc.summary()}\nNothing was written.") from exc
        for line in result.report():
            self.stdout.write(line)
