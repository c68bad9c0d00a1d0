"""What the audit trail records: every change to these models, through django-auditlog's signals.

Engine output (KPI values, runs, facts) is not audited: it is recomputed from the audited inputs.
Writes that fire no signals (queryset.update(), bulk_create) record their entries themselves:
`registrations_expire` logs each expiry, and each program import logs one entry (audit.services).
"""

from auditlog.registry import auditlog
from django.apps import apps
from django.contrib.auth import get_user_model

from audit.models import ImportRecord

# What a masked field shows on both sides of a change: that it changed, never its value.
SECRET = "(secret)"

# By label: the trail sits below the API app in the layers, so it names the token model, never imports it.
AUDITED_MODELS = (
    "partners.JoinSource",
    "partners.Partner",
    "partners.PartnerUser",
    "partners.PartnerProfile",
    "partners.Application",
    "partners.Invitation",
    "deals.Account",
    "deals.Deal",
    "deals.DealRegistration",
    "deals.Touch",
    "kpis.CostEntry",
    "kpis.Target",
    "mdf.MdfBudget",
    "mdf.MdfRequest",
    "mdf.MdfClaim",
    "program.ProgramSettings",
    # Commission terms (the ledger's entries are decided through services that record domain events).
    "economics.CommissionPlan",
    "economics.CommissionRule",
    "economics.CommissionSettings",
    "api.ApiToken",
)
# Bookkeeping that moves on every save (or every use) and says nothing about what changed.
UNTRACKED_FIELDS = {"updated_at", "last_used_at", "last_login"}
CREDENTIAL_FIELDS = frozenset({"secret_hash", "token_hash"})


def hide_secret(value: str) -> str:
    """auditlog's mask callable: an empty side stays empty, anything else reads `(secret)`."""
    return "" if value in ("", "None") else SECRET


def register_audited_models() -> None:
    for model in map(apps.get_model, AUDITED_MODELS):
        # Token and invitation hashes are credentials: never written to the trail, not even masked.
        auditlog.register(model, include_fields=_tracked(model, leave_out=CREDENTIAL_FIELDS))
    # A password change is recorded as `(secret) -> (secret)`: that it changed, never the hash.
    # Group membership is the staff role, so adding or removing one is recorded too.
    user_model = get_user_model()
    auditlog.register(
        user_model,
        include_fields=_tracked(user_model),
        mask_fields=["password"],
        mask_callable="audit.registry.hide_secret",
        m2m_fields={"groups", "user_permissions"},
    )


def _tracked(model, leave_out: frozenset[str] = frozenset()) -> list[str]:
    """The model's own columns (not reverse relations), less bookkeeping and the primary key,
    which every entry names anyway."""
    return [
        field.name
        for field in model._meta.concrete_fields
        if not field.primary_key and field.name not in UNTRACKED_FIELDS | leave_out
    ]


def audited_models() -> list:
    """Every model entries can be about (an ImportRecord's one entry is written by import_record)."""
    return [*map(apps.get_model, AUDITED_MODELS), get_user_model(), ImportRecord]
