"""Token lifecycle: the only writes the API app owns."""

from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from api.models import ApiToken, hash_token_secret, new_token_secret

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
    """The active token with that secret (with its user), recording when it was last used."""
    token = (
        ApiToken.objects.select_related("user")
        .filter(secret_hash=hash_token_secret(secret), revoked_at__isnull=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
