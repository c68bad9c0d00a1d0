"""factory_boy factories for the domain models: explicit defaults, valid rows, nothing hidden.

Dates are fixed (early 2026, UTC) rather than "now" so tests that compute values by hand stay stable.
Override any field by keyword: `DealFactory(status="won", closed_at=...)`.
"""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from deals.models import Account, Deal, DealRegistration, Touch
from partners.models import JoinSource, Partner, PartnerUser
from partners.roles import StaffRole

DEFAULT_PASSWORD = "correct-horse-battery-staple"
T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


class UserFactory(factory.django.DjangoModelFactory):
    """A plain login with no role; log in with DEFAULT_PASSWORD."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password(DEFAULT_PASSWORD)


class StaffUserFactory(UserFactory):
    """A staff login in one staff role group: `StaffUserFactory(role=StaffRole.SALES_OPS)`.

    Without `role` it is a partner manager.
    """

    class Meta:
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True

    @factory.post_generation
    def role(obj, create, extracted, **kwargs):  # noqa: N805
        if create:
            group, _ = Group.objects.get_or_create(
                name=StaffRole(extracted or StaffRole.PARTNER_MANAGER).value
            )
            obj.groups.add(group)


class SuperUserFactory(UserFactory):
    username = factory.Sequence(lambda n: f"admin{n}")
    is_staff = True
    is_superuser = True


class JoinSourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = JoinSource

    name = factory.Sequence(lambda n: f"Source {n}")
    kind = JoinSource.Kind.WEBSITE


class PartnerFactory(factory.django.DjangoModelFactory):
    """A joined (active) partner; `PartnerFactory(applied=True)` gives a pending application."""

    class Meta:
        model = Partner

    class Params:
        applied = factory.Trait(status=Partner.Status.APPLIED, joined_at=None)

    name = factory.Sequence(lambda n: f"Partner {n}")
    type = Partner.Type.RESELLER
    join_source = factory.SubFactory(JoinSourceFactory)
    status = Partner.Status.ACTIVE
    applied_at = date(2026, 1, 2)
    joined_at = date(2026, 1, 10)


class PartnerUserFactory(factory.django.DjangoModelFactory):
    """A portal login acting for a partner (admin role by default)."""

    class Meta:
        model = PartnerUser

    user = factory.SubFactory(UserFactory, username=factory.Sequence(lambda n: f"portal{n}"))
    partner = factory.SubFactory(PartnerFactory)
    role = PartnerUser.Role.ADMIN


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    name = factory.Sequence(lambda n: f"Customer {n}")
    domain = factory.Sequence(lambda n: f"customer{n}.example")


class DealFactory(factory.django.DjangoModelFactory):
    """An open, direct deal (no sourcing partner)."""

    class Meta:
        model = Deal

    account = factory.SubFactory(AccountFactory)
    name = factory.Sequence(lambda n: f"Deal {n}")
    amount = Decimal("1000.00")
    created_at = T0
    closed_at = None
    status = Deal.Status.OPEN
    sourcing_partner = None


class DealRegistrationFactory(factory.django.DjangoModelFactory):
    """A submitted registration, protected for 90 days from submission."""

    class Meta:
        model = DealRegistration

    partner = factory.SubFactory(PartnerFactory)
    account = factory.SubFactory(AccountFactory)
    amount = Decimal("500.00")
    status = DealRegistration.Status.SUBMITTED
    submitted_at = T0
    protection_expires_at = factory.LazyAttribute(lambda r: r.submitted_at + timedelta(days=90))


class TouchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Touch

    deal = factory.SubFactory(DealFactory)
    partner = factory.SubFactory(PartnerFactory)
    kind = Touch.Kind.INTRODUCTION
    touched_at = T0
