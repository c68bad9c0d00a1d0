"""Token lifecycle: the only writes the API app owns."""

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Field
from django.utils import timezone

from api.models import ApiToken, hash_token_secret, new_token_secret
from partners.roles import STAFF_ROLES_ATTRIBUTE, StaffRole

# Recording every use would turn each authenticated read into a write; a minute's precision is enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_ACTIVE_TOKENS_PER_USER = 50


def api_token_create(*, user: AbstractBaseUser, name: str) -> tuple[ApiToken, str]:
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
    # The user's columns must all live in its own table (no multi-table inheritance), as auth.User's do.
    user_model = get_user_model()
    token_fields = ApiToken._meta.concrete_fields
    user_fields = user_model._meta.concrete_fields
    groups = user_model._meta.get_field("groups").remote_field
    memberships, group_table = groups.through._meta, groups.model._meta.db_table
    member, group = memberships.get_field("user").column, memberships.get_field("group").column
    quote = connection.ops.quote_name
    columns = [f"t.{quote(f.column)}" for f in token_fields] + [f"u.{quote(f.column)}" for f in user_fields]
    roles = list(StaffRole)
    has_role = (
        f"EXISTS (SELECT 1 FROM {quote(memberships.db_table)} m "
        f"JOIN {quote(group_table)} g ON g.id = m.{quote(group)} "
        f"WHERE m.{quote(member)} = u.{quote(user_model._meta.pk.column)} AND g.name = %s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(columns)}, {', '.join([has_role] * len(roles))} "
            f"FROM {quote(ApiToken._meta.db_table)} t "
            f"JOIN {quote(user_model._meta.db_table)} u "
            f"ON u.{quote(user_model._meta.pk.column)} = t.{quote(ApiToken._meta.get_field('user').column)} "
            "WHERE t.secret_hash = %s AND t.revoked_at IS NULL",
            [*(role.value for role in roles), secret_hash],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    fields = [*token_fields, *user_fields]
    values = [_from_database(field, value) for field, value in zip(fields, row, strict=False)]
    token = ApiToken.from_db(connection.alias, [f.attname for f in token_fields], values[: len(token_fields)])
    user = user_model.from_db(connection.alias, [f.attname for f in user_fields], values[len(token_fields) :])
    granted = frozenset(role.value for role, has in zip(roles, row[len(fields) :], strict=True) if has)
    setattr(user, STAFF_ROLES_ATTRIBUTE, granted)
    token.user = user
    return token


def _from_database(field: Field, value: Any) -> Any:
    """A raw column value as the ORM would hand it to the model (SQLite returns text datetimes)."""
    column = field.get_col(field.model._meta.db_table)
    for converter in connection.ops.get_db_converters(column) + field.get_db_converters(connection):
        value = converter(value, column, connection)
    return value
