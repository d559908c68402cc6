"""The approval UI: pending requests first, the context readable, Approve and Reject for people
with the approve permission. Nothing here changes a request except a decision (a POST)."""

from __future__ import annotations

import json
from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Count, Q, Value, When
from django.http import HttpResponseBadRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.timesince import timesince, timeuntil

from approvals import audit, selectors, services
from approvals.models import DECIDE_PERMISSION, ApprovalPolicy, ApprovalRequest, ApprovalStatus

FOLD_CHARS = 300  # context texts longer than this are folded

admin.site.index_template = "admin/approvals_index.html"  # the admin index shows the pending count


class AgeFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"
    AGES = {"5m": timedelta(minutes=5), "1h": timedelta(hours=1), "1d": timedelta(days=1)}

    def lookups(self, request, model_admin):
        return [("5m", "under 5 minutes"), ("1h", "under an hour"), ("1d", "under a day"), ("older", "a day or more")]

    def queryset(self, request, queryset):
        if self.value() in self.AGES:
            return queryset.filter(created_at__gte=timezone.now() - self.AGES[self.value()])
        if self.value() == "older":
            return queryset.filter(created_at__lt=timezone.now() - self.AGES["1d"])
        return queryset


class StatusFilter(admin.SimpleListFilter):
    """The status, pending unless another is chosen: the list opens on what waits for a decision."""

    title = "status"
    parameter_name = "status__exact"

    def lookups(self, request, model_admin):
        return [*ApprovalStatus.choices, ("all", "All")]

    def choices(self, changelist):
        for value, title in self.lookup_choices:
            query = changelist.get_query_string({self.parameter_name: value})
            yield {"selected": self.chosen() == value, "query_string": query, "display": title}

    def chosen(self) -> str:
        return self.value() or ApprovalStatus.PENDING

    def queryset(self, request, queryset):
        return queryset if self.chosen() == "all" else queryset.filter(status=self.chosen())


def render_context(context: dict) -> str:
    """Each entry of the context as pretty JSON; long texts folded behind their beginning."""

    def value_html(value):
        if isinstance(value, str) and len(value) > FOLD_CHARS:
            return format_html("<details><summary>{}…</summary><pre>{}</pre></details>", value[:120], value)
        return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))

    rows = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", ((name, value_html(v)) for name, v in context.items()))
    return format_html("<table class='approval-context'>{}</table>", rows)


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(admin.ModelAdmin):
    list_display = ["action", "agent_id", "status_badge", "age", "time_left", "approvals", "decide_inline", "responder_name"]
    list_filter = [StatusFilter, "approval_type", "agent_id", AgeFilter]
    search_fields = ["request_id", "approval_type", "agent_id", "reason"]
    ordering = [Case(When(status=ApprovalStatus.PENDING, then=Value(0)), default=Value(1)).asc(), "-created_at"]
    fields = [
        "request_id",
        "approval_type",
        "agent_id",
        "status",
        "context_view",
        "created_at",
        "timeout_seconds",
        "expires_at",
        "approved",
        "responder_name",
        "reason",
        "decided_at",
        "link_used_at",
        "policy_view",
        "votes_view",
        "may_still_vote_view",
        "reminded_at",
        "escalated_at",
        "audit_trail",
    ]
    readonly_fields = fields
    actions = ["approve_selected", "reject_selected"]

    def has_add_permission(self, request) -> bool:
        return False  # agents ask through the API

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a request changes only by a decision (the buttons), never by editing

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # kept for audit; agents purge expired ones with clear_expired_requests

    def has_decide_permission(self, request) -> bool:
        return request.user.has_perm(DECIDE_PERMISSION)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(approvals_so_far=Count("votes", filter=Q(votes__approved=True)))

    def get_ordering(self, request):
        if request.GET.get(StatusFilter.parameter_name, ApprovalStatus.PENDING) == ApprovalStatus.PENDING:
            return ["created_at", "pk"]  # the one waiting longest first
        return self.ordering

    def changelist_view(self, request, extra_context=None):
        """Marks the listed requests this user may vote on: their rows get a reason and the buttons."""
        response = super().changelist_view(request, extra_context)
        if getattr(response, "context_data", None) and "cl" in response.context_data:
            for obj in response.context_data["cl"].result_list:
                obj.may_decide = self.has_decide_permission(request) and selectors.may_decide(request.user, obj)
        return response

    @admin.display(description="action", ordering="approval_type")
    def action(self, obj: ApprovalRequest) -> str:
        return obj.approval_type

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: ApprovalRequest) -> str:
        return timesince(obj.created_at)

    @admin.display(description="time left", ordering="expires_at")
    def time_left(self, obj: ApprovalRequest) -> str:
        return timeuntil(obj.expires_at) if obj.is_pending and obj.expires_at > timezone.now() else "-"

    @admin.display(description="approvals")
    def approvals(self, obj: ApprovalRequest) -> str:
        return f"{obj.approvals_so_far} of {obj.approvals_required}"

    @admin.display(description="decide")
    def decide_inline(self, obj: ApprovalRequest):
        """A reason and the buttons, tied to a form of this row outside the list's own form
        (change_list.html): one step from the list."""
        if not getattr(obj, "may_decide", False):
            return ""
        return format_html(
            '<input name="reason" form="decide-{0}" placeholder="reason" size="16" aria-label="reason"> '
            '<button form="decide-{0}" name="decision" value="approve" class="approve-row">Approve</button> '
            '<button form="decide-{0}" name="decision" value="reject" class="reject-row">Reject</button>',
            obj.pk,
        )

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: ApprovalRequest):
        colours = {"pending": "#b26b00", "approved": "#2e7d32", "rejected": "#ba2121"}
        return format_html('<b style="color:{}">{}</b>', colours.get(obj.status, "#666"), obj.status)

    @admin.display(description="context")
    def context_view(self, obj: ApprovalRequest):
        return render_context(obj.context) if obj.context else "(none)"

    @admin.display(description="policy")
    def policy_view(self, obj: ApprovalRequest):
        if obj.policy is None:
            return "(none: one decision by anyone with the approve permission)"
        groups = ", ".join(group.name for group in selectors.deciding_groups(obj)) or "anyone with the approve permission"
        return format_html("{}: {} approval(s) needed; who may decide: {}", obj.policy.name, obj.approvals_required, groups)

    @admin.display(description="votes")
    def votes_view(self, obj: ApprovalRequest):
        votes = obj.votes.all()
        if not votes:
            return "(none yet)"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((v.username, "approve" if v.approved else "reject", v.reason, f"{v.at:%Y-%m-%d %H:%M:%S}") for v in votes),
        )
        return format_html("<table id='votes'><tr><th>who</th><th>vote</th><th>reason</th><th>at (UTC)</th></tr>{}</table>", rows)

    @admin.display(description="may still vote")
    def may_still_vote_view(self, obj: ApprovalRequest):
        return ", ".join(selectors.may_still_vote(obj)) or "(nobody)"

    @admin.display(description="audit trail")
    def audit_trail(self, obj: ApprovalRequest):
        entries = audit.trail(obj.request_id)
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            ((e.seq, f"{e.at:%Y-%m-%d %H:%M:%S}", e.event, e.actor, e.data[:200], e.hash[:16]) for e in entries),
        )
        head = "<tr><th>#</th><th>at (UTC)</th><th>event</th><th>by</th><th>data</th><th>hash</th></tr>"
        return format_html("<table id='audit-trail'>" + head + "{}</table>", rows)

    @admin.action(description="Approve the selected pending requests", permissions=["decide"])
    def approve_selected(self, request, queryset):
        return self._decide_all(request, queryset, approved=True)

    @admin.action(description="Reject the selected pending requests", permissions=["decide"])
    def reject_selected(self, request, queryset):
        return self._decide_all(request, queryset, approved=False)

    def _decide_all(self, request, queryset, approved: bool):
        """First a page that lists the selected requests still pending; its confirmation decides
        exactly those (by id: with "select all", requests that arrived since are not among them),
        each only if it is still pending then."""
        verb = "Approve" if approved else "Reject"
        if request.POST.get("confirmed") != "yes" or request.POST.get("select_across") == "1":
            pending = list(queryset.filter(status=ApprovalStatus.PENDING).order_by("created_at"))
            if not pending:
                self.message_user(request, "None of the selected requests is pending.", messages.WARNING)
                return None
            context = {
                **self.admin_site.each_context(request),
                "title": f"{verb} these {len(pending)} pending request(s)?",
                "opts": self.model._meta,
                "requests": pending,
                "action": "approve_selected" if approved else "reject_selected",
                "verb": verb,
            }
            return TemplateResponse(request, "admin/approvals/approvalrequest/decide_selected.html", context)
        listed = list(queryset.order_by("pk"))  # the confirmation posts the listed ids, never "select all"
        gone = sum(not obj.is_pending for obj in listed)
        mine = [obj for obj in listed if selectors.may_decide(request.user, obj)]
        counted = sum(services.decide(obj, approved, request.user) for obj in mine)
        decided = sum(not obj.is_pending for obj in mine)  # (decide refreshes them)
        done = "Approved" if approved else "Rejected"
        message = f"{done} {decided} request(s)."
        if counted > decided:
            message += f" {counted - decided} still wait for other approvals."
        if gone:
            message += f" {gone} were no longer pending."
        if len(listed) - counted - gone:
            message += f" {len(listed) - counted - gone} were not yours to decide (or you voted already)."
        self.message_user(request, message)
        return None

    def get_urls(self):
        decide = self.admin_site.admin_view(self.decide_view)
        return [path("<path:object_id>/decide/", decide, name="approvals_approvalrequest_decide"), *super().get_urls()]

    def decide_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_decide_permission(request):
            raise PermissionDenied
        obj = get_object_or_404(ApprovalRequest, pk=object_id)
        if not selectors.allowed_to_decide(request.user, obj):
            raise PermissionDenied
        decision = request.POST.get("decision")
        if decision not in ("approve", "reject"):
            return HttpResponseBadRequest("decision must be approve or reject")
        if not services.decide(obj, decision == "approve", request.user, request.POST.get("reason", "")[:5000]):
            why = "you voted on it already" if obj.is_pending else f"the request is already {obj.status}"
            self.message_user(request, f"Not counted: {why}.", messages.WARNING)
        elif obj.is_pending:
            approvals = obj.votes.filter(approved=True).count()
            self.message_user(request, f"Your vote is counted: {approvals} of {obj.approvals_required} approvals.")
        else:
            self.message_user(request, f"{'Approved' if obj.approved else 'Rejected'}: {obj}.")
        listing = reverse("admin:approvals_approvalrequest_changelist")
        back = request.POST.get("next", "")
        if back.startswith(listing) and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
            return HttpResponseRedirect(back)  # decided from the list: back to it, filters kept
        return HttpResponseRedirect(reverse("admin:approvals_approvalrequest_change", args=[obj.pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        may = obj is not None and selectors.may_decide(request.user, obj)
        extra = {"may_decide": may, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(admin.ModelAdmin):
    list_display = ["name", "order", "enabled", "agent_glob", "action_glob", "approvals_required", "timeout_seconds"]
    list_editable = ["order", "enabled"]
    list_filter = ["enabled"]
    search_fields = ["name", "agent_glob", "action_glob"]
    filter_horizontal = ["groups"]
    fieldsets = [
        (None, {"fields": ["name", "order", "enabled", "agent_glob", "action_glob"]}),
        ("Who decides", {"fields": ["approvals_required", "groups"]}),
        ("When nobody answers", {"fields": ["remind_after_seconds", "escalate_after_seconds", "escalate_to", "timeout_seconds"]}),
    ]
