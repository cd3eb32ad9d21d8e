"""Settings shared by every environment. Every knob comes from the environment.

Development defaults (DEBUG on, a throwaway secret key, SQLite) apply only here;
``production.py`` refuses to start without real values.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key-do-not-use-in-production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "oauth2_provider",
    "catalogue",
    "issuance",
    "apiclients",  # after oauth2_provider: its admin replaces the toolkit's
    "staff",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "rewards_site.urls"
WSGI_APPLICATION = "rewards_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database_from_env() -> dict:
    default_sqlite = f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"
    db = env.db_url("DATABASE_URL", default=default_sqlite)
    if db["ENGINE"] == "django.db.backends.sqlite3":
        # Concurrent writers queue on the write lock (BEGIN IMMEDIATE + busy
        # timeout) instead of failing with "database is locked"; WAL lets
        # readers go on while one writer works.
        db.setdefault("OPTIONS", {})
        db["OPTIONS"].update(
            {
                "timeout": env.int("SQLITE_BUSY_TIMEOUT", default=30),
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            }
        )
    else:
        db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
        db["CONN_HEALTH_CHECKS"] = True
    return db


DATABASES = {"default": _database_from_env()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))

LOGIN_URL = "admin:login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "COERCE_DECIMAL_TO_STRING": False,
    "UNAUTHENTICATED_USER": None,
}

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")

# Demo data may be loaded only where this is on; production.py forces it off.
ALLOW_DEMO_DATA = env.bool("ALLOW_DEMO_DATA", default=True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

REST_FRAMEWORK.update(
    {
        # docs/permissions.md. Sessions only with CSRF (SessionAuthentication enforces it).
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "issuance.api.authentication.CachedBasicAuthentication",
            "issuance.api.authentication.ApiClientTokenAuthentication",
            "rest_framework.authentication.SessionAuthentication",
        ],
        "DEFAULT_RENDERER_CLASSES": ["issuance.api.renderers.ContractJSONRenderer"],
        "DEFAULT_PARSER_CLASSES": ["issuance.api.parsers.ContractJSONParser"],
        "EXCEPTION_HANDLER": "issuance.api.exceptions.contract_exception_handler",
    }
)

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "rewards"}}
API_AUTH_CACHE = "default"
API_AUTH_CACHE_SECONDS = env.int("API_AUTH_CACHE_SECONDS", default=300)
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)
API_MAX_BULK_REWARDS = env.int("API_MAX_BULK_REWARDS", default=100)

# OAuth2 (django-oauth-toolkit): client-credentials tokens of apiclients.ApiClient only.
OAUTH2_ACCESS_TOKEN_SECONDS = env.int("OAUTH2_ACCESS_TOKEN_SECONDS", default=900)
if not 60 <= OAUTH2_ACCESS_TOKEN_SECONDS <= 86400:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("OAUTH2_ACCESS_TOKEN_SECONDS must be between 60 and 86400")
OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": OAUTH2_ACCESS_TOKEN_SECONDS,
    "SCOPES": {"rewards:issue": "Issue rewards", "rewards:read": "List rewards"},
    "DEFAULT_SCOPES": ["rewards:read"],
    "SCOPES_BACKEND_CLASS": "apiclients.scopes.ApiClientScopes",
    "OAUTH2_VALIDATOR_CLASS": "apiclients.oauth.ApiClientOAuth2Validator",
}
# The toolkit's default, named: makemigrations resolves foreign keys to it through this.
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"

# List API (docs/list-api.md): a `size` above LIST_MAX_PAGE_SIZE is clamped to it;
# page=0 (no pagination) returns at most LIST_UNPAGED_CEILING rewards.
LIST_MAX_PAGE_SIZE = env.int("LIST_MAX_PAGE_SIZE", default=100)
LIST_UNPAGED_CEILING = env.int("LIST_UNPAGED_CEILING", default=1000)
if LIST_MAX_PAGE_SIZE < 1 or LIST_UNPAGED_CEILING < 1:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("LIST_MAX_PAGE_SIZE and LIST_UNPAGED_CEILING must be at least 1")

# --- Operations, performance and scaling (docs/performance.md, docs/scaling.md) ---------------
# A lost database connection answers 503 with the status block, not 500 (rewards_site/middleware.py);
# list reads may go to a streaming replica (rewards_site/db_router.py).
MIDDLEWARE += [  # noqa: F405
    "rewards_site.middleware.DatabaseUnavailableMiddleware",
    "rewards_site.middleware.ReplicaReadsMiddleware",
]
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
if DATABASE_REPLICA_URL:
    from rewards_site.db_router import replica_database

    DATABASES["replica"] = replica_database(DATABASE_REPLICA_URL, DATABASES["default"])
    DATABASE_ROUTERS = ["rewards_site.db_router.ReplicaRouter"]
# Views (URL names) whose reads may be served by the replica, and the apps whose tables they may
# read there; everything else (auth, tokens, every write and every read inside a transaction) stays
# on the primary.
REPLICA_READ_URL_NAMES = env.list("REPLICA_READ_URL_NAMES", default=["reward-list"])
REPLICA_READ_APPS = env.list("REPLICA_READ_APPS", default=["catalogue", "issuance"])

# Bench-only views (benchsupport/: baselines for bench/): never on unless BENCH_VIEWS=1, and
# refused at start-up under the production settings.
BENCH_VIEWS = env.bool("BENCH_VIEWS", default=False)
if BENCH_VIEWS:
    INSTALLED_APPS += ["benchsupport"]

# Staff pages under /staff/ (docs/staff-pages.md).
# The web process starts a background thread for bulk goodwill jobs when this is on (fine
# for `make run` and a single-process server); in production turn it off and run
# `python manage.py run_bulk_jobs` as its own process.
STAFF_BULK_WORKER_THREAD = env.bool("STAFF_BULK_WORKER_THREAD", default=True)
STAFF_BULK_MAX_ROWS = env.int("STAFF_BULK_MAX_ROWS", default=20000)
STAFF_BULK_MAX_UPLOAD_BYTES = env.int("STAFF_BULK_MAX_UPLOAD_BYTES", default=5 * 1024 * 1024)
STAFF_BULK_LEASE_SECONDS = env.int("STAFF_BULK_LEASE_SECONDS", default=60)
if STAFF_BULK_MAX_ROWS < 1 or STAFF_BULK_MAX_UPLOAD_BYTES < 1024 or STAFF_BULK_LEASE_SECONDS < 10:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "STAFF_BULK_MAX_ROWS must be at least 1, STAFF_BULK_MAX_UPLOAD_BYTES at least 1024 "
        "and STAFF_BULK_LEASE_SECONDS at least 10"
    )
