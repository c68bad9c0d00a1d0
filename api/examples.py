"""Example bodies for the OpenAPI documentation, one per resource, reused by list and detail."""

from drf_spectacular.utils import OpenApiExample

JOIN_SOURCE = {"id": 3, "key": "js-summit", "name": "Partner Summit", "kind": "event"}
PARTNER = {
    "id": 12,
    "key": "p-00012",
    "name": "Northwind Consulting",
    "type": "reseller",
    "tier": "gold",
    "status": "active",
    "join_source": 3,
    "join_source_name": "Partner Summit",
    "applied_at": "2026-01-05",
    "joined_at": "2026-01-19",
    "referred_by": None,
    "manager": 4,
    "created_at": "2026-01-05T10:00:00Z",
    "updated_at": "2026-01-19T08:30:00Z",
}
PARTNER_USER = {
    "id": 21,
    "partner": 12,
    "username": "jane.northwind",
    "email": "jane@northwind.example",
    "role": "admin",
}
ACCOUNT = {"id": 2045, "key": "acct-0002045", "name": "Acme Corp", "domain": "acme.com"}
REGISTRATION = {
    "id": 311,
    "key": None,
    "partner": 12,
    "partner_name": "Northwind Consulting",
    "account": 2045,
    "account_name": "Acme Corp",
    "domain": "acme.com",
    "amount": "18000.00",
    "expected_close_date": "2026-06-30",
    "notes": "Champion is the CFO; evaluating against a competitor.",
    "status": "submitted",
    "submitted_at": "2026-03-02T09:15:00Z",
    "decided_at": None,
    "decision_reason": "",
    "protection_expires_at": "2026-05-31T09:15:00Z",
    "conflict_with": None,
    "conflict_override_reason": "",
    "deal": None,
    "updated_at": "2026-03-02T09:15:00Z",
}
DEAL = {
    "id": 9001,
    "key": "deal-0009001",
    "name": "Acme platform rollout",
    "account": 2045,
    "account_name": "Acme Corp",
    "amount": "18000.00",
    "status": "won",
    "created_at": "2026-03-10T12:00:00Z",
    "closed_at": "2026-05-20T16:30:00Z",
    "sourcing_partner": 12,
    "updated_at": "2026-05-20T16:30:00Z",
}
TOUCH = {
    "id": 77,
    "deal": 9001,
    "partner": 12,
    "kind": "co_sell",
    "touched_at": "2026-04-02T15:00:00Z",
    "created_at": "2026-04-02T15:05:00Z",
    "updated_at": "2026-04-02T15:05:00Z",
}
COST = {
    "id": 5,
    "date": "2026-03-31",
    "amount": "2500.00",
    "category": "mdf",
    "partner": 12,
    "join_source": None,
    "note": "Q1 co-marketing webinar",
    "source": "mdf_reimbursement",
    "reference": "mdf-claim:41",
    "counted": True,
    "updated_at": "2026-04-01T08:00:00Z",
}
TARGET = {
    "id": 8,
    "metric": "sourced_revenue",
    "grain": "quarter",
    "period": "2026-Q2",
    "period_start": "2026-04-01",
    "value": "250000.0000",
    "partner": 12,
    "join_source": None,
}
KPI_VALUE = {
    "id": 551,
    "scope": "partner",
    "scope_key": "p-00012",
    "partner": 12,
    "join_source": None,
    "grain": "month",
    "period": "2026-03",
    "period_start": "2026-03-01",
    "metric": "sourced_revenue",
    "target_metric": "",
    "attribution_model": "linear",
    "value": "18000.00",
    "run": 31,
    "rows_url": "https://prm.example.com/api/v1/kpi-drilldown/sourced_revenue/?period=2026-03&partner=12",
}
KPI_DRILLDOWN = {
    "metric": "sourced_revenue",
    "scope": "partner",
    "partner": 12,
    "join_source": None,
    "period": "2026-03",
    "published": "18000.00",
    "adds_up_to": "18000.00",
    "part": "rows",
    "parts": [
        {
            "part": "rows",
            "role": "rows",
            "family": "deals",
            "rows": 2,
            "url": "https://prm.example.com/api/v1/kpi-drilldown/sourced_revenue/?period=2026-03&partner=12&part=rows",
        }
    ],
    "totals": {
        "rows": 2,
        "amount": "18000.00",
        "counted": 0,
        "counted_amount": "0.00",
        "days": 41,
        "median_days": None,
    },
    "count": 2,
    "next": None,
    "previous": None,
    "results": [
        {
            "deal_id": 9001,
            "deal_key": "D-9001",
            "account": "Acme Corp",
            "segment": "s",
            "status": "won",
            "partner": "Northwind Consulting",
            "created": "2026-02-10",
            "closed": "2026-03-04",
            "days": 22,
            "amount": "12000.00",
            "counted": False,
        },
        {
            "deal_id": 9002,
            "deal_key": "D-9002",
            "account": "Globex",
            "segment": "s",
            "status": "won",
            "partner": "Northwind Consulting",
            "created": "2026-03-01",
            "closed": "2026-03-20",
            "days": 19,
            "amount": "6000.00",
            "counted": False,
        },
    ],
}
KPI_RUN = {
    "id": 31,
    "url": "https://prm.example.com/api/v1/kpi-runs/31/",
    "trigger": "manual",
    "mode": "full",
    "status": "succeeded",
    "attribution_model": "linear",
    "as_of": None,
    "requested_by": 4,
    "created_at": "2026-04-01T09:00:00Z",
    "started_at": "2026-04-01T09:00:01Z",
    "finished_at": "2026-04-01T09:00:41Z",
    "duration_seconds": 40.2,
    "rows_written": 1843200,
    "periods_recomputed": 36,
    "changed_rows": None,
    "error": "",
}


def listed(name: str, value: dict) -> OpenApiExample:
    return OpenApiExample(name, value=[value], response_only=True, status_codes=["200"])


def one(name: str, value: dict, status: str = "200") -> OpenApiExample:
    return OpenApiExample(name, value=value, response_only=True, status_codes=[status])


PAYOUT_BATCH = {
    "id": 7,
    "month": "2026-10",
    "status": "open",
    "currency": "USD",
    "minimum_payout": "50.00",
    "amount": "1840.25",
    "carried_out": "-80.00",
    "payouts": 14,
    "created_at": "2026-11-02T08:00:00Z",
    "paid_on": None,
    "paid_at": None,
}
PAYOUT = {
    "id": 41,
    "batch": 7,
    "month": "2026-10",
    "partner": 12,
    "partner_name": "Northwind Consulting",
    "currency": "USD",
    "carried_in": "45.50",
    "entries_total": "20.00",
    "balance": "65.50",
    "amount": "65.50",
    "carried_out": "0.00",
    "status": "payable",
    "reference": "PAY-202610-41",
    "paid_at": None,
}
STATEMENT = {
    **PAYOUT,
    "lines": [
        {
            "entry": 3301,
            "kind": "earning",
            "basis": "revenue",
            "earned_at": "2026-09-12T16:30:00Z",
            "deal": 9001,
            "registration": None,
            "status": "approved",
            "amount": "20.00",
        }
    ],
}
