from django.apps import AppConfig


class CatalogueConfig(AppConfig):
    name = "catalogue"
    verbose_name = "Catalogue"

    def ready(self) -> None:
        from . import api_schema  # noqa: F401  (registers the list endpoint's OpenAPI description)
