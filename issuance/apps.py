from django.apps import AppConfig
from django.db.models.signals import post_migrate


class IssuanceConfig(AppConfig):
    name = "issuance"
    verbose_name = "Issuance"

    def ready(self) -> None:
        from .groups import groups_ensure

        # After auth's own post_migrate handler has created the permissions.
        post_migrate.connect(groups_ensure, sender=self, dispatch_uid="issuance_groups_ensure")
