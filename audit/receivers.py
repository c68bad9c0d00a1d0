"""Every new trail entry gets who acted and through what, from prm.acting's context."""

from auditlog.models import LogEntry
from django.db.models.signals import pre_save

from prm import acting


def stamp_acting_context(sender, instance: LogEntry, **kwargs) -> None:
    """Fill the actor, the address and `additional_data` (channel, actor label, API token).

    Whatever the caller set explicitly is kept. The actor label stays even if the user is deleted
    later (which empties `actor`), so an entry never loses who made it.
    """
    if instance.pk is not None:
        return
    context = acting.current()
    actor = context.resolved_actor()
    if instance.actor_id is None and actor.user is not None:
        instance.actor = actor.user
        instance.actor_email = getattr(actor.user, "email", None) or None
    if instance.remote_addr is None:
        instance.remote_addr = context.remote_addr
    data = dict(instance.additional_data or {})
    data.setdefault("channel", context.resolved_channel().value)
    data.setdefault("actor", actor.label)
    if actor.token_id is not None:
        data.setdefault("token", {"id": actor.token_id, "name": actor.token_name})
    instance.additional_data = data


def connect() -> None:
    pre_save.connect(stamp_acting_context, sender=LogEntry, dispatch_uid="audit.stamp_acting_context")
