from django import template

from approvals.models import ApprovalRequest

register = template.Library()


@register.simple_tag
def pending_approvals() -> int:
    """How many requests wait for a decision now (those past their timeout do not)."""
    return ApprovalRequest.objects.waiting().count()
