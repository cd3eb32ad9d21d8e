from django.apps import AppConfig


class ApiClientsConfig(AppConfig):
    name = "apiclients"
    verbose_name = "API clients (OAuth2)"
