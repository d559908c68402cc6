"""What other apps may read of the approval requests, and who may decide them."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models import Q, QuerySet
from django.utils import timezone

from approvals.models import DECIDE_PERMISSION, ApprovalRequest, ApprovalStatus

MAY_STILL_VOTE_SHOWN = 50  # names listed on a request's page


def waiting_count() -> int:
    """Requests waiting for a person: pending and not past their timeout."""
    return ApprovalRequest.objects.waiting().count()


def pending_since(moment: datetime) -> QuerySet[ApprovalRequest]:
    """Pending requests made at `moment` or earlier."""
    return ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING, created_at__lte=moment)


def request_by_id(request_id: str) -> ApprovalRequest | None:
    return ApprovalRequest.objects.filter(request_id=request_id).first()


def deciding_groups(request: ApprovalRequest) -> list[Group]:
    """The groups whose members may decide `request`; empty: anyone with the decide permission.
    Its policy's groups, and the escalation group once the request escalated."""
    policy = request.policy
    if policy is None:
        return []
    groups = list(policy.groups.all())
    if groups and request.escalated_at and policy.escalate_to:
        groups.append(policy.escalate_to)
    return groups


def allowed_to_decide(user, request: ApprovalRequest) -> bool:
    """`user` has the decide permission and, when the request's policy names groups, is in one
    of them (a superuser always is)."""
    if not (user.is_authenticated and user.is_active and user.has_perm(DECIDE_PERMISSION)):
        return False
    groups = deciding_groups(request)
    return user.is_superuser or not groups or user.groups.filter(pk__in=[group.pk for group in groups]).exists()


def may_decide(user, request: ApprovalRequest) -> bool:
    """Whether `user` may vote on `request` now: it is pending and not past its timeout, the user
    is allowed to decide it (allowed_to_decide) and has not voted on it yet. Every decision path
    (the admin, the API, services.decide) asks this."""
    return (
        request.is_pending
        and request.expires_at > timezone.now()
        and allowed_to_decide(user, request)
        and not has_voted(user, request)
    )


def has_voted(user, request: ApprovalRequest) -> bool:
    return request.votes.filter(user=user).exists()


def approvals_counted(request: ApprovalRequest) -> int:
    return request.votes.filter(approved=True).count()


def may_still_vote(request: ApprovalRequest) -> list[str]:
    """The usernames of those who may vote on `request` now (the first MAY_STILL_VOTE_SHOWN)."""
    if not request.is_pending or request.expires_at <= timezone.now():
        return []
    app_label, codename = DECIDE_PERMISSION.split(".")
    permission = Permission.objects.get(content_type__app_label=app_label, codename=codename)
    holders = Q(is_superuser=True) | Q(user_permissions=permission) | Q(groups__permissions=permission)
    users = get_user_model().objects.filter(holders, is_active=True)
    if groups := deciding_groups(request):
        users = users.filter(Q(is_superuser=True) | Q(groups__in=groups))  # a join of its own
    voted = request.votes.filter(user__isnull=False).values("user")
    found = users.exclude(pk__in=voted).distinct().order_by("username")
    return list(found.values_list("username", flat=True)[:MAY_STILL_VOTE_SHOWN])


def waiting() -> QuerySet[ApprovalRequest]:
    """Requests waiting for a person (pending, not past their timeout), newest first."""
    return ApprovalRequest.objects.waiting()
