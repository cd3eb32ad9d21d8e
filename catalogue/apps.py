from django.apps import AppConfig


class CatalogueConfig(AppConfig):
    name = "catalogue"
    verbose_name = "Catalogue"

    def ready(self) -> None:
        from . import api_schema  # noqa: F401  (registers the list endpoint's OpenAPI description)
        from . import signals

        # Cache maintenance, not behaviour: keeps Reward.targeting (the listing cache) in step
        # with targeting links changed through M2M managers or deleted with their target.
        signals.connect()
