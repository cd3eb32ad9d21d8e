"""Settings for the test suite. ``DATABASE_URL`` selects the database (PostgreSQL in CI)."""

from .base import *  # noqa: F403  (settings modules are the one place a star import is the idiom)

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
