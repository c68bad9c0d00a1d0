"""Settings for every environment, read from environment variables with safe defaults.

Without any variable set this is a production-safe configuration (DEBUG off) on the embedded
SQLite database; `make run` turns DEBUG on, production sets DATABASE_URL, REDIS_URL, SECRET_KEY
and ALLOWED_HOSTS.
"""

from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
import django_stubs_ext
from celery.schedules import crontab

from prm.email import email_settings
from prm.env import env_bool, env_int, env_list, env_str

# Generic Django classes (ModelAdmin[Model], ...) accept the type arguments mypy checks at run time too.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PRM_VAR_DIR", str(BASE_DIR / "var")))
# Local state (SQLite database, Celery filesystem broker, beat schedule) lives here.
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)
# The fallback key is only usable for local development; `check --deploy` flags it in production.
SECRET_KEY = env_str("SECRET_KEY", "django-insecure-local-development-only-key-change-me")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "program",
    # The stream of domain events and the change log every service writes to (events/).
    "events",
    "auditlog",
    "partners",
    "deals",
    "kpis",
    # Commission plans and the commission ledger (docs/economics.md).
    "economics",
    # Market development funds: budgets, requests, claims and their proof files (mdf/, docs/mdf.md).
    "mdf",
    "interchange",
    "dashboards",
    "portal",
    "api",
    # After auditlog, whose LogEntry admin it replaces with a read-only one.
    "audit",
    "notifications",
    # Consumers of domain events: signed webhooks (integrations/).
    "integrations",
    "account",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "ops.middleware.HealthProbeMiddleware",
    "prm.middleware.RejectNulMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Who acts through what (page, admin, API) for the audit trail; see prm/acting.py.
    "prm.acting.ActingContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # A statement cancelled by its timeout is a 503 page or API error (prm/database.py).
    "prm.middleware.QueryTimeoutMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "prm.urls"
WSGI_APPLICATION = "prm.wsgi.application"

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
                "notifications.context_processors.notifications",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
# PostgreSQL: prepare the statement every API request runs (token authentication) once per session.
# Turn off behind a connection pooler that resets sessions between transactions.
DB_PREPARED_STATEMENTS = env_bool("DB_PREPARED_STATEMENTS", True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets dashboard readers keep reading the published KPI set while a recompute writes.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file (not :memory:) so tests can start a real Celery worker on the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
# Requests that end (prm/database.py, docs/operations.md): PostgreSQL cancels a web request's
# statement after DB_STATEMENT_TIMEOUT_SECONDS, before gunicorn (`--timeout WEB_TIMEOUT_SECONDS`)
# kills its worker; the request gets a 503. Celery tasks and manage.py commands have their own.
WEB_TIMEOUT_SECONDS = env_int("WEB_TIMEOUT_SECONDS", 60)
DB_STATEMENT_TIMEOUT_SECONDS = env_int("DB_STATEMENT_TIMEOUT_SECONDS", 30)
TASK_STATEMENT_TIMEOUT_SECONDS = env_int("TASK_STATEMENT_TIMEOUT_SECONDS", 1800)
COMMAND_STATEMENT_TIMEOUT_SECONDS = env_int("COMMAND_STATEMENT_TIMEOUT_SECONDS", 0)
# PostgreSQL 14+: how often a running query checks that its client is still there.
DB_CLIENT_CHECK_SECONDS = env_int("DB_CLIENT_CHECK_SECONDS", 5)
if not 0 < DB_STATEMENT_TIMEOUT_SECONDS < WEB_TIMEOUT_SECONDS:
    raise ValueError(
        "DB_STATEMENT_TIMEOUT_SECONDS must be above 0 and below WEB_TIMEOUT_SECONDS (the gunicorn "
        f"worker timeout): got {DB_STATEMENT_TIMEOUT_SECONDS} and {WEB_TIMEOUT_SECONDS}"
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# "Remember me" on the login page keeps the session this long; unticked, it ends when the browser
# closes. A password change ends the user's other sessions (docs/notifications.md).
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 14 * 24 * 3600)
# How long a password reset link stays valid.
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3 * 24 * 3600)
# Password reset requests that send a mail, per entered address (any case) and per client address
# (ops/client_ip.py): "3/h", "20/d". Beyond either, the page answers as usual and sends nothing.
PASSWORD_RESET_RATE_LIMIT = env_str("PASSWORD_RESET_RATE_LIMIT", "3/h")
PASSWORD_RESET_CLIENT_RATE_LIMIT = env_str("PASSWORD_RESET_CLIENT_RATE_LIMIT", "10/h")

# --- Plausible values (program/validation.py, docs/domain.md) -------------------------------------
# Dates and datetimes the domain accepts run from 1 January of this year to this many years ahead.
PLAUSIBLE_EARLIEST_YEAR = env_int("PLAUSIBLE_EARLIEST_YEAR", 2000)
PLAUSIBLE_YEARS_AHEAD = env_int("PLAUSIBLE_YEARS_AHEAD", 10)

LANGUAGE_CODE = "en-us"
# Storage is always UTC; KPI periods use the program time zone from program.ProgramSettings.
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# One date format on every page (prm/formats/en/formats.py).
FORMAT_MODULE_PATH = ["prm.formats"]

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # Serves plotly.min.js straight from the installed plotly package (no CDN, no copy in the repo).
    "dashboards.staticfiles.PlotlyFinder",
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Uploads (partner logos). Never served from a URL of their own: a view checks who asks first.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))

# --- Partner onboarding: /apply/, invitations, partner logos (docs/domain.md) ----------------------
# Applications accepted per client address (ops/client_ip.py) and period: "5/h", "20/d" (django-ratelimit
# counts in the default cache; set CACHE_URL so that every web process shares the counters).
APPLY_RATE_LIMIT = env_str("APPLY_RATE_LIMIT", "5/h")
# The join source an application gets when its link names none (or an unknown one) and the applicant
# chose none, and the one referral links use; each is created on first need when no source has the key.
APPLY_DEFAULT_SOURCE_KEY = env_str("APPLY_DEFAULT_SOURCE_KEY", "website")
APPLY_REFERRAL_SOURCE_KEY = env_str("APPLY_REFERRAL_SOURCE_KEY", "referral")
# An invitation link works this many days, once.
INVITATION_DAYS = env_int("INVITATION_DAYS", 7)
# Partner logos: PNG, JPEG or WebP only, at most this many bytes and pixels a side.
LOGO_MAX_BYTES = env_int("LOGO_MAX_BYTES", 1024 * 1024)
LOGO_MAX_DIMENSION = env_int("LOGO_MAX_DIMENSION", 2000)
# MDF proof of performance (docs/mdf.md): PDF, PNG, JPEG or WebP files, checked by their content, at
# most this many bytes each and this many per claim; an approved request's claim deadline defaults to
# this many days after the activity ends.
MDF_PROOF_MAX_BYTES = env_int("MDF_PROOF_MAX_BYTES", 10 * 1024 * 1024)
MDF_PROOF_MAX_FILES = env_int("MDF_PROOF_MAX_FILES", 10)
MDF_CLAIM_DAYS = env_int("MDF_CLAIM_DAYS", 60)

# --- Security: production defaults, relaxed only when DEBUG is on (make run). -------------------
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Cache: throttle counters and the published-KPI response cache (api/caching.py). ----------
# CACHE_URL=redis://host:6379/1 shares them between web processes (docker-compose sets it; use a
# database of its own: clearing the cache flushes it). Unset: each process keeps its own.
CACHE_URL = env_str("CACHE_URL", "")
# Cached responses have a cache of their own, so they never push throttle counters out.
CACHES: dict[str, dict[str, Any]]
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {
        alias: {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": alias,
        }
        for alias in ("default", "kpi_responses")
    }
else:
    # Per process: a KPI page of 500 rows is ~125 KB, so 300 of them stay under ~40 MB a worker.
    CACHES = {
        alias: {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": alias,
            "OPTIONS": {"MAX_ENTRIES": env_int(variable, default)},
        }
        for alias, variable, default in (
            ("default", "CACHE_MAX_ENTRIES", 2000),
            ("kpi_responses", "KPI_RESPONSE_CACHE_MAX_ENTRIES", 300),
        )
    }
# A cached published-KPI response is keyed by the publication version, so it can never go stale;
# this only bounds how long an unused one takes room.
API_PUBLISHED_CACHE_SECONDS = env_int("API_PUBLISHED_CACHE_SECONDS", 3600)

# --- REST framework ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes anonymous requests answer 401, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "api.filters.FilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "api.schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "api.exceptions.api_exception_handler",
    # Per user (or client IP when anonymous); see docs/api.md.
    "DEFAULT_THROTTLE_RATES": {
        "auth": env_str("API_THROTTLE_AUTH", "30/minute"),
        "write": env_str("API_THROTTLE_WRITE", "600/minute"),
        "import": env_str("API_THROTTLE_IMPORT", "10/hour"),
        "compute": env_str("API_THROTTLE_COMPUTE", "30/minute"),
    },
}
# A body larger than this, or JSON nesting deeper, is refused with 413 / 400 (api/parsers.py);
# uploads (the import's zip) are files, not held in memory, and not bound by it.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2621440)
API_MAX_JSON_BYTES = env_int("API_MAX_JSON_BYTES", DATA_UPLOAD_MAX_MEMORY_SIZE)
# An import upload larger than this (bytes of zip) is queued as a job for a Celery worker instead of
# imported within the request (which the web statement timeout would cut short); so is any upload
# sent with `Prefer: respond-async`. docs/interchange.md.
IMPORT_INLINE_MAX_BYTES = env_int("IMPORT_INLINE_MAX_BYTES", 5 * 1024 * 1024)
API_MAX_JSON_DEPTH = env_int("API_MAX_JSON_DEPTH", 32)
SPECTACULAR_SETTINGS = {
    "TITLE": "PRM API",
    "DESCRIPTION": "Partners, deal registrations, deals, attribution and KPIs.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Separate request and response components, so read-only fields never appear as inputs.
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "PartnerStatusEnum": "partners.models.Partner.Status",
        "DealStatusEnum": "deals.models.Deal.Status",
        "RegistrationStatusEnum": "deals.models.DealRegistration.Status",
        "KpiRunStatusEnum": "kpis.models.KpiRun.Status",
        "KpiRunModeEnum": "kpis.models.KpiRun.Mode",
        "KpiRunTriggerEnum": "kpis.models.KpiRun.Trigger",
        "PartnerUserRoleEnum": "partners.models.PartnerUser.Role",
        "TouchKindEnum": "deals.models.Touch.Kind",
        "JoinSourceKindEnum": "partners.models.JoinSource.Kind",
        "PartnerTypeEnum": "partners.models.Partner.Type",
        "CostCategoryEnum": "kpis.models.CostEntry.Category",
        "KpiMetricEnum": "kpis.metrics.METRIC_NAMES",
        "TargetMetricEnum": "kpis.metrics.TARGETABLE_METRICS",
        "CommissionRuleKindEnum": "economics.models.CommissionRule.Kind",
        "CommissionEntryKindEnum": "economics.models.CommissionEntry.Kind",
        "CommissionEntryStatusEnum": "economics.models.CommissionEntry.Status",
        "CommissionBasisEnum": "economics.models.Basis",
        "PayoutBatchStatusEnum": "economics.payout_models.PayoutBatch.Status",
        "PayoutStatusEnum": "economics.payout_models.Payout.Status",
    },
}

# --- KPI runs that recover by themselves (docs/kpis.md) ----------------------------------------
# The process executing a run stamps its heartbeat this often; a running run whose heartbeat is
# older than the lease has lost its worker and is replaced by the reaper, a beat task run this often.
KPI_RUN_HEARTBEAT_SECONDS = env_int("KPI_RUN_HEARTBEAT_SECONDS", 15)
KPI_RUN_LEASE_SECONDS = env_int("KPI_RUN_LEASE_SECONDS", 120)
if not 0 < 2 * KPI_RUN_HEARTBEAT_SECONDS <= KPI_RUN_LEASE_SECONDS:
    raise ValueError("KPI_RUN_LEASE_SECONDS must be at least twice KPI_RUN_HEARTBEAT_SECONDS (> 0)")
# A queued run that no worker took for this long is sent to its queue again (its message may be lost).
KPI_RUN_QUEUED_RESEND_SECONDS = env_int("KPI_RUN_QUEUED_RESEND_SECONDS", 300)
# The reaper replaces a run whose worker died this many times in a row once, then gives up.
KPI_RUN_MAX_ATTEMPTS = env_int("KPI_RUN_MAX_ATTEMPTS", 3)
KPI_REAPER_SECONDS = env_int("KPI_REAPER_SECONDS", 60)
# The queue beat sends the reaper to (empty: the default queue); a worker must listen on it.
KPI_REAPER_QUEUE = env_str("KPI_REAPER_QUEUE", "")

# --- Celery -----------------------------------------------------------------------------------
# Production uses Redis. Without REDIS_URL (make run, make test on a bare machine) Celery uses
# kombu's filesystem transport, so the worker and beat still run for real, with no server.
REDIS_URL = env_str("REDIS_URL", "")
CELERY_FILESYSTEM_BROKER_DIR = VAR_DIR / "celery-broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_FILESYSTEM_BROKER_DIR / "out"),
        "data_folder_out": str(CELERY_FILESYSTEM_BROKER_DIR / "out"),
        "processed_folder": str(CELERY_FILESYSTEM_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_FILESYSTEM_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # How long Redis waits for the ack of a delivered task before delivering it again. Set, it is
    # used as is; unset (0), a worker derives it when it starts (kpis.recovery.visibility_timeout:
    # the longest measured KPI run times 3, at least 10 x (lease + reaper interval)).
    CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 0)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT or 10 * (KPI_RUN_LEASE_SECONDS + KPI_REAPER_SECONDS)
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# PostgreSQL: split each KPI run into this many chunks that several Celery workers share (1: whole).
KPI_CHUNKS = env_int("KPI_CHUNKS", 1)
# The stored pipeline forecasts kept (kpis.forecast_store): the latest, and a few before it.
FORECAST_SNAPSHOTS_KEPT = env_int("FORECAST_SNAPSHOTS_KEPT", 3)
KPI_NIGHTLY_HOUR = env_int("KPI_NIGHTLY_HOUR", 2)
KPI_NIGHTLY_MINUTE = env_int("KPI_NIGHTLY_MINUTE", 30)
# --- Webhooks (integrations/, docs/integrations.md) ---------------------------------------------
# One attempt waits this long for the receiver (connect, send and read each).
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10)
# Failed attempts are retried after 30 s, 1, 2, 4 ... minutes (capped at an hour), each x0.5-1.5
# at random, for this long after the event; then the delivery fails and an endpoint with no
# success in that time is disabled and its owner told.
WEBHOOK_RETRY_BASE_SECONDS = env_int("WEBHOOK_RETRY_BASE_SECONDS", 30)
WEBHOOK_RETRY_MAX_SECONDS = env_int("WEBHOOK_RETRY_MAX_SECONDS", 3600)
WEBHOOK_RETRY_WINDOW_SECONDS = env_int("WEBHOOK_RETRY_WINDOW_SECONDS", 24 * 3600)
# An attempt in flight is leased this long (0: twice the timeout plus 30 s); a worker that dies
# mid-attempt leaves it to expire, then the requeue (every WEBHOOK_REQUEUE_SECONDS) sends it again.
WEBHOOK_LEASE_SECONDS = env_int("WEBHOOK_LEASE_SECONDS", 0)
WEBHOOK_REQUEUE_SECONDS = env_int("WEBHOOK_REQUEUE_SECONDS", 60)
# The Celery queue of delivery tasks (empty: the default queue).
WEBHOOK_QUEUE = env_str("WEBHOOK_QUEUE", "")
# Characters of the receiver's answer kept in the delivery log.
WEBHOOK_RESPONSE_EXCERPT = 500
# SSRF guard: webhooks go only to public addresses. 1 also allows loopback (127.0.0.0/8, ::1):
# for tests and a receiver on the same machine, never in a shared deployment.
WEBHOOK_ALLOW_LOOPBACK = env_bool("WEBHOOK_ALLOW_LOOPBACK", False)
# Idempotency-Key: how long a key's first response is kept for replay.
IDEMPOTENCY_KEY_HOURS = env_int("IDEMPOTENCY_KEY_HOURS", 24)

CELERY_BEAT_SCHEDULE = {
    "recompute-kpis-nightly": {
        "task": "kpis.tasks.recompute_kpis",
        "schedule": crontab(hour=KPI_NIGHTLY_HOUR, minute=KPI_NIGHTLY_MINUTE),
        "kwargs": {"trigger": "nightly", "mode": "incremental"},
    },
    "expire-registrations": {
        "task": "deals.tasks.expire_registrations",
        "schedule": crontab(minute=15),
    },
    "reap-kpi-runs": {
        "task": "kpis.tasks.reap_kpi_runs",
        "schedule": float(KPI_REAPER_SECONDS),
        # A reaper message older than its interval is dropped: the next one does the same work.
        "options": {"expires": KPI_REAPER_SECONDS}
        | ({"queue": KPI_REAPER_QUEUE} if KPI_REAPER_QUEUE else {}),
    },
    # The commission ledger (economics/): pending entries for what was won or approved, clawbacks.
    "build-commission-ledger-nightly": {
        "task": "economics.tasks.build_commission_ledger",
        "schedule": crontab(hour=3, minute=15),
    },
    "warn-expiring-registrations": {
        "task": "deals.tasks.warn_expiring_registrations",
        "schedule": crontab(hour=7, minute=0),
    },
    # Approved MDF requests past their claim deadline with no claim give their funds back (docs/mdf.md).
    "expire-mdf-requests": {
        "task": "mdf.tasks.expire_requests",
        "schedule": crontab(hour=0, minute=20),
    },
    "requeue-webhook-deliveries": {
        "task": "integrations.tasks.requeue_webhook_deliveries",
        "schedule": float(WEBHOOK_REQUEUE_SECONDS),
        "options": {"expires": WEBHOOK_REQUEUE_SECONDS} | ({"queue": WEBHOOK_QUEUE} if WEBHOOK_QUEUE else {}),
    },
    "expire-idempotency-keys": {
        "task": "api.tasks.expire_idempotency_keys",
        "schedule": crontab(minute=40),
    },
    "requeue-import-jobs": {
        "task": "interchange.tasks.requeue_import_jobs",
        "schedule": 600.0,
        "options": {"expires": 600},
    },
    "requeue-pending-emails": {
        "task": "notifications.tasks.requeue_pending_emails",
        "schedule": 60.0,
        # A requeue message older than its interval is dropped: the next one does the same work.
        "options": {"expires": 60},
    },
}

# --- Email and notifications (notifications/, docs/notifications.md) ---------------------------
# EMAIL_URL: smtp://user:pass@host:25, smtp+tls://user:pass@host:587 (STARTTLS), smtp+ssl://host:465,
# console://, file:///absolute/folder, ... (dj-email-url; user and password URL-quoted). Unset: every
# email is written as a file under var/mail, so nothing leaves the machine until SMTP is set.
EMAIL_URL = env_str("EMAIL_URL", "")
EMAIL_DEFAULT_FILE_PATH = VAR_DIR / "mail"
globals().update(email_settings(EMAIL_URL, default_file_path=EMAIL_DEFAULT_FILE_PATH))
EMAIL_FROM = env_str("EMAIL_FROM", "PRM <prm@localhost>")
DEFAULT_FROM_EMAIL = EMAIL_FROM
SERVER_EMAIL = EMAIL_FROM
# Receives registration_submitted when the partner has no manager, and application_received.
NOTIFICATIONS_PROGRAM_INBOX = env_str("NOTIFICATIONS_PROGRAM_INBOX", "")
# The address links in emails start with (no trailing slash needed).
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")
# Delivery: a temporary SMTP failure is retried after 1, 2, 4 ... minutes (capped), up to this many
# attempts in all; then the email is marked failed.
EMAIL_MAX_ATTEMPTS = env_int("EMAIL_MAX_ATTEMPTS", 5)
EMAIL_RETRY_BACKOFF_SECONDS = env_int("EMAIL_RETRY_BACKOFF_SECONDS", 60)
EMAIL_RETRY_BACKOFF_MAX_SECONDS = env_int("EMAIL_RETRY_BACKOFF_MAX_SECONDS", 3600)
# Warn a partner once when a registration's protection ends within this many days.
REGISTRATION_EXPIRY_WARNING_DAYS = env_int("REGISTRATION_EXPIRY_WARNING_DAYS", 7)

# --- Health probes: /healthz and /readyz (ops/health.py) ---------------------------------------
# Answered by ops.middleware.HealthProbeMiddleware before the Host header is validated, so a probe
# may send any Host; exempt from the HTTPS redirect, since orchestrators probe over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# /readyz fails when the last successful KPI run is older than this: the nightly run plus margin.
READYZ_KPI_MAX_AGE_HOURS = env_int("READYZ_KPI_MAX_AGE_HOURS", 26)
# Each dependency check (database, broker) gives up after this many seconds.
READYZ_CHECK_TIMEOUT_SECONDS = env_int("READYZ_CHECK_TIMEOUT_SECONDS", 2)

# --- Login lockout (django-axes): every password check, per (username, client address) ---------
# /login/, /admin/login/ and HTTP Basic on the API token endpoint all go through authenticate(),
# which the first backend guards. Unlock: `manage.py axes_reset_username NAME` (see axes_reset*).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
# Counted from the last failure; 0: locked until an operator resets the pair.
AXES_COOLOFF_MINUTES = env_int("AXES_COOLOFF_MINUTES", 15)
AXES_COOLOFF_TIME = timedelta(minutes=AXES_COOLOFF_MINUTES) if AXES_COOLOFF_MINUTES > 0 else None
# Attempts while locked are refused without being counted, so the retry time shown stays true.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
# axes logs an INFO banner in every process that loads Django (each manage.py command, each worker).
AXES_VERBOSE = env_bool("AXES_VERBOSE", False)
AXES_LOCKOUT_CALLABLE = "ops.lockout.lockout_response"
AXES_USERNAME_CALLABLE = "ops.lockout.lockout_username"
AXES_CLIENT_IP_CALLABLE = "ops.client_ip.client_ip_address"
# Reverse proxies in front of the app that append to X-Forwarded-For (0: use the connection's
# address). Set it to exactly the number of proxies: one too many lets clients forge their address.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

# --- Audit trail (django-auditlog; docs/audit.md) ------------------------------------------
# One correlation id per request, task or command groups the entries it made.
AUDITLOG_CID_GETTER = "prm.acting.correlation_id"
# Changes are stored as text on both sides ("1000.00" -> "1500.00"), as auditlog does by default.
AUDITLOG_STORE_JSON_CHANGES = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
