"""The receiver printed in docs/integrations.md works: it accepts a real signed delivery, refuses
a forged one, and handles a duplicate once."""

import re
import threading
from decimal import Decimal
from http.server import HTTPServer
from pathlib import Path

import httpx
import pytest

from deals import services as deals
from integrations import services
from integrations.models import WebhookDelivery
from tests.factories import PartnerFactory, StaffUserFactory

DOC = Path(__file__).resolve().parent.parent / "docs" / "integrations.md"
pytestmark = pytest.mark.django_db


def documented_receiver(secret: str) -> dict:
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)[1]
    assert code.rstrip().endswith('HTTPServer(("0.0.0.0", 8080), Receiver).serve_forever()')
    code = code.rstrip().rsplit("\n", 1)[0].replace('SECRET = b"whsec_..."', f"SECRET = {secret.encode()!r}")
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace


def test_the_documented_receiver_verifies_our_signature_and_drops_duplicates(capsys):
    manager = StaffUserFactory(username="docs-reader")
    endpoint = services.endpoint_create(url="http://127.0.0.1:9/", event_types=["deal.won"], owner=manager)
    receiver = documented_receiver(endpoint.secret)
    server = HTTPServer(("127.0.0.1", 0), receiver["Receiver"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        services.endpoint_update(endpoint=endpoint, url=url)
        registration = deals.registration_submit(
            partner=PartnerFactory(), account_name="Acme", domain="acme.example", amount=Decimal("10.00")
        )
        deal = deals.registration_approve(registration=registration, decided_by=manager).deal
        deals.deal_close(deal=deal, status="won", closed_at=deal.created_at)
        delivery = WebhookDelivery.objects.get()
        assert services.delivery_attempt(delivery_id=delivery.pk) == "succeeded"
        services.delivery_replay(delivery=delivery)
        assert services.delivery_attempt(delivery_id=delivery.pk) == "succeeded"
        forged = httpx.post(url, content=b'{"id": "x"}', headers={"PRM-Signature": "t=1,v1=00"})
        assert forged.status_code == 400
    finally:
        server.shutdown()
        server.server_close()
    assert receiver["seen"] == {str(delivery.event.uuid)}
    printed = capsys.readouterr().out
    assert printed.count(f"deal.won {{'id': {deal.pk}, 'type': 'deal'}}") == 1  # the replay was dropped
