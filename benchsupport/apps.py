from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class BenchSupportConfig(AppConfig):
    """Baselines for the benchmarks in bench/ (docs/performance.md). Installed, and its URLs
    included, only when BENCH_VIEWS=1; refused outright under the production settings."""

    name = "benchsupport"
    verbose_name = "Bench-only views"

    def ready(self) -> None:
        if settings.SETTINGS_MODULE.endswith(".production"):
            raise ImproperlyConfigured("BENCH_VIEWS must be off in production (bench-only views)")
