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


def fernet_keys(raw: str) -> list[str]:
    """FIELD_ENCRYPTION_KEYS: comma-separated Fernet keys (32 url-safe base64 bytes each, as
    ``Fernet.generate_key()`` makes them). The first encrypts, every one decrypts."""
    from cryptography.fernet import Fernet
    from django.core.exceptions import ImproperlyConfigured

    keys = [key.strip() for key in raw.split(",") if key.strip()]
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError:
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS: key {position} is not a Fernet key (32 url-safe base64-encoded bytes)"
            ) from None
    return keys


def _fernet_key_from(secret: str) -> str:
    """Development and tests: a key derived from SECRET_KEY (changing SECRET_KEY then makes the
    values stored under it unreadable). production.py requires FIELD_ENCRYPTION_KEYS instead."""
    import base64
    import hashlib
    import hmac

    digest = hmac.new(secret.encode(), b"rewards_site FIELD_ENCRYPTION_KEYS v1", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


# Secrets stored in the database (vendor request header values) are encrypted with these keys
# (catalogue/encryption.py, docs/hardening.md "Secrets at rest"); rotation: put the new key
# first, run `manage.py reencrypt_secrets`, then drop the old key.
FIELD_ENCRYPTION_KEYS = fernet_keys(env.str("FIELD_ENCRYPTION_KEYS", default="")) or [_fernet_key_from(SECRET_KEY)]

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
    "drf_spectacular",  # OpenAPI schema (issuance/api/schema.py), served at /api/schema/
    "drf_spectacular_sidecar",  # Swagger UI's static files, served from here (no CDN)
    "csp",  # Content-Security-Policy header (CONTENT_SECURITY_POLICY below)
    "axes",  # login throttling of the admin and staff sign-in (AXES_* below)
    "catalogue",
    "issuance",
    "apiclients",  # after oauth2_provider: its admin replaces the toolkit's
    "staff",
]

MIDDLEWARE = [
    "rewards_site.observability.RequestIdMiddleware",  # first: every response carries X-Request-ID
    "rewards_site.hardening.ApiInputGuardMiddleware",  # API URLs with NUL characters: 400
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
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


# DATABASE_URL names a PgBouncer in transaction pooling mode (docs/scaling.md): no server-side
# cursors, and by default no prepared statements (PgBouncer before 1.21 cannot track them; set
# DATABASE_PREPARED_STATEMENTS=true behind 1.21+ with max_prepared_statements) and no jit startup
# option (PgBouncer refuses startup options; set jit = off for the app's role instead).
TRANSACTION_POOLING = env.bool("DATABASE_TRANSACTION_POOLING", default=False)


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
        _postgresql_options(db)
        if TRANSACTION_POOLING:
            # Behind PgBouncer in transaction mode a server session serves many clients, one
            # transaction at a time: a cursor held open across transactions (QuerySet.iterator)
            # would be another client's. docs/scaling.md, "Connection pooling".
            db["DISABLE_SERVER_SIDE_CURSORS"] = True
        if env.bool("DATABASE_PREPARED_STATEMENTS", default=not TRANSACTION_POOLING):
            # The hot path's statements (issuance.rawsql.cursor) are prepared once per
            # connection; Django's own cursors never prepare whatever this says.
            db.setdefault("OPTIONS", {})["prepare_threshold"] = 5
    return db


def _postgresql_options(db: dict) -> None:
    """JIT off for the app's PostgreSQL sessions (merged into any ``options`` the URL gives):
    an OLTP workload gains nothing from it, and the planner's estimates for the eligibility
    filter and other EXISTS-heavy queries cross the JIT thresholds and paid ~450 ms of LLVM
    compilation per call (docs/performance.md, "List API"). PgBouncer does not pass startup
    options through: there, ``DATABASE_TRANSACTION_POOLING=true`` (or ``DATABASE_JIT_OFF_OPTION=false``
    alone) drops the option, and ``ALTER ROLE <app role> SET jit = off`` does its work (docs/scaling.md)."""
    jit_option = env.bool("DATABASE_JIT_OFF_OPTION", default=not TRANSACTION_POOLING)
    if db.get("ENGINE") != "django.db.backends.postgresql" or not jit_option:
        return
    options = db.setdefault("OPTIONS", {})
    given = options.get("options", "")
    if "jit" not in given:
        options["options"] = f"{given} -c jit=off".strip()


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

# LOGGING: at the end of this file (JSON lines with the request id).

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
# The list API's in-memory index of a brand's rewards, kept per catalogue version
# (catalogue/list_index.py; PostgreSQL only). false: every call reads the database.
LIST_INDEX = env.bool("LIST_INDEX", default=True)
# An issue call's writes sent as one statement of data-modifying CTEs, with the new rows'
# ids taken beforehand (issuance/rawsql.py: batched; PostgreSQL only). false: one statement
# per write, as on SQLite.
ISSUE_WRITE_BATCH = env.bool("ISSUE_WRITE_BATCH", default=True)
# REWARD-level limits read what their window consumed from the hourly sums PostgreSQL keeps
# (issuance.models.RewardUsage) plus the lines of the window's first, partial hour. false: from
# every line in the window, as on SQLite (the bench's baseline: bench/reward_limit_history.py).
LIMIT_REWARD_USAGE = env.bool("LIMIT_REWARD_USAGE", default=True)
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
    _postgresql_options(DATABASES["replica"])
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

# --- API contract and hardening (docs/hardening.md) -------------------------------------------
# OpenAPI schema of the API (issuance/api/schema.py, catalogue/api_schema.py) at /api/schema/,
# Swagger UI at /api/docs/ from drf-spectacular-sidecar's files (no CDN).
REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] = "drf_spectacular.openapi.AutoSchema"
SPECTACULAR_SETTINGS = {
    "TITLE": "Rewards Catalogue API",
    "DESCRIPTION": (
        "Self-hosted re-implementation of the Capillary Rewards Catalogue (Marvel) API: issue a "
        "reward, issue rewards in bulk, issue in connected orgs (v1.1), send a validation code, "
        "and list a customer's rewards. Every error answers with the spec's status block "
        '`{"status": {"success": false, "code": N, "message": "..."}}`. Choices where the '
        "spec is silent: docs/issuance.md and docs/list-api.md."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "persistAuthorization": False, "displayOperationId": True},
    "COMPONENT_SPLIT_REQUEST": True,
    # The API's own classes only: sessions work for the staff's browsers but are no API contract.
    "AUTHENTICATION_WHITELIST": [
        "issuance.api.authentication.CachedBasicAuthentication",
        "issuance.api.authentication.ApiClientTokenAuthentication",
    ],
    "PREPROCESSING_HOOKS": ["issuance.api.schema.only_api_endpoints"],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "issuance.api.schema.postprocess"],
}

# Content-Security-Policy on every response (django-csp). The pages load scripts and styles
# from this site only: the staff pages' htmx and Chart.js are vendored (staff/static/staff/vendor),
# the admin's and Swagger UI's files are served from STATIC_URL. No inline script anywhere.
# Inline style attributes are refused except these exact ones ('unsafe-hashes' + their hashes):
# the admin's coupon-series list marks a low pool in red (catalogue/admin.py).
CSP_STYLE_ATTRIBUTES = ["color: #ba2121"]


def _csp_hash(text: str) -> str:
    import base64
    import hashlib

    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-hashes'", *map(_csp_hash, CSP_STYLE_ATTRIBUTES)],
        "img-src": ["'self'", "data:"],  # Swagger UI's stylesheet draws its icons from data: URIs
        "font-src": ["'self'"],
        "connect-src": ["'self'"],  # htmx polling, Swagger UI's "try it out"
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Admin and staff sign-in: after AXES_FAILURE_LIMIT failed attempts for one username from one
# address, that pair is locked for AXES_COOLOFF_MINUTES (HTTP 429). API calls are not counted:
# tills authenticate without django.contrib.auth.authenticate(), so a wrong password cannot lock a till.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]  # noqa: F405  (last, as django-axes asks)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.int("AXES_COOLOFF_MINUTES", default=15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "rewards_site.observability.client_ip"
# Reverse proxies in front of the app that append to X-Forwarded-For (0: use REMOTE_ADDR).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# OAuth2 per RFC 9700 (the OAuth 2.0 Security BCP; `check --deploy` warns otherwise). Only the
# client-credentials grant is used here, so the browser grants' rules cost nothing; tokens are
# stored as checksums, never in plaintext.
OAUTH2_PROVIDER.update(
    {
        "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
        "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
        "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
        "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
        "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
        "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
        "REFRESH_TOKEN_REUSE_PROTECTION": True,
        "ALLOWED_REDIRECT_URI_SCHEMES": ["https"],
    }
)

# Request size limits. JSON bodies of the API: API_MAX_BODY_BYTES (the parser reads at most one
# byte more, then answers 413). Form posts (admin, staff pages): DATA_UPLOAD_MAX_MEMORY_SIZE.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2 * 1024 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = env.int("DATA_UPLOAD_MAX_NUMBER_FIELDS", default=1000)
if API_MAX_BODY_BYTES < 1024 or DATA_UPLOAD_MAX_MEMORY_SIZE < 1024 or API_MAX_BULK_REWARDS < 1:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "API_MAX_BODY_BYTES and DATA_UPLOAD_MAX_MEMORY_SIZE must be at least 1024, API_MAX_BULK_REWARDS at least 1"
    )

# Logs: JSON lines on stderr, each with the request id (rewards_site/observability.py), secrets
# masked. LOG_FORMAT=text for plain lines in a terminal; ACCESS_LOG=false drops the per-request line.
ACCESS_LOG = env.bool("ACCESS_LOG", default=True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "rewards_site.observability.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "rewards_site.observability.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": env.str("LOG_FORMAT", default="json"),
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's 4xx warnings ("Unauthorized: /path") repeat the access line; 5xx stay errors.
        "django.request": {"level": "ERROR"},
        # Axes logs every sign-in attempt at INFO; failures and lock-outs are warnings.
        "axes": {"level": env.str("AXES_LOG_LEVEL", default="WARNING")},
    },
}
