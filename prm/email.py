"""Mail settings from one EMAIL_URL, parsed by dj-email-url.

Besides dj-email-url's schemes (smtp://, submission://, console://, file://, memory://, dummy://)
this reads `smtp+tls://` (STARTTLS) and `smtp+ssl://` (implicit TLS), and `file:///abs/path` as
the absolute path it names (dj-email-url drops its leading slash). Without a URL mail is written as
files under `default_file_path`, so nothing leaves the machine until someone configures SMTP.
"""

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dj_email_url

FILE_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
DEFAULT_TIMEOUT_SECONDS = 10
_SECURE_SCHEMES = {"smtp+tls": "tls", "smtp+ssl": "ssl"}


def email_settings(url: str, *, default_file_path: Path) -> dict[str, Any]:
    """The Django EMAIL_* settings an EMAIL_URL stands for."""
    url = (url or "").strip()
    if not url:
        return {"EMAIL_BACKEND": FILE_BACKEND, "EMAIL_FILE_PATH": str(default_file_path)}
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in _SECURE_SCHEMES:
        query = "&".join(filter(None, [parts.query, f"{_SECURE_SCHEMES[scheme]}=1"]))
        url = urlunsplit(("smtp", parts.netloc, parts.path, query, parts.fragment))
    conf = dj_email_url.parse(url)
    if "EMAIL_BACKEND" not in conf:
        raise ValueError(
            f"EMAIL_URL has an unknown scheme {parts.scheme!r}: use smtp://, smtp+tls://, smtp+ssl://, "
            "submission://, console://, file:///path, memory:// or dummy://"
        )
    if scheme == "file":
        conf["EMAIL_FILE_PATH"] = parts.path or str(default_file_path)
    if conf.get("EMAIL_TIMEOUT") is None:
        # A stalled SMTP server must not hold a worker (and the row it claimed) for ever.
        conf["EMAIL_TIMEOUT"] = DEFAULT_TIMEOUT_SECONDS
    return {name: value for name, value in conf.items() if value is not None}


def describe_mail_delivery() -> str:
    """Where the configured backend puts mail, in one line (`make run` prints it)."""
    from django.conf import settings

    backend = settings.EMAIL_BACKEND.rsplit(".", 2)[-2]
    if backend == "filebased":
        # Not one of Django's default settings: the file backend's own (prm/email.py sets it with it).
        path = getattr(settings, "EMAIL_FILE_PATH", "")
        return f"Mail is written as files to {path} (set EMAIL_URL=smtp://... to send it)"
    if backend == "smtp":
        security = " (TLS)" if settings.EMAIL_USE_TLS else " (SSL)" if settings.EMAIL_USE_SSL else ""
        return f"Mail is sent through SMTP at {settings.EMAIL_HOST}:{settings.EMAIL_PORT}{security}"
    if backend == "console":
        return "Mail is printed to the Celery worker's log"
    return f"Mail goes to Django's {backend} email backend"
