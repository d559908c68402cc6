"""What other apps may read of the approval requests."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from approvals.models import DECIDE_PERMISSION, ApprovalRequest, ApprovalStatus


def waiting_count() -> int:
    """Requests waiting for a person: pending and not past their timeout."""
    return ApprovalRequest.objects.waiting().count()


def pending_since(moment: datetime) -> QuerySet[ApprovalRequest]:
    """Pending requests made at `moment` or earlier."""
    return ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING, created_at__lte=moment)


def request_by_id(request_id: str) -> ApprovalRequest | None:
    return ApprovalRequest.objects.filter(request_id=request_id).first()


def may_decide(user, request: ApprovalRequest) -> bool:
    """Whether `user` may decide `request` (the admin, the API and chat ask this): an active user
    holding the approve permission."""
    return user.has_perm(DECIDE_PERMISSION)
