"""`python manage.py screenshots`: PNGs of the main pages in docs/screenshots/, by headless Chromium.

Against a running server (`--url http://127.0.0.1:8000`) or, without --url, against a server this
command starts itself on the current database (seed it first: `seed_demo`, `recompute_kpis`,
`compute_forecast`).
Logs in with the demo logins printed by `demo_logins`.
"""

import os
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.conf import settings
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.wsgi import get_wsgi_application
from django.db import connections
from django.test.utils import override_settings

from dashboards.browser import CHROMIUM, CHROMIUM_ARGS

MAX_HEIGHT = 1600
STAFF_PAGES = [
    ("overview", "/dashboard/"),
    # A custom range of whole months for the gold tier: sums, and "—" where a value does not add up.
    ("overview-range", "/dashboard/?start=2026-01&end=2026-06&tier=gold"),
    ("join-sources", "/dashboard/join-sources/"),
    ("partners", "/dashboard/partners/"),
    ("applications", "/dashboard/applications/"),
    ("registrations", "/dashboard/registrations/"),
    ("attribution", "/dashboard/attribution/"),
    ("reconciliation", "/dashboard/reconciliation/"),
    ("deals", "/dashboard/deals/?status=won&segment=influenced&sort=amount"),
    ("heatmap", "/dashboard/insights/heat-map/?grain=quarter"),
    ("forecast", "/dashboard/insights/forecast/"),
    ("commission-plans", "/dashboard/commissions/plans/"),
    ("commission-plan-edit", "/dashboard/commissions/plans/new/"),
    ("commission-review", "/dashboard/commissions/review/"),
    # The newest batch and its first partner's statement are shot after the list (below).
    ("payouts", "/dashboard/payouts/"),
    ("mdf-budgets", "/dashboard/mdf/"),
    ("mdf-requests", "/dashboard/mdf/requests/"),
    ("mdf-claims", "/dashboard/mdf/claims/?status="),
]
PARTNER_PAGES = [
    ("portal-home", "/portal/"),
    ("portal-register", "/portal/register/"),
    ("portal-registrations", "/portal/registrations/"),
    ("portal-deals", "/portal/deals/"),
    # The partner login must be a partner admin (seed_demo's is) for the users page.
    ("portal-users", "/portal/users/"),
    ("portal-profile", "/portal/profile/"),
    ("portal-forecast", "/portal/forecast/"),
    # Money pages: the partner login must be a partner admin; its newest statement follows.
    ("portal-earnings", "/portal/earnings/"),
    ("portal-funds", "/portal/funds/"),
    ("portal-funds-request", "/portal/funds/requests/new/"),
]
# Before any login.
PUBLIC_PAGES = [
    ("apply", "/apply/"),
]


# After a page: open the first link matching a CSS selector and shoot it under a name, in order
# (each from the page reached before it); skipped when the program has nothing to open there.
_FOLLOW: dict[str, list[tuple[str, str]]] = {
    # The rows behind the first KPI card (the drill-down page).
    "overview": [("drilldown", ".kpi-card a.drill-link")],
    "portal-home": [("portal-drilldown", ".kpi-card a.drill-link")],
    # The largest won influenced deal: its timeline and five splits.
    "deals": [("deal-detail", "#deal-list tbody a")],
    # The leaderboard's top partner, whatever its id in this database.
    "partners": [("partner-detail", "#leaderboard tbody a")],
    "payouts": [("payout-batch", "main table tbody th a"), ("payout-statement", "main table tbody th a")],
    "portal-earnings": [("portal-earnings-statement", "main table tbody th a")],
}


def _chosen(pages: list[tuple[str, str]], only: str) -> list[tuple[str, str]]:
    names = {name.strip() for name in only.split(",") if name.strip()}
    return [page for page in pages if not names or page[0] in names]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


class Command(BaseCommand):
    help = "Take screenshots of the main dashboard and portal pages into docs/screenshots/."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", help="base URL of a running server (default: start one here)")
        parser.add_argument("--out", type=Path, default=Path(settings.BASE_DIR) / "docs" / "screenshots")
        parser.add_argument("--manager", default="manager:demo-manager-pass", help="USER:PASSWORD")
        parser.add_argument("--partner", default="partner:demo-partner-pass", help="USER:PASSWORD")
        parser.add_argument("--width", type=int, default=1366)
        parser.add_argument("--mobile", action="store_true", help="also take phone-sized shots (390 px wide)")
        parser.add_argument("--only", default="", help="comma-separated page names (default: all)")

    def handle(self, *args, url, out, manager, partner, width, mobile, only, **options):
        if not os.path.exists(CHROMIUM):
            raise CommandError("Chromium not installed: apt-get install chromium")
        from playwright.sync_api import sync_playwright

        server = overrides = None
        if not url:
            server, url, overrides = self._serve()
        out.mkdir(parents=True, exist_ok=True)
        # Playwright's sync API runs an event loop in this thread; the ORM is not used meanwhile.
        os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        written = []
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                sizes = [("", {"width": width, "height": 900})]
                if mobile:
                    sizes.append(("-phone", {"width": 390, "height": 844}))
                for suffix, viewport in sizes:
                    context = browser.new_context(viewport=viewport, device_scale_factor=1)
                    page = context.new_page()
                    for name, path in _chosen(PUBLIC_PAGES, only):
                        written.append(self._shoot(page, url + path, out / f"{name}{suffix}.png"))
                    context.close()
                    for login, pages in (
                        (manager, _chosen(STAFF_PAGES, only)),
                        (partner, _chosen(PARTNER_PAGES, only)),
                    ):
                        if not pages:
                            continue
                        context = browser.new_context(viewport=viewport, device_scale_factor=1)
                        page = context.new_page()
                        self._log_in(page, url, *login.split(":", 1))
                        for name, path in pages:
                            written.append(self._shoot(page, url + path, out / f"{name}{suffix}.png"))
                            if name == "portal-register":
                                # The same form sent with mistakes: errors next to the fields, input kept.
                                page.get_by_label("Customer name").fill("Initech")
                                page.get_by_label("Customer web domain").fill("initech")
                                page.get_by_label("Expected amount").fill("0")
                                page.get_by_role("button", name="Submit registration").click()
                                page.wait_for_load_state()
                                path = out / f"portal-register-errors{suffix}.png"
                                written.append(self._capture(page, path))
                            for shot, selector in _FOLLOW.get(name, []):
                                # A page reached from this one (a drill-down, a deal, a statement),
                                # when the program has one to open.
                                link = page.locator(selector).first
                                if link.count():
                                    href = link.get_attribute("href")
                                    written.append(self._shoot(page, url + href, out / f"{shot}{suffix}.png"))
                        context.close()
                browser.close()
        finally:
            if server is not None:
                server.shutdown()
                server.thread.join()
                server.server_close()
                overrides.disable()
        for path in written:
            self.stdout.write(f"wrote {path}")
        self.stdout.write(self.style.SUCCESS(f"{len(written)} screenshots in {out}"))

    def _serve(self):
        # A local, plain-HTTP server: no HTTPS redirect or secure-only cookies, static files served
        # from the finders (no collectstatic needed), as `make run` does with DEBUG on.
        overrides = override_settings(
            SECURE_SSL_REDIRECT=False,
            SESSION_COOKIE_SECURE=False,
            CSRF_COOKIE_SECURE=False,
            SECURE_HSTS_SECONDS=0,
            STORAGES={
                **settings.STORAGES,
                "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
            },
        )
        overrides.enable()
        handler = StaticFilesHandler(get_wsgi_application())
        server = make_server("127.0.0.1", 0, handler, handler_class=_QuietHandler)

        def serve() -> None:
            try:
                server.serve_forever()
            finally:
                # This thread's database connection would otherwise outlive the command.
                connections.close_all()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        server.thread = thread
        return server, f"http://127.0.0.1:{server.server_port}", overrides

    def _log_in(self, page, url: str, username: str, password: str) -> None:
        page.goto(f"{url}/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()
        if "/login/" in page.url:
            raise CommandError(f"could not log in as {username!r} at {url} (run seed_demo first?)")

    def _shoot(self, page, url: str, path: Path) -> Path:
        response = page.goto(url)
        if response is None or response.status >= 400:
            raise CommandError(f"{url} answered {response.status if response else 'nothing'}")
        if page.locator("[data-chart]").count():
            page.wait_for_function(
                "[...document.querySelectorAll('[data-chart]')].every(el => el.dataset.rendered === 'true')"
            )
        return self._capture(page, path)

    def _capture(self, page, path: Path) -> Path:
        # Long pages (the review queue, the leaderboard) are cut at MAX_HEIGHT pixels.
        height = min(page.evaluate("document.documentElement.scrollHeight"), MAX_HEIGHT)
        width = page.viewport_size["width"]
        page.screenshot(
            path=str(path), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": height}
        )
        return path
