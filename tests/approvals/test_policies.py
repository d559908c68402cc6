"""Approval policies: which one a request follows, N-of-M votes with one rejection rejecting, who
may decide (groups, escalation), reminders and escalations once each, and concurrent votes
counted exactly once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.utils import timezone

from approvals import policies, selectors, services
from approvals.models import ApprovalPolicy, ApprovalRequest, AuditEntry, Vote
from core import streams
from notifications.models import Delivery, NotificationChannel
from tests.conftest import make_reviewer

pytestmark = pytest.mark.django_db


def reviewer(django_user_model, name: str, *groups: Group):
    return make_reviewer(name, *groups)


def test_the_first_policy_by_order_then_the_most_specific_matches():
    ApprovalPolicy.objects.create(name="any", agent_glob="*", action_glob="*")
    deploys = ApprovalPolicy.objects.create(name="deploys", agent_glob="*", action_glob="deploy")
    ApprovalPolicy.objects.create(name="prod deploys", agent_glob="prod-*", action_glob="deploy", enabled=False)
    assert policies.match("ci", "deploy") == deploys  # more literal characters than "any"
    assert policies.match("ci", "spend").name == "any"
    ApprovalPolicy.objects.filter(name="any").update(order=1)
    assert policies.match("ci", "deploy").name == "any"  # a lower order wins over specificity
    ApprovalPolicy.objects.all().delete()
    assert policies.match("ci", "deploy") is None


def test_without_a_policy_one_vote_decides_as_before(django_user_model):
    request = services.create("ci", "deploy", {}, 600)
    assert (request.policy, request.approvals_required, request.timeout_seconds) == (None, 1, 600)
    assert services.decide(request, True, reviewer(django_user_model, "ann"), "ok") is True
    assert (request.status, request.responder_name, request.reason) == ("approved", "ann", "ok")


def test_two_of_three_approve_and_one_rejection_rejects(django_user_model):
    ApprovalPolicy.objects.create(name="two", action_glob="deploy", approvals_required=2, timeout_seconds=7200)
    ann, bob, cat = (reviewer(django_user_model, name) for name in ("ann", "bob", "cat"))
    request = services.create("ci", "deploy", {}, 60)
    assert (request.policy.name, request.approvals_required, request.timeout_seconds) == ("two", 2, 7200)  # the policy's
    assert services.decide(request, True, ann, "first") is True
    assert request.status == "pending" and not selectors.may_decide(ann, request)
    assert services.decide(request, True, ann, "again") is False  # one vote each
    assert sorted(selectors.may_still_vote(request)) == ["bob", "cat"]
    assert services.decide(request, True, bob, "second") is True
    assert (request.status, request.responder_name, request.reason) == ("approved", "ann, bob", "second")
    assert services.decide(request, False, cat) is False and selectors.may_still_vote(request) == []

    rejected = services.create("ci", "deploy", {}, 60)
    services.decide(rejected, True, ann)
    assert services.decide(rejected, False, cat, "no") is True
    assert (rejected.status, rejected.responder_name, rejected.reason) == ("rejected", "cat", "no")
    events_of = AuditEntry.objects.filter(request_id=rejected.request_id).values_list("event", "actor")
    assert list(events_of) == [("requested", "ci"), ("vote", "ann"), ("vote", "cat"), ("decided", "cat")]


def test_groups_say_who_may_decide_and_escalation_adds_its_group(django_user_model, admin_client):
    leads, oncall = Group.objects.create(name="leads"), Group.objects.create(name="oncall")
    policy = ApprovalPolicy.objects.create(name="leads", escalate_after_seconds=60, escalate_to=oncall)
    policy.groups.add(leads)
    lead, pager, outsider = reviewer(django_user_model, "lead", leads), reviewer(django_user_model, "pager", oncall), None
    outsider = reviewer(django_user_model, "outsider")
    request = services.create("ci", "deploy", {}, 600)
    assert [selectors.may_decide(user, request) for user in (lead, pager, outsider)] == [True, False, False]
    with pytest.raises(PermissionDenied):
        services.decide(request, True, pager)
    assert not Vote.objects.exists() and request.status == "pending"
    ApprovalRequest.objects.filter(pk=request.pk).update(created_at=timezone.now() - timedelta(seconds=61))
    assert services.remind_and_escalate() == 1
    request.refresh_from_db()
    assert selectors.may_decide(pager, request) and not selectors.may_decide(outsider, request)
    assert selectors.may_still_vote(request) == ["admin", "lead", "pager"]
    page = admin_client.get(f"/admin/approvals/approvalrequest/{request.pk}/change/").content.decode()
    assert "leads: 1 approval(s) needed; who may decide: leads, oncall" in page and "admin, lead, pager" in page


def test_the_api_refuses_a_reviewer_outside_the_policys_groups(django_user_model, client):
    policy = ApprovalPolicy.objects.create(name="leads")
    policy.groups.add(Group.objects.create(name="leads"))
    client.force_login(reviewer(django_user_model, "outsider"))
    request = services.create("ci", "deploy", {}, 600)
    answer = client.post(f"/api/v1/approvals/{request.request_id}/decide", {"approved": True}, content_type="application/json")
    assert answer.status_code == 403
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"


def test_reminder_and_escalation_are_sent_once_each_to_their_topics(django_user_model):
    oncall = Group.objects.create(name="oncall")
    ApprovalPolicy.objects.create(name="slow", remind_after_seconds=60, escalate_after_seconds=600, escalate_to=oncall)
    channel = NotificationChannel.objects.create(
        name="ops", kind="email", target="ops@example.com", topics=["approval.reminder", "approval.escalated"]
    )
    request = services.create("ci", "deploy", {}, 3600)
    fresh = services.create("ci", "deploy", {}, 3600)
    assert services.remind_and_escalate() == 0
    ApprovalRequest.objects.filter(pk=request.pk).update(created_at=timezone.now() - timedelta(seconds=61))
    assert services.remind_and_escalate() == 1
    assert services.remind_and_escalate() == 0
    ApprovalRequest.objects.filter(pk=request.pk).update(created_at=timezone.now() - timedelta(seconds=601))
    assert services.remind_and_escalate() == 1
    assert services.remind_and_escalate() == 0
    sent = list(Delivery.objects.filter(channel=channel).order_by("pk").values_list("topic", "notification__subject"))
    assert sent == [
        ("approval.reminder", "Reminder: deploy for ci still waits"),
        ("approval.escalated", "Escalated: deploy for ci"),
    ]
    assert "Members of oncall may now decide it." in Delivery.objects.order_by("pk").last().notification["text"]
    trail = AuditEntry.objects.filter(request_id=request.request_id).values_list("event", flat=True)
    assert list(trail) == ["requested", "reminded", "escalated"]
    assert not AuditEntry.objects.filter(request_id=fresh.request_id).exclude(event="requested").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("rejecting", [0, 2])
def test_many_voters_at_once_are_counted_once_each_and_decide_once(django_user_model, rejecting):
    """Ten reviewers vote on a 3-of-M request at the same moment, each thread with its own
    database connection: exactly the votes that came before the settling one are counted, the
    request is decided once, and one approval.decided event is published."""
    ApprovalPolicy.objects.create(name="three", approvals_required=3)
    voters = [reviewer(django_user_model, f"r{n}") for n in range(10)]
    request = services.create("ci", "deploy", {}, 600)
    counted, start = {}, threading.Barrier(len(voters))

    def vote(user, approved):
        start.wait()
        try:
            counted[user.username] = services.decide(ApprovalRequest.objects.get(pk=request.pk), approved, user)
        finally:
            connection.close()

    threads = [threading.Thread(target=vote, args=(user, n >= rejecting)) for n, user in enumerate(voters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = ApprovalRequest.objects.get(pk=request.pk)
    votes = list(Vote.objects.filter(request=stored).order_by("pk"))
    assert sorted(v.username for v in votes) == sorted(name for name, won in counted.items() if won)
    assert len(counted) == 10
    if stored.status == "approved":
        assert [v.approved for v in votes] == [True, True, True]
    else:  # the first rejection, after fewer than three approvals
        assert stored.status == "rejected" and votes[-1].approved is False and all(v.approved for v in votes[:-1])
        assert len(votes) <= 3
    assert rejecting or stored.status == "approved"
    assert len(streams.recent("approval.decided", 10)) == 1
    assert list(AuditEntry.objects.filter(request_id=stored.request_id).values_list("event", flat=True)) == [
        "requested",
        "notified",
        *["vote"] * len(votes),
        "decided",
    ]
