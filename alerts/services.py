"""Opening and closing alerts: once per transition, however many evaluations run at once."""

from __future__ import annotations

import hashlib
import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from alerts.models import Alert, AlertRule
from alerts.rules import Finding, findings
from core import events
from notifications import services as notifications

logger = logging.getLogger(__name__)
SUBJECT_LENGTH = Alert._meta.get_field("subject").max_length


def evaluate_all() -> dict[str, int]:
    """Every enabled rule; how many alerts opened and closed. A rule that fails is logged and
    the others still run."""
    opened = closed = 0
    for rule in AlertRule.objects.filter(enabled=True):
        try:
            rule_opened, rule_closed = evaluate(rule)
        except Exception:
            logger.exception("alerts: evaluating rule %r failed", rule.name)
            continue
        opened, closed = opened + rule_opened, closed + rule_closed
    return {"opened": opened, "closed": closed}


def evaluate(rule: AlertRule) -> tuple[int, int]:
    """Open an alert for each subject newly found, close those no longer found; each announced as
    soon as it is recorded, so a failure later on loses no announcement."""
    open_alerts = {alert.subject: alert for alert in rule.alerts.filter(closed_at__isnull=True)}
    found = findings(rule, open_alerts)
    opened = closed = 0
    for subject, finding in found.items():
        if subject not in open_alerts and _open(rule, subject, finding):
            opened += 1
    for subject, alert in open_alerts.items():
        if subject not in found and _close(rule, alert):
            closed += 1
    return opened, closed


def _open(rule: AlertRule, subject: str, finding: Finding) -> Alert | None:
    """The new alert, announced; None when another evaluation opened it first."""
    if len(subject) > SUBJECT_LENGTH:  # agent and job names can be long: keep it unique, not whole
        subject = subject[: SUBJECT_LENGTH - 17] + "~" + hashlib.sha256(subject.encode()).hexdigest()[:16]
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                rule=rule, subject=subject, summary=finding.summary[:500], details=finding.details, opened_at=timezone.now()
            )
            _announce(rule, alert, "alert.opened", f"[alert] {alert.summary}", f"{rule.name}: {alert.summary}")
            return alert
    except IntegrityError:
        return None


def _close(rule: AlertRule, alert: Alert) -> bool:
    """Close and announce it; whether this call closed it (another evaluation may have)."""
    now = timezone.now()
    with transaction.atomic():
        if not Alert.objects.filter(pk=alert.pk, closed_at__isnull=True).update(closed_at=now):
            return False
        alert.closed_at = now
        _announce(rule, alert, "alert.closed", f"[resolved] {alert.summary}", f"{rule.name} is resolved: {alert.summary}")
    return True


def _announce(rule: AlertRule, alert: Alert, event_type: str, subject: str, text: str) -> None:
    """Inside the transaction that opened or closed `alert`, so that it and its deliveries stand
    together or not at all: a worker killed half-way leaves the next evaluation to do it again."""
    events.publish(events.Event(event_type, alert.as_dict()))
    channels = list(rule.channels.filter(enabled=True))
    if channels:
        notification = notifications.Notification(topic=event_type, subject=subject, text=text, data=alert.as_dict())
        deliveries = notifications.record(notification, channels)
        transaction.on_commit(lambda: notifications.queue(deliveries), robust=True)
