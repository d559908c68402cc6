"""/metrics: approval requests waiting for a person, and how long the oldest has waited."""

from __future__ import annotations

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from approvals.models import ApprovalRequest


class ApprovalMetrics:
    def collect(self):
        waiting = ApprovalRequest.objects.waiting().aggregate(n=Count("id"), oldest=Min("created_at"))
        yield GaugeMetricFamily("telemetry_approvals_pending", "Approval requests waiting for a decision", value=waiting["n"])
        age = (timezone.now() - waiting["oldest"]).total_seconds() if waiting["oldest"] else 0
        yield GaugeMetricFamily(
            "telemetry_approvals_oldest_pending_age_seconds", "How long the oldest waiting request has waited", value=age
        )
