"""Who is acting, and through what: the context every recorded change carries.

One context per unit of work, kept in a context variable:
- pages, the admin and the API: `ActingContextMiddleware`, which reads the request's user (and the
  API token, which DRF only authenticates inside the view) when a change is recorded, not before;
- Celery tasks: `track_celery_tasks()` (prm/celery.py) gives each task `task:<name>`;
- management commands and imports: `with acting(channel=..., actor=Actor.command(...))`.
Anything else (a Django command run from the shell, a script) falls back to `command:<name>` or
`system`, so no change is ever unattributed.

The audit trail stamps each entry with it (audit/receivers.py); notifications and webhooks read
the same `current()` to say who did what.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.http import HttpRequest, HttpResponse


class Channel(StrEnum):
    PAGE = "page"
    ADMIN = "admin"
    API = "api"
    IMPORT = "import"
    TASK = "task"
    COMMAND = "command"
    # Outside any request, task or command: a script, a test, a data migration.
    SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    """`label` is what the trail shows: a username, `task:<name>`, `command:<name>` or `system`."""

    label: str
    user: User | None = None
    token_id: int | None = None
    token_name: str = ""

    @classmethod
    def task(cls, name: str) -> Actor:
        return cls(label=f"task:{name}")

    @classmethod
    def command(cls, name: str) -> Actor:
        return cls(label=f"command:{name}")


SYSTEM = Actor(label="system")
ANONYMOUS = Actor(label="anonymous")


@dataclass(frozen=True)
class ActingContext:
    """A fixed channel and actor, or a request to read them from (None: read from the request)."""

    channel: Channel | None = None
    actor: Actor | None = None
    request: HttpRequest | None = None
    correlation_id: str = ""

    def resolved_channel(self) -> Channel:
        if self.channel is not None:
            return self.channel
        match = getattr(self.request, "resolver_match", None)
        namespaces = match.namespaces if match is not None else []
        if "admin" in namespaces:
            return Channel.ADMIN
        if "api" in namespaces:
            return Channel.API
        return Channel.PAGE if self.request is not None else Channel.SYSTEM

    def resolved_actor(self) -> Actor:
        if self.actor is not None:
            return self.actor
        if self.request is None:
            return SYSTEM
        return _request_actor(self.request)

    @property
    def remote_addr(self) -> str | None:
        # REMOTE_ADDR, not X-Forwarded-For: a client can write any X-Forwarded-For it likes.
        if self.request is None:
            return None
        return self.request.META.get("REMOTE_ADDR") or None


def _request_actor(request: HttpRequest) -> Actor:
    # DRF sets request.user and request.auth on the Django request once it has authenticated, so
    # reading them when the change is recorded (inside the view) sees the API token's user.
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return ANONYMOUS
    token = getattr(request, "auth", None)
    if token is not None and getattr(token, "pk", None) is not None:
        name = getattr(token, "name", "")
        return Actor(label=user.get_username(), user=user, token_id=token.pk, token_name=name)
    return Actor(label=user.get_username(), user=user)


_current: ContextVar[ActingContext | None] = ContextVar("prm_acting", default=None)


def current() -> ActingContext:
    """The context in force; outside any, the management command running (or `system`)."""
    return _current.get() or _outside_any_context()


@cache
def _outside_any_context() -> ActingContext:
    program = Path(sys.argv[0]).name if sys.argv else ""
    if program in ("manage.py", "django-admin") and len(sys.argv) > 1:
        return ActingContext(
            channel=Channel.COMMAND, actor=Actor.command(sys.argv[1]), correlation_id=uuid.uuid4().hex
        )
    return ActingContext(channel=Channel.SYSTEM, actor=SYSTEM)


def correlation_id() -> str | None:
    """One id per request, task or command, shared by every change it made (AUDITLOG_CID_GETTER)."""
    return current().correlation_id or None


@contextmanager
def acting(*, channel: Channel | None = None, actor: Actor | None = None) -> Iterator[ActingContext]:
    """Run the block with this channel and/or actor; what is not given stays as it was.

    `with acting(channel=Channel.IMPORT):` in an API view keeps the token's user as the actor.
    """
    outer = current()
    context = replace(
        outer,
        channel=channel or outer.channel,
        actor=actor or outer.actor,
        correlation_id=outer.correlation_id or uuid.uuid4().hex,
    )
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


class ActingContextMiddleware:
    """Pages, the admin and the API: the request's user (or API token) acting through its URL."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _current.set(ActingContext(request=request, correlation_id=uuid.uuid4().hex))
        try:
            return self.get_response(request)
        finally:
            _current.reset(token)


_task_tokens: dict[str | None, Token[ActingContext | None]] = {}


def _task_started(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    context = ActingContext(
        channel=Channel.TASK, actor=Actor.task(task.name), correlation_id=task_id or uuid.uuid4().hex
    )
    _task_tokens[task_id] = _current.set(context)


def _task_finished(task_id: str | None = None, **kwargs: Any) -> None:
    token = _task_tokens.pop(task_id, None)
    if token is None:
        return
    try:
        _current.reset(token)
    except ValueError:  # set in another context (a pool that switched threads): clear it instead
        _current.set(None)


def track_celery_tasks() -> None:
    """Give every Celery task (worker or eager) the actor `task:<name>` on channel `task`."""
    from celery.signals import task_postrun, task_prerun

    task_prerun.connect(_task_started, weak=False, dispatch_uid="prm.acting.task_started")
    task_postrun.connect(_task_finished, weak=False, dispatch_uid="prm.acting.task_finished")
