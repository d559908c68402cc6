from __future__ import annotations

import json
import uuid
from datetime import UTC, timedelta
from fnmatch import fnmatchcase

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone


class ApprovalStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


DECIDE_PERMISSION = "approvals.decide_approvalrequest"
GENESIS_HASH = "0" * 64  # the previous hash of the audit chain's first entry


class ApprovalRequestQuerySet(models.QuerySet):
    def waiting(self):
        """Pending and not yet past their timeout: the requests waiting for a person."""
        return self.filter(status=ApprovalStatus.PENDING, expires_at__gt=timezone.now())


def new_request_id() -> str:
    return uuid.uuid4().hex


class ApprovalRequest(models.Model):
    """An agent's request for a person's yes or no, and the answer.

    It is decided once: every change of `status` is a conditional update from `pending`, so two
    reviewers deciding at once record one decision, and a decided request never changes again.
    """

    request_id = models.CharField(max_length=64, unique=True, default=new_request_id, editable=False)
    approval_type = models.CharField(max_length=100, db_index=True)
    agent_id = models.CharField(max_length=200, db_index=True)
    context = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    timeout_seconds = models.FloatField()
    expires_at = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=20, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING, db_index=True)

    approved = models.BooleanField(null=True, blank=True)
    responder = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    responder_name = models.CharField(max_length=150, blank=True, default="", help_text="Kept if the user is deleted.")
    reason = models.TextField(blank=True, default="")
    decided_at = models.DateTimeField(null=True, blank=True)
    link_used_at = models.DateTimeField(null=True, blank=True, help_text="When the notification's link was opened.")

    policy = models.ForeignKey("ApprovalPolicy", null=True, blank=True, on_delete=models.SET_NULL, related_name="requests")
    approvals_required = models.PositiveSmallIntegerField(default=1, help_text="From the policy when the request was made.")
    reminded_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)

    objects = ApprovalRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("decide_approvalrequest", "Can approve or reject approval requests")]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.approval_type} for {self.agent_id} ({self.status})"

    def save(self, *args, **kwargs):
        if self.expires_at is None:
            self.expires_at = self.created_at + timedelta(seconds=self.timeout_seconds)
        super().save(*args, **kwargs)

    @property
    def is_pending(self) -> bool:
        return self.status == ApprovalStatus.PENDING

    def response(self) -> dict:
        """The answer as the SDK's ApprovalResponse carries it, with the request's status."""
        return {
            "request_id": self.request_id,
            "status": self.status,
            "approved": bool(self.approved),
            "responder": self.responder_name,
            "reason": self.reason,
            "timestamp": (self.decided_at or timezone.now()).isoformat(),
        }

    def as_dict(self) -> dict:
        return {
            "request_id": self.request_id,
            "approval_type": self.approval_type,
            "agent_id": self.agent_id,
            "context": self.context,
            "timestamp": self.created_at.isoformat(),
            "timeout_seconds": self.timeout_seconds,
            "expires_at": self.expires_at.isoformat(),
            "status": self.status,
            "decision": None if self.is_pending else self.response(),
        }


class ApprovalPolicy(models.Model):
    """How requests of some agents and actions are decided: by how many people, of which groups,
    with a reminder and an escalation when nobody answers. A request takes the first policy that
    matches it (see `approvals.policies.match`); with none, one decision by anyone with the decide
    permission."""

    name = models.CharField(max_length=100, unique=True)
    order = models.PositiveIntegerField(default=100, help_text="Lower first; at equal order, the more specific globs first.")
    enabled = models.BooleanField(default=True)
    agent_glob = models.CharField(max_length=200, default="*", help_text="Agents it covers, e.g. deploy-* (fnmatch).")
    action_glob = models.CharField(max_length=100, default="*", help_text="Approval types it covers, e.g. spend:*.")
    approvals_required = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1)], help_text="Distinct people who must approve; one rejection rejects."
    )
    groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="+", help_text="Who may decide; none: anyone with the decide permission."
    )
    remind_after_seconds = models.FloatField(null=True, blank=True, validators=[MinValueValidator(1)])
    escalate_after_seconds = models.FloatField(null=True, blank=True, validators=[MinValueValidator(1)])
    escalate_to = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", help_text="May decide once escalated."
    )
    timeout_seconds = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="When set, replaces the timeout the agent asked for."
    )

    class Meta:
        verbose_name_plural = "approval policies"
        ordering = ["order", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.escalate_after_seconds and not self.escalate_to_id:
            raise ValidationError({"escalate_to": "Say which group the escalation goes to."})
        if self.escalate_to_id and not self.escalate_after_seconds:
            raise ValidationError({"escalate_after_seconds": "Say after how long the request escalates."})

    def matches(self, agent_id: str, approval_type: str) -> bool:
        return fnmatchcase(agent_id, self.agent_glob) and fnmatchcase(approval_type, self.action_glob)

    @property
    def specificity(self) -> int:
        """How many characters of its globs are not wildcards: more is more specific."""
        return sum(ch not in "*?[]" for ch in self.agent_glob + self.action_glob)


class Vote(models.Model):
    """One person's yes or no on a request; each person votes once."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    username = models.CharField(max_length=150, help_text="Kept if the user is deleted.")
    approved = models.BooleanField()
    reason = models.TextField(blank=True, default="")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]
        constraints = [models.UniqueConstraint(fields=["request", "user"], name="one_vote_per_person")]

    def __str__(self) -> str:
        return f"{self.username}: {'approve' if self.approved else 'reject'}"


class AuditHead(models.Model):
    """The one row that names the chain's last entry: appends lock it, so the chain never forks."""

    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"head at #{self.seq}"


class AuditEntry(models.Model):
    """One approval event in the hash chain (approvals.audit). It names its request by request_id,
    not by a foreign key: entries outlive the requests purged by clear_expired_requests."""

    seq = models.PositiveBigIntegerField(unique=True)
    at = models.DateTimeField()
    event = models.CharField(max_length=40)
    request_id = models.CharField(max_length=64, db_index=True)
    actor = models.CharField(max_length=200, blank=True, default="")
    data = models.TextField(default="{}", help_text="Canonical JSON: stored as hashed, never re-encoded by the database.")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["seq"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"#{self.seq} {self.event} {self.request_id}"

    def body(self) -> dict:
        """What the hash covers, besides the previous hash."""
        return {
            "seq": self.seq,
            "at": self.at.astimezone(UTC).isoformat(timespec="microseconds"),
            "event": self.event,
            "request_id": self.request_id,
            "actor": self.actor,
            "data": json.loads(self.data),
        }
