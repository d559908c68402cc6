"""Approval requests: created by agents, decided once by a person, expired by the clock.

Every change of status is a conditional update from `pending`; whoever's update matched is the one
that decided, and only it announces the change (an `approval.*` event, published once: the sweep
announces an expiry if the process that expired it was killed first) and wakes the waiting agent
(core.wakeups). A wait re-reads the request only when woken, and expires it itself at its deadline,
so an agent learns of an expiry without waiting for the sweep.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from approvals.models import ApprovalRequest, ApprovalStatus
from core import events, wakeups
from notifications.services import Notification, notify, queue, update_messages

logger = logging.getLogger(__name__)

LINK_SALT = "approvals.link"
LINK_MAX_AGE = 30 * 86_400  # seconds; a decided or expired request's page offers no decision anyway
CONTEXT_CHARS_IN_NOTIFICATIONS = 2000
ANNOUNCE_AGAIN = timedelta(hours=1)  # how far back the sweep looks for expiries that were not announced
# The buttons of the message that asks (a Slack app's); the chat app decides on their press.
APPROVE_ACTION, REJECT_ACTION = "approvals.approve", "approvals.reject"


def wake_channel(request_id: str) -> str:
    return f"approvals:{request_id}"


def create(agent_id: str, approval_type: str, context: dict, timeout_seconds: float) -> ApprovalRequest:
    with transaction.atomic():
        request = ApprovalRequest.objects.create(
            agent_id=agent_id, approval_type=approval_type, context=context, timeout_seconds=timeout_seconds
        )
        events.publish(events.Event("approval.requested", request.as_dict()))
        transaction.on_commit(lambda: notify_reviewers(request), robust=True)  # the request stands regardless
    return request


def notify_reviewers(request: ApprovalRequest) -> None:
    """Tell the channels that hear `approval.requested`, with a link to the decision page."""
    context = json.dumps(request.context, indent=2, ensure_ascii=False, default=str)
    if len(context) > CONTEXT_CHARS_IN_NOTIFICATIONS:
        context = context[:CONTEXT_CHARS_IN_NOTIFICATIONS] + "\n… (the rest on the decision page)"
    notify(
        Notification(
            topic="approval.requested",
            subject=f"Approval needed: {request.approval_type} for {request.agent_id}",
            text=f"{request.agent_id} asks for approval ({request.approval_type}); it expires at "
            f"{request.expires_at:%Y-%m-%d %H:%M:%S} UTC unless someone decides.\n\n{context}",
            link=settings.SITE_URL + reverse("approval-link", args=[signing.dumps(request.request_id, salt=LINK_SALT)]),
            data=request.as_dict(),
            key=message_key(request),
            buttons=[
                {"action": APPROVE_ACTION, "label": "Approve", "value": request.request_id, "style": "primary"},
                {"action": REJECT_ACTION, "label": "Reject", "value": request.request_id, "style": "danger"},
            ],
        )
    )


def message_key(request: ApprovalRequest) -> str:
    """The name of the messages that ask for a decision on `request`: they are updated with the outcome."""
    return f"approval:{request.request_id}"


def _outcome(request: ApprovalRequest) -> Notification:
    """What the messages that asked now say: who decided what, or that it expired or was cancelled."""
    if request.status in (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED):
        said = f"{request.status.capitalize()} by {request.responder_name} at {request.decided_at:%Y-%m-%d %H:%M:%S} UTC."
        said += f"\nReason: {request.reason}" if request.reason else ""
    else:
        said = request.reason
    subject = f"{request.status.capitalize()}: {request.approval_type} for {request.agent_id}"
    return Notification(topic=f"approval.{request.status}", subject=subject, text=said, data=request.as_dict())


def open_link(token: str) -> ApprovalRequest:
    """The request a notification's link names, marked used: a link opens its page once.
    BadSignature for a forged link; LinkUsed when it was opened before."""
    request_id = signing.loads(token, salt=LINK_SALT, max_age=LINK_MAX_AGE)
    request = ApprovalRequest.objects.get(request_id=request_id)
    if not ApprovalRequest.objects.filter(pk=request.pk, link_used_at__isnull=True).update(link_used_at=timezone.now()):
        raise LinkUsed
    return request


class LinkUsed(Exception):
    pass


def decide(request: ApprovalRequest, approved: bool, user, reason: str = "") -> bool:
    """Record `user`'s decision; False when the request was decided, cancelled or expired before."""
    status = ApprovalStatus.APPROVED if approved else ApprovalStatus.REJECTED
    fields = {"approved": approved, "responder": user, "responder_name": user.get_username(), "reason": reason}
    return _settle(request, status, "approval.decided", Q(expires_at__gt=timezone.now()), **fields)


def expire(request: ApprovalRequest) -> bool:
    """Mark a pending request past its timeout expired; False if it is not (or no longer) one."""
    reason = f"Expired: nobody decided within {request.timeout_seconds:g} s."
    due = Q(expires_at__lte=timezone.now())
    return _settle(request, ApprovalStatus.EXPIRED, "approval.expired", due, approved=False, reason=reason)


def cancel(request: ApprovalRequest) -> bool:
    return _settle(request, ApprovalStatus.CANCELLED, "approval.cancelled", Q(), approved=False, reason="Cancelled by the agent.")


def _settle(request: ApprovalRequest, status: str, event_type: str, condition: Q, **fields) -> bool:
    """Move `request` from pending to `status` if it is still pending and meets `condition`."""
    still_pending = ApprovalRequest.objects.filter(condition, pk=request.pk, status=ApprovalStatus.PENDING)
    with transaction.atomic():
        if not still_pending.update(status=status, decided_at=timezone.now(), **fields):
            request.refresh_from_db()
            return False
        request.refresh_from_db()
        updates = update_messages(message_key(request), _outcome(request))  # with the outcome: neither without the other
        transaction.on_commit(lambda: queue(updates))
        transaction.on_commit(lambda: _announce(request, event_type))
        transaction.on_commit(lambda: _wake(request.request_id))
    return True


def _announce(request: ApprovalRequest, event_type: str) -> None:
    """Publish how the request was settled, once (its settlement happens once)."""
    try:
        events.publish_once(f"approval:{request.request_id}", events.Event(event_type, request.as_dict()))
    except Exception:
        logger.exception("approvals: could not announce that %s was settled", request.request_id)


def _wake(request_id: str) -> None:
    try:
        wakeups.notify(wake_channel(request_id))
    except Exception:
        logger.exception("approvals: could not wake the agent waiting on %s; its wait ends at its timeout", request_id)


def expire_due() -> int:
    """The sweep: expire every pending request past its timeout; returns how many this call
    expired. Then it announces the expiries of the past ANNOUNCE_AGAIN that were not announced:
    a process killed between an expiry's commit and its event leaves that to the sweep."""
    now = timezone.now()
    due = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING, expires_at__lte=now)
    expired = sum(expire(request) for request in due.iterator())
    lately = ApprovalRequest.objects.filter(status=ApprovalStatus.EXPIRED, expires_at__gt=now - ANNOUNCE_AGAIN)
    lately = list(lately.only("request_id"))
    for request, done in zip(lately, events.announced([f"approval:{r.request_id}" for r in lately]), strict=True):
        if not done:
            request.refresh_from_db()
            transaction.on_commit(lambda request=request: _announce(request, "approval.expired"))
    return expired


def clear_expired(requests) -> int:
    """Delete the expired requests among `requests` (the SDK's clear_expired_requests)."""
    deleted, _ = requests.filter(status=ApprovalStatus.EXPIRED).delete()
    return deleted


async def wait(request: ApprovalRequest, timeout: float) -> ApprovalRequest:
    """The request once decided (or expired, or cancelled), or as it stands after `timeout` seconds."""

    async def settled() -> ApprovalRequest | None:
        current = await ApprovalRequest.objects.aget(pk=request.pk)
        if current.is_pending and current.expires_at <= timezone.now():
            await sync_to_async(expire)(current)
        return None if current.is_pending else current

    until_expiry = (request.expires_at - timezone.now()).total_seconds()
    # A little past the expiry, so the last check finds it due and expires it.
    limit = min(timeout, max(until_expiry, 0) + 0.05)
    return await wakeups.wait_until(settled, [wake_channel(request.request_id)], limit) or request
