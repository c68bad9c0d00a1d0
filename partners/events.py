"""What happens to applications and invitations, announced to the apps above partners.

The services send these inside the transaction that makes the change; the apps that consume
domain events (notifications today, see notifications/apps.py) connect to them, so partners/
imports none of them. A receiver that has a side effect (a mail) defers it until the commit,
so nothing is sent for a change that rolled back. A receiver's error propagates (`send`, not
`send_robust`) and rolls the change back, as a direct call would.

Each signal is sent with keyword arguments only; the names below are the contract.
"""

from django.dispatch import Signal

# application: Application (with its partner), contact_email: str
application_received = Signal()
# application: Application, approved: bool, reason: str ("" when approved)
application_decided = Signal()
# invitation: Invitation, path: str (the link with its one-time secret), invited_by: User
invitation_issued = Signal()
