"""aibo settings: one module, everything from the environment (12-factor).

Nothing set means the embedded default: a SQLite file, the in-memory channel layer, Huey on
SQLite, a generated-and-persisted secret key, DEBUG off (`DEBUG=1` opts in) and plain HTTP on
this machine. `DATABASE_URL` and `REDIS_URL` switch the same code to PostgreSQL, channels-redis and
RedisHuey. `.env.example` lists every variable.
"""

from __future__ import annotations

import copy
import os
import secrets
import stat
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if not value:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}")


def env_int(name: str, default: int) -> int:
    value = env_str(name)
    try:
        return int(value) if value else default
    except ValueError as e:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from e


def env_list(name: str, default: list[str]) -> list[str]:
    value = env_str(name)
    return [item.strip() for item in value.split(",") if item.strip()] if value else default


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter (0700), an existing one tightened."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = path.stat().st_mode
    if mode & 0o077:
        # A shared directory such as /tmp (sticky) must not be made private under its users.
        if mode & stat.S_ISVTX:
            raise ImproperlyConfigured(f"AIBO_DATA_DIR must be aibo's own directory, not {path}")
        try:
            path.chmod(0o700)
        except PermissionError as e:
            raise ImproperlyConfigured(f"AIBO_DATA_DIR {path} is not aibo's: {e}") from e
    return path


def private_file(path: Path) -> Path:
    """``path`` as a file only its owner can read (0600): created so, or tightened."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return path


# Where the embedded default keeps its files (database, Huey queue, secret key): the keys are
# only as safe as these, so the directory is 0700 and every file in it 0600.
DATA_DIR = private_dir(Path(env_str("AIBO_DATA_DIR") or BASE_DIR / "var"))

DATABASE_URL = env_str("DATABASE_URL")
REDIS_URL = env_str("REDIS_URL")
EMBEDDED = not DATABASE_URL

# Off unless asked for: the debug page shows source, locals, emails and service URLs.
DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    if key := env_str("SECRET_KEY"):
        return key
    if not (EMBEDDED or DEBUG):
        raise ImproperlyConfigured("SECRET_KEY must be set in the scaled deployment")
    # One process on one machine: generate once and keep it, so sessions (and exchange keys
    # encrypted under it) survive restarts. Written whole, then linked: never half a key.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=DATA_DIR, prefix=".secret_key.")  # 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(64))
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process was first: use its key
        finally:
            os.unlink(tmp)
    return private_file(path).read_text().strip()


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if EMBEDDED or DEBUG else []
)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # Daphne only makes `runserver` an ASGI server (websockets included) for development; we
    # serve with uvicorn (`manage.py serve`), and daphne's app loads Twisted (~0.3 s) at start.
    *(["daphne"] if sys.argv[1:2] == ["runserver"] else []),
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.humanize",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "huey.contrib.djhuey",
    "ninja",  # the API's docs page and its Swagger UI, served from the package (no CDN)
    "aibo",
    "accounts",
    "market",
    "bots",
    "ai_advisor",
    "notifications",  # issue 17: above the other apps; they wake it by signals only
]

MIDDLEWARE = [
    "aibo.middleware.RequestIdMiddleware",
    "aibo.health.ProbeMiddleware",  # before anything reads the Host: container healthchecks
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "aibo.middleware.SessionIdleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
]

# Content-Security-Policy (django-csp): our own scripts and styles only, no inline code, no
# eval (htmx's allowEval is off in base.html), nothing framed, forms post only here. `'self'`
# covers the same-origin websockets (CSP 3).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    },
}
# Two-factor sign-in (django-otp): how authenticator apps label the entry, and the operators'
# admin never shows a user's TOTP key, QR code or recovery codes.
OTP_TOTP_ISSUER = "aibo"
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
# Signed-in sessions end after this long without a request (aibo.middleware renews an active
# session at most once a minute, so polling pages do not write the session on every request).
SESSION_COOKIE_AGE = env_int("SESSION_IDLE_SECONDS", 14 * 24 * 3600)

ROOT_URLCONF = "aibo.urls"
ASGI_APPLICATION = "aibo.asgi.application"
WSGI_APPLICATION = None

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
                "market.context_processors.feed",
                "accounts.context_processors.unreadable_credentials",
            ],
            # {% request_id %} for the error pages (Django renders 500.html without a context).
            "libraries": {"request_id": "aibo.logging"},
        },
    },
]

if DATABASE_URL:
    # A pool of connections per process (psycopg_pool), shared by its threads (Huey's workers,
    # the web server's thread pool): a request or a cycle borrows one and gives it back, instead
    # of each thread holding its own. DB_POOL=0 goes back to one persistent connection a thread.
    DB_POOL = env_bool("DB_POOL", True)
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL,
            conn_max_age=0 if DB_POOL else env_int("DB_CONN_MAX_AGE", 60),
            conn_health_checks=not DB_POOL,
        )
    }
    if DB_POOL:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DB_POOL_MIN_SIZE", 2),
            "max_size": env_int("DB_POOL_MAX_SIZE", 20),
            "timeout": env_int("DB_POOL_TIMEOUT", 30),  # seconds a thread waits for one
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": private_file(DATA_DIR / "aibo.sqlite3"),  # its -wal and -shm inherit 0600
            "OPTIONS": {
                # One process with a web server, a Huey consumer and the feed writes here:
                # WAL lets readers go on during a write, IMMEDIATE avoids upgrade deadlocks.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file, not memory: the browser tests' server thread shares the test database.
            "TEST": {"NAME": DATA_DIR / "test.sqlite3"},
        }
    }
# An optional read replica for market data (aibo.db_router): candles and prices read outside a
# transaction go there; writes and everything else stay on the primary.
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL")
if DATABASE_URL and DATABASE_REPLICA_URL:
    DATABASES["replica"] = {
        **dj_database_url.parse(DATABASE_REPLICA_URL, conn_max_age=0),
        "OPTIONS": copy.deepcopy(DATABASES["default"].get("OPTIONS", {})),
        "TEST": {"MIRROR": "default"},  # tests read the primary under this name
    }
DATABASE_ROUTERS = ["aibo.db_router.MarketReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "aibo.cache.RedisCache", "LOCATION": REDIS_URL}}
    # The pub/sub layer fans a group message out through Redis itself: fast with many clients.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
    HUEY = {
        "huey_class": "huey.PriorityRedisHuey",  # a sorted set: cycles before jobs
        "name": "aibo",
        "url": REDIS_URL,
        "immediate": False,
        "utc": True,
        "consumer": {"workers": env_int("HUEY_WORKERS", 4), "worker_type": "thread"},
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    HUEY = {
        "huey_class": "huey.SqliteHuey",
        "name": "aibo",
        "filename": str(private_file(DATA_DIR / "huey.sqlite3")),
        "immediate": False,
        "utc": True,
        "consumer": {"workers": env_int("HUEY_WORKERS", 2), "worker_type": "thread"},
    }

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "bots:dashboard"
LOGOUT_REDIRECT_URL = "accounts:login"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling: failures per (account, client) pair in the window; see the issue 10 block.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
USE_THOUSAND_SEPARATOR = False

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise expects it, even before collectstatic
NODE_MODULES = BASE_DIR / "node_modules"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # Front-end libraries arrive through npm and package-lock.json at install time.
    ("vendor/htmx", NODE_MODULES / "htmx.org" / "dist"),
    ("vendor/htmx-ext-ws", NODE_MODULES / "htmx-ext-ws" / "dist"),
    ("vendor/lightweight-charts", NODE_MODULES / "lightweight-charts" / "dist"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# With DEBUG off WhiteNoise serves collected files only, hashed and compressed: `make run` and
# the image run `collectstatic` (into DATA_DIR/static) before serving.
WHITENOISE_USE_FINDERS = DEBUG

# Security: strict in the scaled deployment, which sits behind TLS (`manage.py check --deploy`
# is clean there). The embedded default serves plain HTTP on this machine, so its cookies and
# redirects are HTTPS-only only with HTTPS=1 (a TLS proxy in front of `make run`).
HTTPS = env_bool("HTTPS", not (DEBUG or EMBEDDED))
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("TRUST_X_FORWARDED_PROTO", False) else None
)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
# /healthz and /readyz are answered before the HTTPS redirect (aibo.health.ProbeMiddleware).
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# Logging: configured once here. JSON lines in production, readable lines in development;
# every record carries the request or task id it belongs to.
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env_str("LOG_FORMAT", "text" if DEBUG or EMBEDDED else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "aibo.logging.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "aibo.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": LOG_FORMAT,
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own handlers (console when DEBUG) would print errors a second time, untagged.
        "django": {"handlers": [], "level": "INFO"},
        "django.db.backends": {"level": "INFO"},
        "huey": {"level": "INFO"},
        "ccxt": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "anthropic": {"level": "WARNING"},
    },
}

# --- aibo ---------------------------------------------------------------------------------------
# Bot configs: the grid has this many lines at least / at most (GRID_SPEC.md "seed bounds").
GRID_MIN_LEVELS = env_int("GRID_MIN_LEVELS", 10)
GRID_MAX_LEVELS = env_int("GRID_MAX_LEVELS", 50)
DEFAULT_FEE_RATE = Decimal(env_str("DEFAULT_FEE_RATE", "0.001"))
# Paper accounts start with this much quote currency.
PAPER_STARTING_BALANCE = Decimal(env_str("PAPER_STARTING_BALANCE", "10000"))
LIVE_GATE_HOURS = env_int("LIVE_GATE_HOURS", 24)  # paper first: a paper bot runs this long
# The market feed: "auto" (the exchange's public websocket streams when it answers at start,
# else the replay of stored candles), "live" (the streams, never the replay) or "replay"; the
# exchange, and the replay speed.
MARKET_FEED = env_str("MARKET_FEED", "auto")
if MARKET_FEED not in ("auto", "live", "replay"):
    raise ImproperlyConfigured(f"MARKET_FEED must be auto, live or replay, not {MARKET_FEED!r}")
MARKET_FEED_EXCHANGE = env_str("MARKET_FEED_EXCHANGE", "binance")
REPLAY_CANDLES_PER_SECOND = Decimal(env_str("REPLAY_CANDLES_PER_SECOND", "1"))
# A streamed price stays in the cache this long (seconds); a pair whose stream has said nothing
# for STREAM_STALE_SECONDS is polled over REST every MARKET_FEED_POLL_SECONDS until it speaks.
PRICE_CACHE_SECONDS = env_int("PRICE_CACHE_SECONDS", 1)
STREAM_STALE_SECONDS = env_int("STREAM_STALE_SECONDS", 30)
MARKET_FEED_POLL_SECONDS = env_int("MARKET_FEED_POLL_SECONDS", 10)
# The exchange's list of spot pairs (market.pairs) is kept this long before it is asked again
# (loading it spends request weight); a new pair's history is imported this many days back.
PAIRS_REFRESH_SECONDS = env_int("PAIRS_REFRESH_SECONDS", 3600)
HISTORY_IMPORT_DAYS = env_int("HISTORY_IMPORT_DAYS", 30)
BOT_CYCLE_SECONDS = env_int("BOT_CYCLE_SECONDS", 5)
# A worker's hold on a bot (bots.locks) lasts this long past its last renewal: a worker killed
# mid-cycle frees its bots after at most this many seconds.
BOT_LEASE_SECONDS = env_int("BOT_LEASE_SECONDS", 30)
# Live bots: while their account's user data stream is up, fills come from it and a full REST
# reconciliation (the account's trades and open orders) runs this often, as the safety net.
LIVE_RECONCILE_SECONDS = env_int("LIVE_RECONCILE_SECONDS", 300)
# The user data stream says it is alive this often; silent for three beats, it counts as down
# and live bots reconcile over REST every cycle until it is back.
USER_STREAM_BEAT_SECONDS = env_int("USER_STREAM_BEAT_SECONDS", 5)
# Processes of the feed's that run the cycles fills wake (unset: 2 on PostgreSQL, 0 on SQLite,
# where they run in the feed's own process).
USER_STREAM_WAKE_PROCESSES: int | None = (
    env_int("USER_STREAM_WAKE_PROCESSES", 0) if env_str("USER_STREAM_WAKE_PROCESSES") else None
)
# The share of each exchange limit (request weight per IP, new orders per account) kept
# spare: at this much below the limit nothing more is sent until the window turns (percent).
EXCHANGE_BUDGET_HEADROOM = env_int("EXCHANGE_BUDGET_HEADROOM_PERCENT", 20) / 100
# Exchange credentials are encrypted at rest with AES-256-GCM (accounts/crypto.py) under a
# keyring: "<id>:<32 bytes, base64>,<id>:<...>". The first key encrypts, every one decrypts;
# rotate by putting a new key first and running `manage.py rotate_encryption_key`.
CREDENTIALS_KEYS = env_str("CREDENTIALS_KEYS")
# The former single key (Fernet): what it encrypted is still read. With CREDENTIALS_KEYS empty,
# the encrypting key is derived from it, or from SECRET_KEY when it is empty too.
CREDENTIALS_KEY = env_str("CREDENTIALS_KEY")
# The AI advisor.
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY")
ANTHROPIC_MODEL = env_str("ANTHROPIC_MODEL", "claude-sonnet-4-6")
ADVISOR_RATE_PER_HOUR = env_int("ADVISOR_RATE_PER_HOUR", 20)
# Noisy neighbours: each user may have this many backtests / advisor runs queued or running at
# once, and start this many backtests an hour. Backtests and advisor runs (jobs) share at most
# HUEY_JOB_SLOTS workers at once (default: all but one of a process's workers), and queue
# behind every bot cycle: the cycle, where stop-loss runs, never waits behind a job.
BACKTESTS_AT_ONCE = env_int("BACKTESTS_AT_ONCE", 2)
BACKTESTS_PER_HOUR = env_int("BACKTESTS_PER_HOUR", 30)
ADVISOR_RUNS_AT_ONCE = env_int("ADVISOR_RUNS_AT_ONCE", 2)
# Per client address (aibo.limits): previews while typing, chart data, advisor runs.
PREVIEWS_PER_CLIENT_PER_MINUTE = env_int("PREVIEWS_PER_CLIENT_PER_MINUTE", 120)
CANDLE_REQUESTS_PER_CLIENT_PER_MINUTE = env_int("CANDLE_REQUESTS_PER_CLIENT_PER_MINUTE", 120)
ADVISOR_RUNS_PER_CLIENT_PER_HOUR = env_int("ADVISOR_RUNS_PER_CLIENT_PER_HOUR", 60)
HUEY_JOB_SLOTS = env_int("HUEY_JOB_SLOTS", max(1, HUEY["consumer"]["workers"] - 1))

# --- Websocket and request-body limits (issue 10) ---
# Open websockets per user, counted across server processes through the cache (0: no cap).
WS_MAX_CONNECTIONS_PER_USER = env_int("WS_MAX_CONNECTIONS_PER_USER", 20)
# Request bodies over this are answered 413 before they are read (aibo.body_limit); no view
# takes file uploads, so Django's own check uses the same number.
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# --- Data kept: candles, where TimescaleDB is installed (market.timescale, set at migrate):
# compressed after this many days; dropped after CANDLE_RETENTION_DAYS (0: every candle kept).
CANDLE_COMPRESS_AFTER_DAYS = env_int("CANDLE_COMPRESS_AFTER_DAYS", 30)
CANDLE_RETENTION_DAYS = env_int("CANDLE_RETENTION_DAYS", 0)
# --- Data kept: the equity series is thinned with age (bots.ledger.downsample_equity, hourly):
# every point for this many days, then one an hour, and from EQUITY_HOURLY_DAYS one a day.
EQUITY_FULL_DAYS = env_int("EQUITY_FULL_DAYS", 2)
EQUITY_HOURLY_DAYS = env_int("EQUITY_HOURLY_DAYS", 30)

# --- Metrics (aibo.metrics): /metrics for Prometheus ---
# Read with "Authorization: Bearer <METRICS_TOKEN>"; empty: only from this machine (loopback).
METRICS_TOKEN = env_str("METRICS_TOKEN")

# --- The JSON API (aibo.api) ---
# Tokens from /api/auth/login are valid this long (a password change ends them sooner).
API_TOKEN_HOURS = env_int("API_TOKEN_HOURS", 24)
# Requests a minute to /api/ per signed-in user and per client address (429 with Retry-After).
API_REQUESTS_PER_USER_PER_MINUTE = env_int("API_REQUESTS_PER_USER_PER_MINUTE", 120)
API_REQUESTS_PER_CLIENT_PER_MINUTE = env_int("API_REQUESTS_PER_CLIENT_PER_MINUTE", 300)

# --- Login, registration and per-client throttles (issue 10) ---
# Proxies whose X-Forwarded-For is believed (comma-separated IPs/CIDRs); empty: none, the
# client is REMOTE_ADDR. accounts.throttle.client_ip takes the right-most untrusted hop.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
# Failed sign-ins in LOGIN_FAILURE_WINDOW_SECONDS from one client across accounts, and for one
# account from browsers that never signed in to it (those it has signed in from stay open).
LOGIN_CLIENT_FAILURE_LIMIT = env_int("LOGIN_CLIENT_FAILURE_LIMIT", 20)
LOGIN_ACCOUNT_FAILURE_LIMIT = env_int("LOGIN_ACCOUNT_FAILURE_LIMIT", 50)
REGISTRATIONS_PER_CLIENT_PER_HOUR = env_int("REGISTRATIONS_PER_CLIENT_PER_HOUR", 5)
PASSWORD_RESETS_PER_CLIENT_PER_HOUR = env_int("PASSWORD_RESETS_PER_CLIENT_PER_HOUR", 5)
KEY_CHECKS_PER_CLIENT_PER_HOUR = env_int("KEY_CHECKS_PER_CLIENT_PER_HOUR", 20)
# Mail (password resets, sign-up notices): SMTP when EMAIL_HOST is set, else files in
# DATA_DIR/mail (one per message) for the embedded default.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)  # implicit TLS (port 465), else STARTTLS
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", not EMAIL_USE_SSL)
EMAIL_PORT = env_int("EMAIL_PORT", 465 if EMAIL_USE_SSL else 587)
EMAIL_BACKEND = env_str("EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.filebased.EmailBackend"
)
EMAIL_FILE_PATH = DATA_DIR / "mail"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "aibo <aibo@localhost>")

# --- Notifications (issue 17): email, signed webhooks and Telegram, sent by Huey ---
# The site's public address, for links in messages (https://aibo.example.com); empty: none.
NOTIFY_SITE_URL = env_str("NOTIFY_SITE_URL")
# The Telegram Bot API (tests point it at a local fake).
TELEGRAM_API_URL = env_str("TELEGRAM_API_URL") or "https://api.telegram.org"
# One webhook or Telegram request may take this long before it counts as failed.
NOTIFY_HTTP_TIMEOUT_SECONDS = env_int("NOTIFY_HTTP_TIMEOUT_SECONDS", 10)
# Attempts per message before it is marked failed (back-off 30 s, 2 min, 10 min, 30 min, 2 h,
# then 6 h between attempts).
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 7)
# Messages sent or given up on are kept this many days (the settings page shows the latest).
NOTIFY_KEEP_DAYS = env_int("NOTIFY_KEEP_DAYS", 30)
# Webhooks over plain http://, and to addresses inside this network (loopback, private,
# link-local): allowed on the embedded single-user default, refused elsewhere unless set.
NOTIFY_WEBHOOK_ALLOW_HTTP = env_bool("NOTIFY_WEBHOOK_ALLOW_HTTP", EMBEDDED)
NOTIFY_WEBHOOK_ALLOW_PRIVATE = env_bool("NOTIFY_WEBHOOK_ALLOW_PRIVATE", EMBEDDED)
