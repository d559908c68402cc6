"""In Chromium: a superuser writes a policy in the admin; two of its three reviewers approve a
request on its page, each seeing the votes so far and who may still vote; a decision from the
list, with a reason, in one step."""

from __future__ import annotations

import httpx
import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from tests.conftest import logged_in_page, make_key, make_reviewer
from tests.services import asgi_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def people(django_user_model) -> str:
    """root (superuser), ann, bob and cat (reviewers in the group leads); the agent's key."""
    django_user_model.objects.create_superuser("root", password="pw")
    leads = Group.objects.create(name="leads")
    for name in ("ann", "bob", "cat"):
        make_reviewer(name, leads)
    return make_key("deployer")[1]


def test_a_policy_written_in_the_admin_needs_two_of_three_leads(server_env, people, browser):
    with asgi_server(server_env) as base:
        root = logged_in_page(browser, f"{base}/admin/approvals/approvalpolicy/add/", "root")
        root.fill("#id_name", "two leads")
        root.fill("#id_action_glob", "deploy")
        root.fill("#id_approvals_required", "3")
        root.select_option("#id_groups_from", label="leads")
        root.click("#id_groups_add")
        root.click("input[name=_save]")
        root.click("text=two leads")  # the list, then the policy again: 2 after all
        root.fill("#id_approvals_required", "2")
        root.click("input[name=_save]")
        expect(root.locator(".messagelist")).to_contain_text("was changed successfully")

        headers = {"Authorization": f"Api-Key {people}"}
        asked = httpx.post(f"{base}/api/v1/approvals", json={"approval_type": "deploy"}, headers=headers).json()
        change = f"{base}/admin/approvals/approvalrequest/"
        for name, message in (("ann", "Your vote is counted: 1 of 2 approvals."), ("bob", "Approved: deploy for deployer")):
            page = logged_in_page(browser, change, name)
            page.click("#result_list tbody tr:first-child th a")
            policy = page.locator(".field-policy_view").inner_text()
            assert "two leads: 2 approval(s) needed; who may decide: leads" in policy
            page.fill("#id_reason", f"{name} agrees")
            page.click("#approve")
            expect(page.locator(".messagelist")).to_contain_text(message)
            if name == "ann":
                assert "ann\tapprove\tann agrees" in page.locator("#votes").inner_text()
                assert page.locator(".field-may_still_vote_view").inner_text().endswith("bob, cat, root")  # a superuser may
                assert page.locator("#approve").count() == 0  # ann voted: no second vote
            page.close()

        cat = logged_in_page(browser, f"{change}?status__exact=all", "cat")
        cat.click("#result_list tbody tr:first-child th a")
        assert cat.locator("#approve").count() == 0 and "(nobody)" in cat.locator(".field-may_still_vote_view").inner_text()
        assert [row.split("\t")[2] for row in cat.locator("#audit-trail tr").all_inner_texts()[1:]] == [
            "requested",
            "notified",
            "vote",
            "vote",
            "decided",
        ]
        decided = httpx.get(f"{base}/api/v1/approvals/{asked['request_id']}", headers=headers).json()
        assert (decided["status"], decided["decision"]["responder"]) == ("approved", "ann, bob")

        # From the list, in one step: a reason in the row, then Reject; back on the list.
        spend = httpx.post(f"{base}/api/v1/approvals", json={"approval_type": "spend"}, headers=headers).json()
        root.goto(change)
        assert root.locator("#result_list tbody tr").count() == 1  # the pending one only
        root.fill("#result_list tbody tr:first-child input[name=reason]", "over budget")
        root.click("#result_list tbody tr:first-child .reject-row")
        expect(root.locator(".messagelist")).to_contain_text("Rejected: spend for deployer")
        assert root.url == change and root.locator("#result_list").count() == 0  # nothing pending is left
        rejected = httpx.get(f"{base}/api/v1/approvals/{spend['request_id']}", headers=headers).json()
        assert (rejected["status"], rejected["decision"]["reason"]) == ("rejected", "over budget")
