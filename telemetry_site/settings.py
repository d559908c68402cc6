"""Settings, all from the environment (see docs/configuration.md).

Zero-config locally: SQLite and a generated secret key under var/, the embedded Redis.
Production sets DEBUG=false, SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL and REDIS_URL.
"""

import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from operations.embedded_redis import default_url, write_private

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")  # optional, never committed

VAR_DIR = Path(env.str("TELEMETRY_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)  # the key, the database, Redis's password and data

DEBUG = env.bool("DEBUG", default=True)


def _secret_key() -> str:
    """SECRET_KEY or SECRET_KEY_FILE; in development one is generated once into var/."""
    if env.str("SECRET_KEY", default=""):
        return env.str("SECRET_KEY")
    if env.str("SECRET_KEY_FILE", default=""):
        return Path(env.str("SECRET_KEY_FILE")).read_text().strip()
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) is required when DEBUG is false.")
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        write_private(key_file, secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
PORT = env.int("PORT", default=8000)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "channels",
    "core",
    "coordination",
    "runs",
    "quality",
    "metrics",
    "traces",
    "approvals",
    "notifications",
    "alerts",
    "streaming",
    "operations",
    "chatops",
]

MIDDLEWARE = [
    "core.request_context.route_middleware",
    "django.middleware.security.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.views.UnavailableMiddleware",
]

ROOT_URLCONF = "telemetry_site.urls"
ASGI_APPLICATION = "telemetry_site.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "telemetry_site" / "templates"],  # the admin's header (navigation.py)
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "telemetry_site.navigation.staff_pages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at BEGIN so
    # concurrent writers (web, worker, beat) queue on the busy timeout instead of deadlocking.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": env.int("SQLITE_BUSY_TIMEOUT", default=20),
    }
    # Made here, for its owner only: SQLite would make it readable by all, and gives its -wal and
    # -shm files the database file's mode.
    sqlite_file = Path(DATABASES["default"]["NAME"])
    if DATABASES["default"]["NAME"] != ":memory:" and sqlite_file.parent.is_dir() and not sqlite_file.exists():
        write_private(sqlite_file, "")
else:
    options = DATABASES["default"].setdefault("OPTIONS", {})
    # The server-side bound statements of core.fastpaths.bulk_insert (Django's own queries are bound
    # on the client and never prepared) are prepared on a connection after this many runs: a run
    # insert is planned once, not once a write. Empty for none: a pgbouncer before 1.21 in
    # transaction mode cannot keep prepared statements.
    if threshold := env.str("DATABASE_PREPARE_THRESHOLD", default="5"):
        options["prepare_threshold"] = int(threshold)
    if env.bool("DATABASE_POOL", default=True):
        # Under ASGI each request runs in a fresh thread: without a pool every request would open a
        # new PostgreSQL connection. Django's psycopg pool hands connections over instead.
        options["pool"] = {"min_size": 1, "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=20), "timeout": 10}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Covering indexes (Index.include) are PostgreSQL's; SQLite builds them on their key columns alone.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

# --- Redis: cache, channel layer, Celery broker ------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="") or default_url(VAR_DIR)
# Connections each web process may open to Redis: for quick commands (a burst beyond waits for
# one), and for blocking reads (one per streams consume held open; see core.redis).
REDIS_MAX_CONNECTIONS = env.int("REDIS_MAX_CONNECTIONS", default=50)
REDIS_MAX_BLOCKING_CONNECTIONS = env.int("REDIS_MAX_BLOCKING_CONNECTIONS", default=1000)
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cache",
        # Version 1's values were pickles, which JSON cannot read: they are left to expire unread.
        "VERSION": 2,
        "OPTIONS": {
            # Not pickle (django-redis's default): whoever can write to Redis could run code here.
            "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
            "SOCKET_CONNECT_TIMEOUT": 2,
            "SOCKET_TIMEOUT": 5,
            "CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
            "CONNECTION_POOL_KWARGS": {"max_connections": REDIS_MAX_CONNECTIONS, "timeout": 10},
        },
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}
EVENT_STREAM_MAXLEN = env.int("EVENT_STREAM_MAXLEN", default=10_000)  # entries kept per event type (approximate)
HEARTBEAT_STALE_SECONDS = env.float("HEARTBEAT_STALE_SECONDS", default=60.0)  # silent this long: stale
AGENT_STATE_TTL = env.int("AGENT_STATE_TTL", default=24 * 3600)  # seconds an agent's live state outlives its last beat
REGISTRY_SYNC_SECONDS = env.float("REGISTRY_SYNC_SECONDS", default=3.0)  # how far the Agent rows may lag the beats
STALE_SWEEP_SECONDS = env.float("STALE_SWEEP_SECONDS", default=10.0)  # how often beat looks for stale agents
STALE_RUN_GRACE_SECONDS = env.float("STALE_RUN_GRACE_SECONDS", default=300.0)  # stale this long: its running runs time out
SIGNAL_DEFAULT_TTL = env.int("SIGNAL_DEFAULT_TTL", default=60)  # seconds a signal lives unless it says otherwise
LONG_WAIT_MAX_SECONDS = env.float("LONG_WAIT_MAX_SECONDS", default=60.0)  # longest one wait request is held
MCP_PROGRESS_SECONDS = env.float("MCP_PROGRESS_SECONDS", default=10.0)  # an MCP approval wait reports progress this often
# Bounds on what one agent key can consume (core.quotas; docs/operations.md). 0: no bound.
SIGNAL_MAX_PAYLOAD_BYTES = env.int("SIGNAL_MAX_PAYLOAD_BYTES", default=16 * 1024)  # a signal's payload, as JSON: 413
SIGNALS_PER_SENDER = env.int("SIGNALS_PER_SENDER", default=200)  # live signals an agent has sent: 429
SIGNALS_PER_INBOX = env.int("SIGNALS_PER_INBOX", default=100)  # live directed signals waiting for one agent: 429
SIGNAL_BROADCAST_WINDOW = env.int("SIGNAL_BROADCAST_WINDOW", default=100)  # broadcasts one take looks at
STREAM_ENTRY_MAX_BYTES = env.int("STREAM_ENTRY_MAX_BYTES", default=16 * 1024)  # an event published through the API: 413
STREAM_NEW_TYPES_PER_KEY = env.int("STREAM_NEW_TYPES_PER_KEY", default=50)  # event types a key without streams:admin creates: 429
AGENTS_PER_KEY = env.int("AGENTS_PER_KEY", default=1000)  # agent ids a glob key registers: 429
METRIC_NAMES_PER_KEY = env.int("METRIC_NAMES_PER_KEY", default=200)  # metric names a key creates: its points refused
METRIC_SERIES_PER_KEY = env.int("METRIC_SERIES_PER_KEY", default=5000)  # metric series (label sets) a key creates
HELD_WAITS_PER_KEY = env.int("HELD_WAITS_PER_KEY", default=20)  # waits (signals, approvals, consume) a key holds at once: 429
WEBSOCKETS_PER_KEY = env.int("WEBSOCKETS_PER_KEY", default=10)  # live feeds a key has open at once: refused
APPROVAL_REQUESTS_PER_MINUTE = env.int("APPROVAL_REQUESTS_PER_MINUTE", default=30)  # per key (each notifies reviewers): 429
APPROVAL_CONTEXT_MAX_BYTES = env.int("APPROVAL_CONTEXT_MAX_BYTES", default=64 * 1024)  # a request's context, as JSON: 413
HEARTBEAT_METADATA_MAX_BYTES = env.int("HEARTBEAT_METADATA_MAX_BYTES", default=16 * 1024)  # an agent's, as JSON: 413
LIVE_REPLAY_MAX_EVENTS = env.int("LIVE_REPLAY_MAX_EVENTS", default=10_000)  # events a live feed replays from `since`
SITE_URL = env.str("SITE_URL", default=f"http://127.0.0.1:{PORT}").rstrip("/")  # links in notifications
# EMAIL_URL: smtp://user:password@host:587/?tls=True (django-environ); by default mail is written to the log.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="telemetry@localhost")
EMAIL_TIMEOUT = 10  # seconds: a mail server that never answers must not hold a worker forever
APPROVAL_DEFAULT_TIMEOUT = env.float("APPROVAL_DEFAULT_TIMEOUT", default=3600.0)  # seconds a request waits for a person
APPROVAL_SWEEP_SECONDS = env.float("APPROVAL_SWEEP_SECONDS", default=10.0)  # how often beat expires overdue requests
ALERT_EVALUATE_SECONDS = env.float("ALERT_EVALUATE_SECONDS", default=15.0)  # how often beat evaluates the alert rules
DELIVERY_MAX_ATTEMPTS = env.int("DELIVERY_MAX_ATTEMPTS", default=12)  # then a delivery is failed (1 s, 2 s, 4 s... 10 min apart)
DELIVERY_RETRY_SECONDS = env.float("DELIVERY_RETRY_SECONDS", default=5.0)  # how often beat retries due deliveries
DELIVERY_RETENTION_DAYS = env.float("DELIVERY_RETENTION_DAYS", default=7)  # delivered messages are purged after
FORWARD_SECONDS = env.float("FORWARD_SECONDS", default=2.0)  # how often beat forwards new events to channels
# A webhook (or Slack) delivery ends by then, whatever the receiver does (notifications.sending).
WEBHOOK_DEADLINE_SECONDS = env.float("WEBHOOK_DEADLINE_SECONDS", default=30.0)
# false: webhooks to loopback, private, link-local or other non-public addresses are refused, checked
# on the address the name resolves to when the delivery is sent (for a server that runs on a shared
# network where the people who create channels should not reach its neighbours).
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env.bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", default=True)
SLACK_API_URL = env.str("SLACK_API_URL", default="https://slack.com/api/").rstrip("/") + "/"  # Slack apps' Web API
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=[])  # addresses or networks that may scrape /metrics unkeyed
# Requests without an Authorization header from these addresses or networks act as the agent key
# named KEYLESS_KEY (for clients that send no key, such as local-telemetry's); none by default.
KEYLESS_WRITES_FROM = env.list("KEYLESS_WRITES_FROM", default=[])
KEYLESS_KEY = env.str("KEYLESS_KEY", default="")
METRICS_RETENTION_DAYS = env.float("METRICS_RETENTION_DAYS", default=30)  # raw metric points
TRACES_RETENTION_DAYS = env.float("TRACES_RETENTION_DAYS", default=7)  # spans, with their events
AGGREGATES_RETENTION_DAYS = env.float("AGGREGATES_RETENTION_DAYS", default=90)  # metric minute rollups
METRICS_JSON_EXPORT_DIR = env.str("METRICS_JSON_EXPORT_DIR", default="")  # set: beat writes the series there as JSON
METRICS_JSON_EXPORT_SECONDS = env.float("METRICS_JSON_EXPORT_SECONDS", default=3600)
METRICS_JSON_EXPORT_MAX_FILES = env.int("METRICS_JSON_EXPORT_MAX_FILES", default=24)  # older files are deleted
OTLP_EXPORT_ENDPOINT = env.str("OTLP_EXPORT_ENDPOINT", default="")  # set: beat sends spans and metrics there (OTLP/HTTP)
OTLP_EXPORT_HEADERS = env.dict("OTLP_EXPORT_HEADERS", default={})  # e.g. "Authorization=Bearer xyz"
OTLP_EXPORT_SECONDS = env.float("OTLP_EXPORT_SECONDS", default=60)
METRICS_MAX_SERIES = env.int("METRICS_MAX_SERIES", default=1000)  # label sets per metric name: more is refused
LIVE_CLIENT_BUFFER = env.int("LIVE_CLIENT_BUFFER", default=4 * 1024 * 1024)  # bytes a websocket client may lag
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Celery's Django fixup closes the database connections around every task, and with prefork and
# the pool the whole pool: each task opened a new PostgreSQL connection (a backend forked). Told
# to reuse them it closes them every 2 x this many tasks; between, telemetry_site.celery hands
# each task's connection back after it as Django does after a request (one that failed is closed).
CELERY_DB_REUSE_MAX = 500
WORKER_TICK_SECONDS = env.float("WORKER_TICK_SECONDS", default=15.0)  # beat's tick that shows worker and beat are up
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {"task": "core.tasks.record_worker_heartbeat", "schedule": WORKER_TICK_SECONDS},
    "sync-agent-registry": {"task": "coordination.tasks.sync_agent_registry", "schedule": REGISTRY_SYNC_SECONDS},
    "sweep-stale-agents": {"task": "coordination.tasks.sweep_stale_agents", "schedule": STALE_SWEEP_SECONDS},
    "expire-approvals": {"task": "approvals.tasks.expire_approvals", "schedule": APPROVAL_SWEEP_SECONDS},
    "remind-approvals": {"task": "approvals.tasks.remind_approvals", "schedule": APPROVAL_SWEEP_SECONDS},
    "evaluate-alert-rules": {"task": "alerts.tasks.evaluate_alert_rules", "schedule": ALERT_EVALUATE_SECONDS},
    "retry-due-deliveries": {"task": "notifications.tasks.retry_due_deliveries", "schedule": DELIVERY_RETRY_SECONDS},
    "forward-events": {"task": "notifications.tasks.forward_events", "schedule": FORWARD_SECONDS},
    "purge-old-deliveries": {"task": "notifications.tasks.purge_old_deliveries", "schedule": 3600.0},
    "time-out-abandoned-runs": {"task": "runs.tasks.time_out_abandoned_runs", "schedule": 60.0},
    "refresh-rollups": {"task": "quality.tasks.refresh_rollups", "schedule": 60.0},
    "purge-old-records": {"task": "operations.tasks.purge_old_records", "schedule": 3600.0},
    "export-metrics-json": {"task": "metrics.tasks.export_metrics_json", "schedule": METRICS_JSON_EXPORT_SECONDS},
    "export-otlp": {"task": "operations.tasks.export_otlp", "schedule": OTLP_EXPORT_SECONDS},
}

# --- Auth, sessions, security ------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_PROXY", default=False) else None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^health$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)  # the header only; listing is a manual step
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"},
}
SERVESTATIC_USE_FINDERS = DEBUG  # in production `collectstatic` fills STATIC_ROOT (make run does)
if DEBUG:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}

# --- API ---------------------------------------------------------------------------------
# Largest JSON body the API parses; the runs batch endpoint allows BATCH_MAX_BODY_BYTES.
OTLP_MAX_BODY_BYTES = env.int("OTLP_MAX_BODY_BYTES", default=8 * 1024 * 1024)  # an OTLP export, unzipped
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=256 * 1024)
BATCH_MAX_BODY_BYTES = env.int("BATCH_MAX_BODY_BYTES", default=16 * 1024 * 1024)
BATCH_MAX_ITEMS = env.int("BATCH_MAX_ITEMS", default=1000)
DATA_UPLOAD_MAX_MEMORY_SIZE = BATCH_MAX_BODY_BYTES
# The largest body the web server reads at all, before any view: 413 beyond (core.request_body).
HTTP_MAX_BODY_BYTES = env.int("HTTP_MAX_BODY_BYTES", default=max(API_MAX_BODY_BYTES, BATCH_MAX_BODY_BYTES, OTLP_MAX_BODY_BYTES))
# A web process answers new requests 429 beyond this many in progress (long waits excepted), or
# while its event loop runs this late (core.overload); 0: no limit.
WEB_MAX_IN_FLIGHT = env.int("WEB_MAX_IN_FLIGHT", default=200)
WEB_MAX_LOOP_LAG_MS = env.int("WEB_MAX_LOOP_LAG_MS", default=250)
# Threads per web process that run the sync code (DRF views) of requests carrying an agent key.
WEB_SYNC_THREADS = max(1, env.int("WEB_SYNC_THREADS", default=4))
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="") or None  # e.g. "600/min" per key; unset or empty: no limit

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.authentication.AgentKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "core.authentication.KeylessAuthentication",  # after the session: a browser's login comes first
    ],
    "DEFAULT_PERMISSION_CLASSES": ["core.permissions.HasScope"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_THROTTLE_CLASSES": ["core.throttling.KeyRateThrottle"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
    # The rate limit counts a client without a key or session by REMOTE_ADDR: the address uvicorn
    # saw, or the one a trusted proxy forwarded (--proxy-headers --forwarded-allow-ips). Without
    # this, DRF would take the X-Forwarded-For header itself, which any client writes.
    "NUM_PROXIES": 0,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Agent telemetry and coordination API",
    "DESCRIPTION": "Runs, events, heartbeats, signals and approvals for fleets of autonomous agents.",
    "VERSION": "1.0.0",
    "OAS_VERSION": "3.1.0",  # pydantic emits JSON Schema 2020-12 (type null), which 3.1 speaks
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # The schemes clients use; key-less requests (KeylessAuthentication) are an operator's setting.
    "AUTHENTICATION_WHITELIST": REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"][:2],
    # Swagger UI from our own static files: the machines it runs on may have no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "core.openapi.add_async_endpoints"],
}

# plain, or json: one JSON object a line (timestamp, level, logger, message, request_id), uvicorn's
# own lines and, in the worker and beat, Celery's included (core.logs).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT is plain or json, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "console": {"()": "core.logs.JsonFormatter"}
        if LOG_FORMAT == "json"
        else {"format": "%(levelname)s %(name)s: %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "console"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # Every few seconds beat sends a sweep and the worker runs it; a line each would bury the log.
    # Failures still show (they are warnings and errors).
    "loggers": {name: {"level": "WARNING"} for name in ("celery.beat", "celery.app.trace", "celery.worker.strategy", "httpx")},
}
if LOG_FORMAT == "json":
    # uvicorn's loggers have handlers of their own (its plain format); Celery would replace the root's.
    LOGGING["loggers"] |= {name: {"handlers": ["console"], "propagate": False} for name in ("uvicorn", "uvicorn.access")}
    CELERY_WORKER_HIJACK_ROOT_LOGGER = False
