"""Which policy a request follows: the enabled policies in order (lower `order` first; at equal
order the one with more literal characters in its globs first, then the older), the first whose
agent and action globs match. None: no policy, one decision by anyone with the decide permission."""

from __future__ import annotations

from approvals.models import ApprovalPolicy


def match(agent_id: str, approval_type: str) -> ApprovalPolicy | None:
    policies = sorted(ApprovalPolicy.objects.filter(enabled=True), key=lambda p: (p.order, -p.specificity, p.pk))
    return next((policy for policy in policies if policy.matches(agent_id, approval_type)), None)
