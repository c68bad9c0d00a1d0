"""Token lifecycle: the only writes the API app owns."""

import functools
import re
import weakref
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models import ForeignObjectRel
from django.utils import timezone

from api.models import ApiToken, hash_token_secret, new_token_secret
from partners.roles import STAFF_ROLES_ATTRIBUTE, StaffRole

# Recording every use would turn each authenticated read into a write; a minute's precision is enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_ACTIVE_TOKENS_PER_USER = 50


def api_token_create(*, user: User, name: str) -> tuple[ApiToken, str]:
    """Create a token and return it with its secret, which is never stored and never shown again."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": ["A token needs a name that says what it is for."]})
    with transaction.atomic():
        active = ApiToken.objects.filter(user=user, revoked_at__isnull=True).count()
        if active >= MAX_ACTIVE_TOKENS_PER_USER:
            raise ValidationError(
                {"name": [f"You already have {active} active tokens; revoke one you no longer use."]}
            )
        secret = new_token_secret()
        token = ApiToken.objects.create(
            user=user, name=name, prefix=secret[:12], secret_hash=hash_token_secret(secret)
        )
    return token, secret


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token; revoking twice keeps the first revocation time."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def api_token_authenticate(*, secret: str) -> ApiToken | None:
    """The active token with that secret, with its user and the user's staff roles (one query),
    recording when it was last used."""
    token = _active_token_with_user(hash_token_secret(secret))
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def _active_token_with_user(secret_hash: str) -> ApiToken | None:
    # Every API request runs this. Through the ORM it took two queries (the token with its user,
    # then each role check), and compiling them cost more than running them (docs/benchmarks.md).
    query = _token_query(connection.vendor)
    row = _fetch_one_prepared("prm_api_token", query.sql, [*(role.value for role in StaffRole), secret_hash])
    if row is None:
        return None
    columns = len(query.converters)
    values = [
        _converted(value, converters)
        for converters, value in zip(query.converters, row[:columns], strict=True)
    ]
    split = len(query.token_attnames)
    token = ApiToken.from_db(connection.alias, query.token_attnames, values[:split])
    user = get_user_model().from_db(connection.alias, query.user_attnames, values[split:])
    granted = frozenset(role.value for role, has in zip(StaffRole, row[columns:], strict=True) if has)
    setattr(user, STAFF_ROLES_ATTRIBUTE, granted)
    token.user = user
    return token


@dataclass(frozen=True)
class _TokenQuery:
    """The token query of one database vendor, and how to read its rows back into models."""

    sql: str
    token_attnames: list[str]
    user_attnames: list[str]
    # Per token then user column, what turns the raw value into the one the ORM would hand the
    # model (SQLite returns datetimes as text; PostgreSQL needs nothing), with its expression.
    converters: list[list[tuple[Any, Any]]]


def _column(field: models.Field[Any, Any] | ForeignObjectRel) -> str | None:
    assert isinstance(field, models.Field)  # a through model's foreign key, not a reverse relation
    return field.column


@functools.cache
def _token_query(vendor: str) -> _TokenQuery:
    """The active token by secret hash, its user's columns, then one flag per StaffRole (the
    parameters: each role's group name, then the hash). The user's columns must all live in its own
    table (no multi-table inheritance), as auth.User's do."""
    user_model = get_user_model()
    token_fields, user_fields = ApiToken._meta.concrete_fields, user_model._meta.concrete_fields
    groups = user_model._meta.get_field("groups").remote_field
    assert groups.through is not None  # auth's User.groups, with its auto-created through model
    memberships, group_table = groups.through._meta, groups.model._meta.db_table
    member, group = _column(memberships.get_field("user")), _column(memberships.get_field("group"))

    def quote(name: str | None) -> str:
        assert name is not None  # every concrete column has a name
        return connection.ops.quote_name(name)

    user_pk = f"u.{quote(user_model._meta.pk.column)}"
    columns = [f"t.{quote(f.column)}" for f in token_fields] + [f"u.{quote(f.column)}" for f in user_fields]
    has_role = (
        f"EXISTS (SELECT 1 FROM {quote(memberships.db_table)} m "
        f"JOIN {quote(group_table)} g ON g.id = m.{quote(group)} "
        f"WHERE m.{quote(member)} = {user_pk} AND g.name = %s)"
    )
    converters = []
    for field in [*token_fields, *user_fields]:
        column = field.get_col(field.model._meta.db_table)
        found = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
        converters.append([(converter, column) for converter in found])
    return _TokenQuery(
        sql=(
            f"SELECT {', '.join(columns)}, {', '.join([has_role] * len(StaffRole))} "
            f"FROM {quote(ApiToken._meta.db_table)} t JOIN {quote(user_model._meta.db_table)} u "
            f"ON {user_pk} = t.{quote(ApiToken._meta.get_field('user').column)} "
            "WHERE t.secret_hash = %s AND t.revoked_at IS NULL"
        ),
        token_attnames=[f.attname for f in token_fields],
        user_attnames=[f.attname for f in user_fields],
        converters=converters,
    )


# PostgreSQL plans a plainly executed query anew each time, and planning the token query costs
# about 3x running it (pgbench: 0.42 ms plain, 0.11 ms prepared). psycopg2 never prepares on its
# own, so each session prepares the statement on first use. Prepared statements outlive
# rollbacks; DB_PREPARED_STATEMENTS=0 turns this off behind a pooler that resets sessions.
_prepared_by_session: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fetch_one_prepared(name: str, sql: str, params: list[Any]) -> tuple | None:
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql" or not settings.DB_PREPARED_STATEMENTS:
            cursor.execute(sql, params)
            return cursor.fetchone()
        prepared = _prepared_by_session.setdefault(connection.connection, set())
        if name not in prepared:
            numbers = iter(range(1, len(params) + 1))
            cursor.execute(f"PREPARE {name} AS " + re.sub("%s", lambda _: f"${next(numbers)}", sql))
            prepared.add(name)
        cursor.execute(f"EXECUTE {name} ({', '.join(['%s'] * len(params))})", params)
        return cursor.fetchone()


def _converted(value: Any, converters: list[tuple[Any, Any]]) -> Any:
    for converter, column in converters:
        value = converter(value, column, connection)
    return value
