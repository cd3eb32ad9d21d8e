from django.apps import AppConfig
from django.db.models.signals import post_migrate


class StaffConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "staff"
    verbose_name = "Staff back office"

    def ready(self) -> None:
        from issuance.groups import groups_ensure

        # The staff issuers group holds view permissions of this app's models, which auth's
        # post_migrate handler creates only when this app's post_migrate is sent (after
        # issuance's): complete the groups again then.
        post_migrate.connect(groups_ensure, sender=self, dispatch_uid="staff_groups_ensure")
