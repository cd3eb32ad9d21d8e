"""Production settings: nothing insecure is defaulted; missing values stop start-up."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import env, fernet_keys

DEBUG = env.bool("DEBUG", default=False)
if DEBUG:
    raise ImproperlyConfigured("DEBUG must be off in production settings")

SECRET_KEY = env.str("SECRET_KEY")  # no default: ImproperlyConfigured when absent
if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("dev-only"):
    raise ImproperlyConfigured("SECRET_KEY must be a long random value in production")

# Vendor header values are encrypted at rest with these (docs/hardening.md): never derived here.
FIELD_ENCRYPTION_KEYS = fernet_keys(env.str("FIELD_ENCRYPTION_KEYS", default=""))
if not FIELD_ENCRYPTION_KEYS:
    raise ImproperlyConfigured(
        "FIELD_ENCRYPTION_KEYS must be set in production: comma-separated Fernet keys, the first encrypts "
        '(python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")'
    )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
ALLOW_DEMO_DATA = False

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Load balancers probe /health/ over plain HTTP: answer it instead of redirecting to HTTPS.
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
