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
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from approvals import audit, policies, selectors
from approvals.models import ApprovalRequest, ApprovalStatus, Vote
from core import events, wakeups
from notifications.services import Notification, queue, record, update_messages

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
    """A pending request, under the policy that matches it (whose timeout, when it has one,
    replaces the agent's: the response tells the agent the one that holds)."""
    policy = policies.match(agent_id, approval_type)
    with transaction.atomic():
        request = ApprovalRequest.objects.create(
            agent_id=agent_id,
            approval_type=approval_type,
            context=context,
            timeout_seconds=policy.timeout_seconds if policy and policy.timeout_seconds else timeout_seconds,
            policy=policy,
            approvals_required=policy.approvals_required if policy else 1,
        )
        audit.append(
            "requested",
            request.request_id,
            agent_id,
            approval_type=approval_type,
            context=context,
            timeout_seconds=request.timeout_seconds,
            expires_at=request.expires_at.isoformat(),
            policy=policy.name if policy else None,
            approvals_required=request.approvals_required,
        )
        events.publish(events.Event("approval.requested", request.as_dict()))
        transaction.on_commit(lambda: notify_reviewers(request), robust=True)  # the request stands regardless
    return request


def notify_reviewers(request: ApprovalRequest) -> None:
    """Tell the channels that hear `approval.requested`, with a link to the decision page."""
    context = json.dumps(request.context, indent=2, ensure_ascii=False, default=str)
    if len(context) > CONTEXT_CHARS_IN_NOTIFICATIONS:
        context = context[:CONTEXT_CHARS_IN_NOTIFICATIONS] + "\n… (the rest on the decision page)"
    notification = Notification(
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
    with transaction.atomic():
        ids = record(notification)
        audit.append("notified", request.request_id, topic=notification.topic, deliveries=len(ids))
    queue(ids)


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
    """Cast `user`'s vote on `request`. Returns True when the vote was counted: the request was
    pending, not past its timeout, and `user` had not voted on it; False otherwise. The vote
    settles the request when it makes `approvals_required` approvals (approved) or is a rejection
    (rejected): without a policy one vote, as one decision did. PermissionDenied when `user` may not
    decide it (selectors.allowed_to_decide). Votes on a request queue on its row, so each is
    counted once and one of them settles it."""
    with transaction.atomic():
        current = ApprovalRequest.objects.select_for_update().get(pk=request.pk)
        if not selectors.may_decide(user, current):
            request.refresh_from_db()
            if current.is_pending and not selectors.allowed_to_decide(user, current):
                raise PermissionDenied("Deciding this request needs the approve permission (and one of its policy's groups).")
            return False
        Vote.objects.create(request=current, user=user, username=user.get_username(), approved=approved, reason=reason)
        audit.append("vote", current.request_id, user.get_username(), approved=approved, reason=reason)
        approvers = list(current.votes.filter(approved=True).values_list("username", flat=True))
        if approved and len(approvers) < current.approvals_required:
            request.refresh_from_db()
            return True
        status = ApprovalStatus.APPROVED if approved else ApprovalStatus.REJECTED
        names = ", ".join(approvers) if approved else user.get_username()
        fields = {"approved": approved, "responder": user, "responder_name": names[:150], "reason": reason}
        if not _settle(request, status, "approval.decided", Q(expires_at__gt=timezone.now()), user.get_username(), **fields):
            transaction.set_rollback(True)  # it expired this very moment: the vote came too late
            return False
    return True


def expire(request: ApprovalRequest) -> bool:
    """Mark a pending request past its timeout expired; False if it is not (or no longer) one."""
    reason = f"Expired: nobody decided within {request.timeout_seconds:g} s."
    due = Q(expires_at__lte=timezone.now())
    return _settle(request, ApprovalStatus.EXPIRED, "approval.expired", due, "", approved=False, reason=reason)


def cancel(request: ApprovalRequest) -> bool:
    reason = "Cancelled by the agent."
    return _settle(request, ApprovalStatus.CANCELLED, "approval.cancelled", Q(), request.agent_id, approved=False, reason=reason)


def _settle(request: ApprovalRequest, status: str, event_type: str, condition: Q, actor: str, **fields) -> bool:
    """Move `request` from pending to `status` if it is still pending and meets `condition`."""
    still_pending = ApprovalRequest.objects.filter(condition, pk=request.pk, status=ApprovalStatus.PENDING)
    with transaction.atomic():
        if not still_pending.update(status=status, decided_at=timezone.now(), **fields):
            request.refresh_from_db()
            return False
        request.refresh_from_db()
        audit_event = event_type.removeprefix("approval.")
        audit.append(audit_event, request.request_id, actor, status=status, approved=request.approved, reason=request.reason)
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


def remind_and_escalate() -> int:
    """Beat's sweep: remind the channels of the waiting requests whose policy's reminder delay has
    passed, and escalate those past its escalation delay; once each (a conditional update claims
    it). Returns how many notifications it sent."""
    now = timezone.now()
    waiting = ApprovalRequest.objects.waiting().filter(policy__isnull=False).select_related("policy", "policy__escalate_to")
    sent = 0
    for request in waiting.filter(Q(reminded_at__isnull=True) | Q(escalated_at__isnull=True)):
        policy = request.policy
        if request.reminded_at is None and _due(request, policy.remind_after_seconds, now):
            sent += _nudge(request, "reminded_at", "approval.reminder")
        if request.escalated_at is None and policy.escalate_to and _due(request, policy.escalate_after_seconds, now):
            sent += _nudge(request, "escalated_at", "approval.escalated")
    return sent


def _due(request: ApprovalRequest, after_seconds: float | None, now) -> bool:
    return after_seconds is not None and request.created_at + timedelta(seconds=after_seconds) <= now


def _nudge(request: ApprovalRequest, field: str, topic: str) -> bool:
    """Mark `field` and tell the channels of `topic`, once: False if another sweep did it first."""
    with transaction.atomic():
        unclaimed = ApprovalRequest.objects.filter(pk=request.pk, status=ApprovalStatus.PENDING, **{f"{field}__isnull": True})
        if not unclaimed.update(**{field: timezone.now()}):
            return False
        request.refresh_from_db()
        ids = record(_nudge_notification(request, topic))
        group = request.policy.escalate_to.name if topic == "approval.escalated" else None
        audit.append(field.removesuffix("_at"), request.request_id, topic=topic, deliveries=len(ids), group=group)
        transaction.on_commit(lambda: queue(ids))
    return True


def _nudge_notification(request: ApprovalRequest, topic: str) -> Notification:
    votes = request.votes.filter(approved=True).count()
    if topic == "approval.escalated":
        subject = f"Escalated: {request.approval_type} for {request.agent_id}"
        who = f"Members of {request.policy.escalate_to.name} may now decide it."
    else:
        subject = f"Reminder: {request.approval_type} for {request.agent_id} still waits"
        who = "It still waits for a decision."
    return Notification(
        topic=topic,
        subject=subject,
        text=f"{request.agent_id} asked for approval ({request.approval_type}) at {request.created_at:%Y-%m-%d %H:%M:%S} "
        f"UTC. {who} {votes} of {request.approvals_required} approvals so far; it expires at "
        f"{request.expires_at:%Y-%m-%d %H:%M:%S} UTC.",
        link=settings.SITE_URL + reverse("admin:approvals_approvalrequest_change", args=[request.pk]),
        data=request.as_dict(),
    )
