"""A deterministic, realistic demo program: ~3 years of partners, deals and costs ending this month.

`generate_program(size)` yields chunks of INTERCHANGE rows (column name -> Python value) per file,
parents before children. References hold the *index* of the referenced row; a sink turns indexes
into keys (the CSV sink, `seed_demo --out`) or into primary keys (the database sink). Rows are
produced month by month, so memory is bounded by one month of deals whatever the size.

The story the dashboards should tell:
- recruitment grows over time, through every join source; referral partners name their referrer;
- partners activate over weeks after joining (an exponential delay), about a fifth never do, and
  partners that go quiet become inactive or churn;
- deal volume grows and peaks in Q4; partner-sourced share grows as the program matures;
- registrations include rejections, expirations, pending reviews and conflicting claims; a few
  touches are logged after the deal closed (the reconciliation report lists them).
"""

import bisect
import math
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal

TIERS = ("registered", "silver", "gold", "platinum")

# (key, name, kind, share of applications)
JOIN_SOURCES: tuple[tuple[str, str, str, float], ...] = (
    ("js-website", "Website partner signup", "website", 0.22),
    ("js-email", "Partner newsletter campaign", "email", 0.07),
    ("js-paid-ads", "LinkedIn partner ads", "paid_ads", 0.10),
    ("js-outreach", "Channel team outreach", "outreach", 0.13),
    ("js-referral", "Referred by a partner", "referral", 0.14),
    ("js-distributor", "Distributor network", "partner_network", 0.09),
    ("js-marketplace", "Cloud marketplace listing", "marketplace", 0.08),
    ("js-summit", "Partner Summit", "event", 0.08),
    ("js-tradeshow", "Trade show booth", "event", 0.05),
    ("js-other", "Other / unknown", "other", 0.04),
)
PARTNER_TYPES = (
    ("reseller", 0.28, 1.2),
    ("referral", 0.16, 0.6),
    ("affiliate", 0.12, 0.4),
    ("technology", 0.12, 0.9),
    ("agency", 0.14, 0.8),
    ("distributor", 0.06, 1.6),
    ("msp", 0.12, 1.1),
)
TOUCH_KINDS = (
    ("introduction", 3),
    ("co_sell", 4),
    ("technical", 3),
    ("marketplace", 1),
    ("referral", 2),
    ("other", 1),
)
# Month-of-year weights for deal creation: closes (about 6 weeks later) peak in Q4.
SEASON = (0.85, 0.9, 1.0, 0.9, 0.9, 0.95, 0.85, 0.95, 1.15, 1.3, 1.35, 0.9)
MONTHS = 36
# Deals per chunk handed to a sink: bounds memory whatever --deals is.
CHUNK_DEALS = 5000
DEAL_KINDS = ("platform", "expansion", "renewal", "pilot", "add-on")
PROTECTION_DAYS = 90

_WORDS_A = (
    "North", "Blue", "Gamma", "Summit", "Bright", "Iron", "Silver", "Cedar", "Harbor", "Apex",
    "Nova", "Pioneer", "Vertex", "Granite", "Crimson", "Atlas", "Orbit", "Maple", "Falcon", "Quartz",
    "Evergreen", "Lumen", "Beacon", "Cobalt", "Redwood", "Polar", "Sterling", "Horizon", "Keystone",
    "Meridian", "Oakridge", "Pinnacle", "Riverbend", "Sapphire", "Tidewater", "Upland", "Westgate",
    "Zenith", "Amber", "Boulder",
)  # fmt: skip
_WORDS_B = (
    "wind", "stone", "field", "bridge", "point", "gate", "light", "peak", "line", "works",
    "path", "crest", "wave", "forge", "view", "port", "leaf", "brook", "ridge", "spring",
)  # fmt: skip
_PARTNER_SUFFIXES = (
    "Consulting", "Solutions", "Partners", "Systems", "Digital", "Cloud Services", "IT Group",
    "Technologies", "Networks", "Advisory", "Integrations", "Labs",
)  # fmt: skip
_ACCOUNT_SUFFIXES = (
    ("Logistics", "com"), ("Health", "com"), ("Bank", "com"), ("Retail", "com"), ("Foods", "com"),
    ("Energy", "com"), ("Software", "io"), ("Insurance", "com"), ("Manufacturing", "com"), ("Media", "tv"),
    ("Pharma", "com"), ("Telecom", "net"), ("Motors", "com"), ("Analytics", "io"), ("Travel", "com"),
    ("Education", "org"), ("Robotics", "ai"), ("Foundation", "org"), ("Capital", "com"), ("Labs", "io"),
)  # fmt: skip
REJECTION_REASONS = (
    "Existing customer handled by direct sales",
    "Not enough information about the opportunity",
    "Customer outside the partner's territory",
    "Duplicate of an open opportunity",
)


def partner_key(index: int) -> str:
    return f"p-{index + 1:05d}"


def account_key(index: int) -> str:
    return f"acct-{index + 1:07d}"


def deal_key(index: int) -> str:
    return f"deal-{index + 1:07d}"


def registration_key(index: int) -> str:
    return f"reg-{index + 1:07d}"


def account_name_and_domain(index: int) -> tuple[str, str]:
    """Unique, deterministic customer names such as `Northwind Logistics` / `northwindlogistics.com`."""
    a, rest = index % len(_WORDS_A), index // len(_WORDS_A)
    b, rest = rest % len(_WORDS_B), rest // len(_WORDS_B)
    s, rest = rest % len(_ACCOUNT_SUFFIXES), rest // len(_ACCOUNT_SUFFIXES)
    suffix, tld = _ACCOUNT_SUFFIXES[s]
    stem = f"{_WORDS_A[a]}{_WORDS_B[b]}"
    name = f"{stem} {suffix}" + (f" {rest + 1}" if rest else "")
    domain = f"{stem}{suffix}{rest + 1 if rest else ''}.{tld}".lower()
    return name, domain


@dataclass(frozen=True)
class DemoSize:
    partners: int = 300
    deals: int = 4000
    seed: int = 2026


@dataclass(eq=False)
class DemoPartner:
    index: int
    name: str
    type: str
    join_source: int
    applied_at: date
    status: str = "applied"
    joined_at: date | None = None
    tier: str = ""
    referred_by: int | None = None
    productivity: float = 0.0
    active_from: date | None = None
    active_until: date | None = None
    manager: int = 0

    def acts_on(self, day: date) -> bool:
        return (
            self.active_from is not None
            and self.active_from <= day
            and (self.active_until is None or day <= self.active_until)
        )


@dataclass
class DemoProgram:
    """What the generator knows after the run: the partners and a few aggregates for costs and targets."""

    partners: list[DemoPartner] = field(default_factory=list)
    sourced_won_by_quarter: dict[tuple[int, int], Decimal] = field(
        default_factory=lambda: defaultdict(Decimal)
    )
    won_by_year: dict[int, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    commission_base: dict[tuple[int, int, int], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    approved_by_quarter: dict[tuple[int, int], int] = field(default_factory=lambda: defaultdict(int))
    first_win: dict[int, date] = field(default_factory=dict)
    sourced_deals: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    deals: int = 0
    accounts: int = 0
    registrations: int = 0
    touches: int = 0


def _quarter(day: date) -> tuple[int, int]:
    return day.year, (day.month - 1) // 3 + 1


def _month_start(year: int, month: int) -> date:
    return date(year + (month - 1) // 12, (month - 1) % 12 + 1, 1)


def _money(value: float) -> Decimal:
    return Decimal(f"{max(value, 1.0):.2f}")


class _Weighted:
    """Weighted choice by bisecting a cumulative table (O(log n) per draw)."""

    def __init__(self, items: list, weights: list[float]) -> None:
        self.items = items
        self.cumulative: list[float] = []
        total = 0.0
        for weight in weights:
            total += weight
            self.cumulative.append(total)
        self.total = total

    def __bool__(self) -> bool:
        return bool(self.items) and self.total > 0

    def pick(self, rng: random.Random):
        position = bisect.bisect_right(self.cumulative, rng.random() * self.total)
        return self.items[min(position, len(self.items) - 1)]


class ProgramGenerator:
    def __init__(self, size: DemoSize, *, today: date, tz: tzinfo = UTC, managers: int = 3) -> None:
        self.size = size
        self.rng = random.Random(size.seed)
        self.tz = tz
        self.today = today
        # The horizon: nothing happens after the start of today, so a run is reproducible all day.
        self.horizon = datetime.combine(today, time.min, tzinfo=tz)
        self.start = _month_start(today.year, today.month - (MONTHS - 1))
        self.managers = managers
        self.program = DemoProgram()
        self._next_account = 0
        self._touch_kinds = _Weighted([k for k, _ in TOUCH_KINDS], [w for _, w in TOUCH_KINDS])

    # --- helpers --------------------------------------------------------------------------------
    def _below(self, n: int) -> int:
        """A seeded integer in [0, n): several times faster than randrange on the hot paths."""
        return int(self.rng.random() * n)

    def _moment(self, day: date) -> datetime:
        """A business-hours moment on `day`, never after the horizon."""
        moment = datetime.combine(day, time(8 + self._below(10), self._below(60)), tzinfo=self.tz)
        return min(moment, self.horizon - timedelta(minutes=1 + self._below(600)))

    def _growth(self, month_offset: int) -> float:
        return math.exp(math.log(3.0) * month_offset / MONTHS)

    def _months(self) -> list[tuple[int, date, date]]:
        months = []
        for offset in range(MONTHS):
            first = _month_start(self.start.year, self.start.month + offset)
            last = _month_start(first.year, first.month + 1) - timedelta(days=1)
            months.append((offset, first, min(last, self.today - timedelta(days=1))))
        return months

    def _spread(self, total: int, weights: list[float]) -> list[int]:
        """`total` split by weights with largest remainders (deterministic, sums exactly)."""
        whole = sum(weights)
        exact = [total * w / whole for w in weights]
        counts = [int(x) for x in exact]
        order = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
        for i in order[: total - sum(counts)]:
            counts[i] += 1
        return counts

    # --- the program ----------------------------------------------------------------------------
    def join_source_rows(self) -> list[dict]:
        return [
            {"index": i, "key": key, "name": name, "kind": kind}
            for i, (key, name, kind, _) in enumerate(JOIN_SOURCES)
        ]

    def build_partners(self) -> list[DemoPartner]:
        rng = self.rng
        months = self._months()
        counts = self._spread(
            self.size.partners, [self._growth(o) * (last >= first) for o, first, last in months]
        )
        applications: list[date] = []
        for (_, first, last), count in zip(months, counts, strict=True):
            span = (last - first).days + 1
            applications.extend(first + timedelta(days=self._below(span)) for _ in range(count))
        applications.sort()
        sources = _Weighted(list(range(len(JOIN_SOURCES))), [s[3] for s in JOIN_SOURCES])
        types = _Weighted([t for t, _, _ in PARTNER_TYPES], [w for _, w, _ in PARTNER_TYPES])
        type_factor = {t: f for t, _, f in PARTNER_TYPES}
        referral_source = next(i for i, s in enumerate(JOIN_SOURCES) if s[2] == "referral")
        website_source = 0
        partners: list[DemoPartner] = []
        joined: list[DemoPartner] = []
        for index, applied_at in enumerate(applications):
            a, b = index % len(_WORDS_A), (index // len(_WORDS_A)) % len(_WORDS_B)
            suffix = _PARTNER_SUFFIXES[
                (index // (len(_WORDS_A) * len(_WORDS_B)) + index) % len(_PARTNER_SUFFIXES)
            ]
            name = f"{_WORDS_A[a]}{_WORDS_B[b]} {suffix}"
            if index >= len(_WORDS_A) * len(_WORDS_B):
                name += f" {index // (len(_WORDS_A) * len(_WORDS_B)) + 1}"
            partner = DemoPartner(index, name, types.pick(rng), sources.pick(rng), applied_at)
            if partner.join_source == referral_source:
                referrers = [
                    p
                    for p in joined[-200:]
                    if p.joined_at is not None and p.joined_at <= applied_at and p.status != "churned"
                ]
                if referrers:
                    partner.referred_by = rng.choice(referrers).index
                else:
                    partner.join_source = website_source
            self._decide_lifecycle(partner, type_factor[partner.type])
            partner.manager = index % self.managers
            partners.append(partner)
            if partner.joined_at is not None:
                joined.append(partner)
        ranked = sorted(joined, key=lambda p: -p.productivity)
        for rank, partner in enumerate(ranked):
            share = rank / max(len(ranked), 1)
            partner.tier = (
                "platinum"
                if share < 0.07
                else "gold"
                if share < 0.25
                else "silver"
                if share < 0.55
                else "registered"
            )
        self.program.partners = partners
        return partners

    def _decide_lifecycle(self, partner: DemoPartner, type_factor: float) -> None:
        rng = self.rng
        waited = (self.today - partner.applied_at).days
        if waited < 25 and rng.random() < 0.75:
            return  # still under review
        if rng.random() < 0.16:
            partner.status = "rejected"
            return
        joined_at = partner.applied_at + timedelta(days=2 + int(rng.expovariate(1 / 12)))
        if joined_at >= self.today:
            return
        partner.joined_at = joined_at
        partner.status = "active"
        partner.productivity = rng.lognormvariate(0, 0.9) * type_factor
        never = 0.35 if partner.type in ("affiliate", "referral") else 0.18
        if rng.random() < never:
            partner.productivity = 0.0
        else:
            partner.active_from = joined_at + timedelta(days=1 + int(rng.expovariate(1 / 32)))
        tenure = (self.today - joined_at).days
        roll = rng.random()
        if tenure > 200 and roll < 0.13:
            partner.status = "churned"
            partner.active_until = joined_at + timedelta(days=120 + self._below(tenure - 119))
        elif tenure > 200 and roll < 0.30:
            partner.status = "inactive"
            partner.active_until = self.today - timedelta(days=95 + self._below(max(tenure - 180, 1)))
        if partner.active_until and partner.active_from and partner.active_until < partner.active_from:
            partner.active_from = None
            partner.productivity = 0.0

    def partner_rows(self) -> list[dict]:
        return [
            {
                "index": p.index,
                "key": partner_key(p.index),
                "name": p.name,
                "type": p.type,
                "join_source": p.join_source,
                "applied_at": p.applied_at,
                "joined_at": p.joined_at,
                "status": p.status,
                "tier": p.tier,
                "referred_by": p.referred_by,
                "manager": p.manager if p.status != "rejected" else None,
            }
            for p in self.program.partners
        ]

    def _new_account(self, rows: list[dict]) -> int:
        index = self._next_account
        self._next_account += 1
        name, domain = account_name_and_domain(index)
        rows.append(
            {"index": index, "key": account_key(index), "name": name, "domain": domain if index % 23 else ""}
        )
        return index

    def _pick_account(self, rows: list[dict]) -> int:
        if self._next_account > 20 and self.rng.random() < 0.45:
            return self._below(self._next_account)
        return self._new_account(rows)

    def deal_chunks(self) -> Iterator[dict[str, list[dict]]]:
        """Chunks of at most CHUNK_DEALS deals (never spanning months), with their accounts,
        registrations and touches; a sink writes them in that order."""
        rng = self.rng
        months = self._months()
        weights = [self._growth(o) * SEASON[first.month - 1] * (last >= first) for o, first, last in months]
        counts = self._spread(self.size.deals, weights)
        program = self.program
        deal_index = 0
        sourced_count = 0
        self._joiners = sorted(
            (p.joined_at, p.index) for p in program.partners if p.joined_at is not None and p.productivity > 0
        )
        reg_index = 0
        for (offset, first, last), count in zip(months, counts, strict=True):
            eligible = [
                p for p in program.partners if p.productivity > 0 and (p.acts_on(first) or p.acts_on(last))
            ]
            pool = _Weighted(eligible, [p.productivity for p in eligible])
            sourced_share = 0.16 + 0.26 * offset / MONTHS
            chunk: dict[str, list[dict]] = {"accounts": [], "deals": [], "registrations": [], "touches": []}
            span = max((last - first).days + 1, 1)
            created_days = sorted(first + timedelta(days=self._below(span)) for _ in range(count))
            for day in created_days:
                created_at = self._moment(day)
                partner = pool.pick(rng) if pool else None
                if partner is not None and not partner.acts_on(day):
                    partner = None
                roll = rng.random()
                segment = "direct"
                if partner is not None and roll < sourced_share:
                    segment = "sourced"
                    # Now and then a deal is credited to a partner that joined only later: legal but
                    # suspicious, so the reconciliation report has a "sourced before joined" to show.
                    sourced_count += 1
                    if sourced_count % 250 == 0:
                        partner = self._joining_soon(day) or partner
                elif partner is not None and roll < sourced_share + 0.3:
                    segment = "influenced"
                account = self._pick_account(chunk["accounts"])
                cycle = min(max(int(rng.lognormvariate(math.log(38), 0.6)), 2), 300)
                closes = created_at + timedelta(days=cycle, hours=self._below(9) - 4)
                tier_factor = 1 + 0.35 * TIERS.index(partner.tier) if partner is not None else 1.0
                amount = _money(rng.lognormvariate(math.log(9000), 0.85) * tier_factor * (1 + offset / 72))
                if closes >= self.horizon:
                    status, closed_at = "open", None
                else:
                    q4 = closes.month >= 10
                    win = {"sourced": 0.36, "influenced": 0.31, "direct": 0.24}[segment] + (0.05 if q4 else 0)
                    status, closed_at = ("won" if rng.random() < win else "lost"), closes
                deal = {
                    "index": deal_index,
                    "key": deal_key(deal_index),
                    "account": account,
                    "name": f"{account_name_and_domain(account)[0]} — {rng.choice(DEAL_KINDS)}",
                    "amount": amount,
                    "created_at": created_at,
                    "closed_at": closed_at,
                    "status": status,
                    "sourcing_partner": partner.index
                    if segment == "sourced" and partner is not None
                    else None,
                }
                chunk["deals"].append(deal)
                if status == "won" and closed_at is not None:
                    program.won_by_year[closed_at.year] += amount
                touchers: list[DemoPartner] = []
                if segment == "sourced":
                    assert partner is not None  # a sourced or influenced deal has its partner
                    reg_index = self._sourced_registration(chunk, deal, partner, reg_index, pool)
                    if rng.random() < 0.75:
                        touchers.append(partner)
                    if rng.random() < 0.2:
                        touchers.append(pool.pick(rng))
                elif segment == "influenced":
                    assert partner is not None
                    touchers.append(partner)
                    for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):
                        touchers.append(pool.pick(rng))
                self._touches(chunk, deal, [p for p in dict.fromkeys(touchers) if p.acts_on(day)])
                deal_index += 1
                if len(chunk["deals"]) >= CHUNK_DEALS:
                    program.deals, program.registrations = deal_index, reg_index
                    yield chunk
                    chunk = {"accounts": [], "deals": [], "registrations": [], "touches": []}
            program.deals, program.registrations = deal_index, reg_index
            program.accounts = self._next_account
            yield chunk

    def _joining_soon(self, day: date) -> "DemoPartner | None":
        """A productive partner approved within the 30 days after `day`, if any."""
        start = bisect.bisect_right(self._joiners, (day, math.inf))
        end = bisect.bisect_right(self._joiners, (day + timedelta(days=30), math.inf))
        if start >= end:
            return None
        return self.program.partners[self._joiners[start + self._below(end - start)][1]]

    def _sourced_registration(
        self, chunk: dict[str, list[dict]], deal: dict, partner: DemoPartner, reg_index: int, pool: _Weighted
    ) -> int:
        rng = self.rng
        program = self.program
        created_at: datetime = deal["created_at"]
        submitted_at = created_at - timedelta(days=1 + self._below(12), hours=self._below(6))
        # A partner registers deals only once it is in the program.
        assert partner.active_from is not None  # it acts on the deal's day, so it has
        submitted_at = max(submitted_at, datetime.combine(partner.active_from, time(9), tzinfo=self.tz))
        submitted_at = min(submitted_at, created_at)
        approved = {
            "index": reg_index,
            "key": registration_key(reg_index),
            "partner": partner.index,
            "account": deal["account"],
            "amount": _money(float(deal["amount"]) * rng.uniform(0.8, 1.15)),
            "submitted_at": submitted_at,
            "status": "approved",
            "decided_at": created_at,
            "deal": deal["index"],
            "conflict_with": None,
            "decision_reason": "",
        }
        chunk["registrations"].append(approved)
        program.sourced_deals[partner.index] += 1
        program.approved_by_quarter[_quarter(created_at.date())] += 1
        if deal["status"] == "won":
            closed: datetime = deal["closed_at"]
            program.sourced_won_by_quarter[_quarter(closed.date())] += deal["amount"]
            program.commission_base[(partner.index, *_quarter(closed.date()))] += deal["amount"]
            program.first_win.setdefault(partner.index, closed.date())
        reg_index += 1
        # A competing claim on the same customer by another partner, inside the protection window.
        if rng.random() < 0.05 and pool:
            rival = pool.pick(rng)
            claimed_at = submitted_at + timedelta(days=1 + self._below(20), hours=self._below(8))
            if rival is not partner and rival.acts_on(claimed_at.date()) and claimed_at < self.horizon:
                pending = self.horizon - claimed_at < timedelta(days=14)
                decided_at: datetime | None = min(
                    claimed_at + timedelta(days=1 + self._below(3)), self.horizon
                )
                chunk["registrations"].append(
                    {
                        "index": reg_index,
                        "key": registration_key(reg_index),
                        "partner": rival.index,
                        "account": deal["account"],
                        "amount": _money(float(deal["amount"]) * rng.uniform(0.7, 1.3)),
                        "submitted_at": claimed_at,
                        "status": "submitted" if pending else "rejected",
                        "decided_at": None if pending else decided_at,
                        "deal": None,
                        "conflict_with": approved["index"],
                        "decision_reason": ""
                        if pending
                        else f"Channel conflict: {approved['key']} protects this account",
                    }
                )
                reg_index += 1
        # Leads that never became deals: rejected, expired, or still waiting for review.
        if rng.random() < 0.55 and pool:
            lead_partner = pool.pick(rng)
            submitted = submitted_at + timedelta(days=self._below(25), hours=self._below(8))
            if lead_partner.acts_on(submitted.date()) and submitted < self.horizon:
                age = self.horizon - submitted
                decided_at = None
                if age < timedelta(days=10):
                    status = "submitted"
                elif rng.random() < 0.7:
                    status = "rejected"
                    decided_at = min(submitted + timedelta(days=1 + self._below(6)), self.horizon)
                elif age > timedelta(days=PROTECTION_DAYS + 1):
                    status = "expired"
                else:
                    status = "submitted"
                chunk["registrations"].append(
                    {
                        "index": reg_index,
                        "key": registration_key(reg_index),
                        "partner": lead_partner.index,
                        "account": self._pick_account(chunk["accounts"]),
                        "amount": _money(rng.lognormvariate(math.log(7000), 0.8)),
                        "submitted_at": submitted,
                        "status": status,
                        "decided_at": decided_at,
                        "deal": None,
                        "conflict_with": None,
                        "decision_reason": rng.choice(REJECTION_REASONS) if status == "rejected" else "",
                    }
                )
                reg_index += 1
        return reg_index

    def _touches(self, chunk: dict[str, list[dict]], deal: dict, partners: list[DemoPartner]) -> None:
        rng = self.rng
        if not partners:
            return
        start: datetime = deal["created_at"]
        end: datetime = deal["closed_at"] or self.horizon
        seconds = max(int((end - start).total_seconds()), 60)
        kinds = self._touch_kinds
        touches = set()
        for partner in partners:
            for _ in range(1 + int(rng.expovariate(1 / 3.6))):
                touched_at = start + timedelta(seconds=self._below(seconds))
                touches.add((touched_at, partner.index, kinds.pick(rng)))
        if deal["closed_at"] is not None and rng.random() < 0.015:
            late = deal["closed_at"] + timedelta(days=1 + self._below(10))
            if late < self.horizon:
                touches.add((late, partners[0].index, "other"))
        for touched_at, partner_index, kind in sorted(touches):
            chunk["touches"].append(
                {"deal": deal["index"], "partner": partner_index, "kind": kind, "touched_at": touched_at}
            )
        self.program.touches += len(touches)

    def cost_rows(self) -> list[dict]:
        """Every category; commissions, MDF and incentives tagged by partner, recruitment by join source."""
        rng = self.rng
        program = self.program
        rows: list[dict] = []
        scale = max(self.size.partners / 300, 0.05)
        applications: dict[tuple[int, int, int], int] = defaultdict(int)
        for p in program.partners:
            applications[(p.join_source, p.applied_at.year, p.applied_at.month)] += 1
        per_application = {"paid_ads": 420, "email": 90, "website": 60, "outreach": 250, "marketplace": 150}
        for offset, first, last in self._months():
            label = f"{first:%Y-%m}"
            rows.append(
                _cost(first, 2500 * scale * (1 + offset / 48), "tooling", f"PRM platform licence {label}")
            )
            team = 9000 * (1 + offset / 36) * min(scale, 4)
            rows.append(_cost(last, team, "tooling", f"Partner operations team {label}"))
            for source, (_, name, kind, _) in enumerate(JOIN_SOURCES):
                apps = applications.get((source, first.year, first.month), 0)
                if kind in per_application and apps:
                    amount = per_application[kind] * apps * rng.uniform(0.8, 1.2)
                    rows.append(_cost(last, amount, "recruitment", f"{name} {label}", join_source=source))
                if kind == "event" and first.month in ((3, 9) if "Summit" in name else (5, 11)):
                    note = f"{name} {label} booth and travel"
                    day = first + timedelta(days=14)
                    rows.append(_cost(day, 18000 * min(scale, 3), "recruitment", note, join_source=source))
            if first.month in (1, 4, 7, 10):
                note = f"Partner bootcamp {first.year}-Q{(first.month - 1) // 3 + 1}"
                rows.append(_cost(first + timedelta(days=20), 5000 + 1500 * rng.random(), "enablement", note))
        for (partner_index, year, quarter), base in sorted(program.commission_base.items()):
            paid_on = _month_start(year, quarter * 3 + 1) + timedelta(days=14)
            note = f"Commission {year}-Q{quarter} {partner_key(partner_index)}"
            rows.append(_cost(paid_on, float(base) * 0.12, "commission", note, partner=partner_index))
        for p in program.partners:
            key = partner_key(p.index)
            if p.joined_at is None:
                continue
            if p.tier in ("gold", "platinum"):
                for year in sorted({p.joined_at.year, self.today.year}):
                    day = max(date(year, 2, 1), p.joined_at)
                    amount = 4000 if p.tier == "gold" else 9000
                    rows.append(_cost(day, amount, "mdf", f"MDF {year} {key}", partner=p.index))
            if p.index in program.first_win:
                day = program.first_win[p.index]
                rows.append(_cost(day, 500, "incentive", f"First-sale bonus {key}", partner=p.index))
            if p.referred_by is not None:
                note = f"Referral bonus for {key}"
                rows.append(
                    _cost(
                        p.joined_at, 300, "incentive", note, partner=p.referred_by, join_source=p.join_source
                    )
                )
            if p.tier == "platinum" and p.index % 2 == 0:
                day = p.joined_at + timedelta(days=30)
                rows.append(_cost(day, 1200, "enablement", f"Certification {key}", partner=p.index))
        return [row for row in rows if row["date"] < self.today]

    def target_rows(self) -> list[dict]:
        program = self.program
        rows: list[dict] = []
        this_year, this_quarter = _quarter(self.today)
        quarters = []
        year, quarter = this_year, this_quarter
        for _ in range(8):
            quarters.append((year, quarter))
            year, quarter = (year, quarter - 1) if quarter > 1 else (year - 1, 4)
        joined_by_quarter: dict[tuple[int, int], int] = defaultdict(int)
        for p in program.partners:
            if p.joined_at:
                joined_by_quarter[_quarter(p.joined_at)] += 1
        for year, quarter in reversed(quarters):
            previous = (year, quarter - 1) if quarter > 1 else (year - 1, 4)
            period = f"{year}-Q{quarter}"
            won = program.sourced_won_by_quarter
            basis = won.get((year, quarter)) or won.get(previous)
            if basis:
                rows.append(_target("sourced_revenue", period, round(float(basis) * 1.1, -3) or 1000))
            joined = joined_by_quarter.get((year, quarter)) or joined_by_quarter.get(previous) or 1
            rows.append(_target("partners_joined", period, math.ceil(joined * 1.15)))
            approved = program.approved_by_quarter
            basis_count = approved.get((year, quarter)) or approved.get(previous) or 1
            rows.append(_target("opportunities_sourced", period, math.ceil(basis_count * 1.1)))
            rows.append(_target("activation_rate", period, Decimal("0.6500")))
        for year in sorted(program.won_by_year):
            rows.append(
                _target("won_revenue", str(year), round(float(program.won_by_year[year]) * 1.05, -3) or 1000)
            )
        leaders = sorted(program.sourced_deals, key=lambda i: (-program.sourced_deals[i], i))[:5]
        for partner_index in leaders:
            rows.append(_target("sourced_revenue", str(this_year), 150000, partner=partner_index))
        for source, (_, _, kind, _) in enumerate(JOIN_SOURCES):
            if kind in ("website", "referral"):
                value = max(5, self.size.partners // 12)
                rows.append(_target("applications", str(this_year), value, join_source=source))
        return rows


def _cost(
    day: date,
    amount: float,
    category: str,
    note: str,
    *,
    partner: int | None = None,
    join_source: int | None = None,
) -> dict:
    return {
        "date": day,
        "amount": _money(amount),
        "category": category,
        "partner": partner,
        "join_source": join_source,
        "note": note,
    }


def _target(
    metric: str, period: str, value, *, partner: int | None = None, join_source: int | None = None
) -> dict:
    return {
        "metric": metric,
        "period": period,
        "value": Decimal(value).quantize(Decimal("0.0001")),
        "partner": partner,
        "join_source": join_source,
    }
