"""What other apps may read of the approval requests."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from approvals.models import ApprovalRequest, ApprovalStatus


def waiting_count() -> int:
    """Requests waiting for a person: pending and not past their timeout."""
    return ApprovalRequest.objects.waiting().count()


def pending_since(moment: datetime) -> QuerySet[ApprovalRequest]:
    """Pending requests made at `moment` or earlier."""
    return ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING, created_at__lte=moment)


def waiting() -> QuerySet[ApprovalRequest]:
    """Requests waiting for a person (pending, not past their timeout), newest first."""
    return ApprovalRequest.objects.waiting()
