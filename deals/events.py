"""What happens to deal registrations, announced to the apps above deals.

The services send these inside the transaction that makes the change; the apps that consume
domain events (notifications today, see notifications/apps.py) connect to them, so deals/ imports
none of them. A receiver that has a side effect (a mail) defers it until the commit, so nothing is
sent for a change that rolled back. A receiver's error propagates (`send`, not `send_robust`).

Each signal is sent with one keyword argument, `registration` (a DealRegistration).
"""

from django.dispatch import Signal

registration_submitted = Signal()
registration_approved = Signal()
registration_rejected = Signal()
registration_expired = Signal()
# Still protected, but its protection ends within the reminder window.
registration_expiring = Signal()
