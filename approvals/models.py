from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApprovalStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


DECIDE_PERMISSION = "approvals.decide_approvalrequest"


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
