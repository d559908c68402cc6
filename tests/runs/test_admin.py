import html
import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from runs.models import Run, RunEvent
from tests.conftest import make_operator
from tests.runs.factories import run_payload

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/runs/run/"


@pytest.fixture
def runs() -> list[Run]:
    return [
        Run.objects.create(**run_payload(agent_name="alpha", job_type="crawl", status="running")),
        Run.objects.create(**run_payload(agent_name="alpha", job_type="index", status="success")),
        Run.objects.create(**run_payload(agent_name="beta", job_type="crawl", status="running")),
    ]


def test_the_changelist_filters_and_searches(admin_client, runs):
    page = admin_client.get(CHANGELIST, {"status__exact": "running", "agent_name__exact": "alpha"})
    assert page.status_code == 200
    assert runs[0].run_id in page.content.decode()
    assert runs[1].run_id not in page.content.decode() and runs[2].run_id not in page.content.decode()
    found = admin_client.get(CHANGELIST, {"q": runs[2].event_id}).content.decode()
    assert runs[2].run_id in found and runs[0].run_id not in found


def test_the_changelist_query_count_does_not_grow_with_rows(admin_client, runs, django_assert_max_num_queries):
    for _ in range(100):
        Run.objects.create(**run_payload())
    with django_assert_max_num_queries(12):
        assert admin_client.get(CHANGELIST).status_code == 200


def test_mark_cancelled_touches_only_running_runs(admin_client, runs):
    selected = [str(run.pk) for run in runs[:2]]
    admin_client.post(CHANGELIST, {"action": "mark_cancelled", "_selected_action": selected})
    statuses = dict(Run.objects.values_list("pk", "status"))
    assert statuses == {runs[0].pk: "cancelled", runs[1].pk: "success", runs[2].pk: "running"}
    cancelled = Run.objects.get(pk=runs[0].pk)
    assert cancelled.end_time is not None and "admin" in cancelled.error_summary


def test_export_csv_and_json_of_the_selection(admin_client, runs):
    selected = [str(runs[0].pk), str(runs[2].pk)]
    csv_response = admin_client.post(CHANGELIST, {"action": "export_csv", "_selected_action": selected})
    lines = b"".join(csv_response.streaming_content).decode().strip().splitlines()
    assert lines[0].startswith("event_id,run_id") and len(lines) == 3
    json_response = admin_client.post(CHANGELIST, {"action": "export_json", "_selected_action": selected})
    exported = json.loads(b"".join(json_response.streaming_content))
    assert sorted(r["event_id"] for r in exported) == sorted([runs[0].event_id, runs[2].event_id])
    assert json_response["Content-Disposition"].startswith("attachment; filename=")


def test_the_change_page_shows_the_latest_events(admin_client, runs):
    for index in range(60):
        RunEvent.objects.create(run=runs[0], event_id=f"e{index}", event_type=f"step-{index:02d}")
    page = admin_client.get(f"{CHANGELIST}{runs[0].pk}/change/").content.decode()
    assert "step-59" in page and "step-10" in page and "step-09" not in page


def link(page: str, anchor_id: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" id="{anchor_id}">', page)
    return html.unescape(found.group(1)) if found else None


def test_the_change_page_links_the_runs_events_llm_calls_and_traces_to_whom_may_view_them(client, django_user_model, runs):
    from django.contrib.auth.models import Permission

    from quality.models import LlmUsage
    from traces.models import Span

    long_ago = timezone.now() - timedelta(days=30)  # the traces page's week does not hide a run's traces
    for index, run in enumerate(runs[:2]):
        RunEvent.objects.create(run=run, event_id=f"event-{index}", event_type=f"step-of-run-{index}")
        LlmUsage.objects.create(event_id=f"usage-{index}", run=run, agent_name=run.agent_name, model=f"model-of-run-{index}")
        trace = f"{index + 1:032x}"
        Span.objects.create(
            event_id=f"{trace}{index:016x}",
            trace_id=trace,
            span_id=f"{index:016x}",
            name=f"root-of-run-{index}",
            start_time=long_ago,
            end_time=long_ago + timedelta(seconds=1),
            agent_name=run.agent_name,
            run=run,
        )
    operator = make_operator(django_user_model, "operator")
    client.force_login(operator)
    page = client.get(f"{CHANGELIST}{runs[0].pk}/change/").content.decode()
    for anchor_id, mine, theirs in (
        ("run-events", "step-of-run-0", "step-of-run-1"),
        ("run-llm-usage", "model-of-run-0", "model-of-run-1"),
        ("run-traces", "root-of-run-0", "root-of-run-1"),
    ):
        listed = client.get(link(page, anchor_id))
        assert listed.status_code == 200, anchor_id
        rows = re.search(r'<table (?:id="result_list"|class="traces").*?</table>', listed.content.decode(), re.S).group(0)
        assert mine in rows and theirs not in rows, anchor_id

    operator.user_permissions.set(Permission.objects.filter(codename__in=["view_run", "view_runevent"]))
    client.force_login(django_user_model.objects.get(pk=operator.pk))  # the permissions anew
    page = client.get(f"{CHANGELIST}{runs[0].pk}/change/").content.decode()
    assert [link(page, anchor_id) is not None for anchor_id in ("run-events", "run-llm-usage", "run-traces")] == [
        True,
        False,
        False,
    ]


def test_a_new_key_is_shown_once_in_the_admin(admin_client):
    from core.models import AgentKey

    response = admin_client.post(
        "/admin/core/agentkey/add/",
        {"name": "crawlers", "agents": "crawler-*\ncrawler-special", "scopes": ["runs:read", "runs:write"]},
        follow=True,
    )
    key = AgentKey.objects.get()
    assert key.agents == ["crawler-*", "crawler-special"]
    (message,) = [str(m) for m in response.context["messages"] if "will not be able to see it again" in str(m)]
    raw_key = message.split(" is: ")[1].split(". ")[0]
    assert raw_key.startswith(key.prefix + ".") and key.is_valid(raw_key)
    assert raw_key not in admin_client.get(f"/admin/core/agentkey/{key.pk}/change/").content.decode()


def test_bulk_edit_previews_then_sets_one_field_of_every_selected_run(admin_client, runs):
    selected = [str(run.pk) for run in runs[:2]]
    preview = admin_client.post(CHANGELIST, {"action": "bulk_edit", "_selected_action": selected})
    page = preview.content.decode()
    assert preview.status_code == 200 and "Apply to 2 runs" in page and runs[0].run_id in page and runs[2].run_id not in page
    bad = admin_client.post(
        CHANGELIST, {"action": "bulk_edit", "_selected_action": selected, "field": "items_failed", "value": "-3", "apply": "1"}
    )
    assert "greater than or equal to 0" in bad.content.decode()
    assert list(Run.objects.filter(pk__in=selected).values_list("items_failed", flat=True)) == [0, 0]
    done = admin_client.post(
        CHANGELIST,
        {"action": "bulk_edit", "_selected_action": selected, "field": "error_summary", "value": "flaky mirror", "apply": "1"},
        follow=True,
    )
    assert "Set error_summary of 2 run(s)." in done.content.decode()
    summaries = dict(Run.objects.values_list("pk", "error_summary"))
    assert summaries == {runs[0].pk: "flaky mirror", runs[1].pk: "flaky mirror", runs[2].pk: ""}
    admin_client.post(
        CHANGELIST,
        {"action": "bulk_edit", "_selected_action": selected, "field": "metrics_json", "value": '{"pages": 3}', "apply": "1"},
    )
    assert Run.objects.get(pk=runs[0].pk).metrics_json == {"pages": 3}


def change_form(run: Run, **changes) -> dict:
    """The run's change form as the page shows it, with `changes` typed in."""
    fields = {
        "status": run.status,
        "end_time_0": "",
        "end_time_1": "",
        "duration_ms": run.duration_ms,
        "error_summary": run.error_summary,
        "error_details": run.error_details,
        "output_summary": run.output_summary,
        "items_succeeded": run.items_succeeded,
        "items_failed": run.items_failed,
        "items_skipped": run.items_skipped,
        "metrics_json": "null",
        "context_json": "null",
        "events-TOTAL_FORMS": "0",
        "events-INITIAL_FORMS": "0",
    }
    return {**fields, **changes}


@pytest.mark.django_db(transaction=True)
def test_one_runs_page_edits_what_patch_may_set_with_its_limits_and_events(admin_client, runs):
    from tests.runs.test_lifecycle_events import published

    running = runs[0]
    page = admin_client.get(f"{CHANGELIST}{running.pk}/change/").content.decode()
    assert 'name="error_summary"' in page and 'name="agent_name"' not in page and 'name="job_type"' not in page
    assert 'maxlength="500"' in page  # error_summary's PATCH limit, not the column's

    url = f"{CHANGELIST}{running.pk}/change/"
    for bad, problem in [
        ({"error_summary": "x" * 501}, "at most 500 characters (it has 501)"),
        ({"items_failed": "-1"}, "greater than or equal to 0"),
        ({"status": "exploded"}, "Select a valid choice"),
        ({"metrics_json": "[1, 2]"}, "must be a JSON object"),
    ]:
        refused = admin_client.post(url, change_form(running, **bad))
        assert refused.status_code == 200 and problem in refused.content.decode(), bad
    assert Run.objects.get(pk=running.pk).status == "running" and published("run.ended") == []

    # A forged field is not taken: only the 11 fields are in the form.
    done = admin_client.post(
        url,
        change_form(
            running,
            status="failed",
            error_summary="disk full",
            end_time_0="2030-01-01",
            end_time_1="00:00:05",
            agent_name="mallory",
            items_failed="2",
        ),
    )
    assert done.status_code == 302
    run = Run.objects.get(pk=running.pk)
    assert (run.status, run.error_summary, run.items_failed, run.agent_name) == ("failed", "disk full", 2, "alpha")
    assert run.duration_ms > 0  # derived from the new end time, as PATCH derives it
    (ended,) = published("run.ended")
    assert (ended["event_id"], ended["status"]) == (running.event_id, "failed")

    admin_client.post(url, change_form(run, output_summary="retried by hand", status="failed"))
    assert Run.objects.get(pk=running.pk).output_summary == "retried by hand" and len(published("run.ended")) == 1


def test_runs_are_not_added_in_the_admin(admin_client):
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403


def test_the_changelist_page_size_is_chosen_from_10_to_500(admin_client):
    Run.objects.bulk_create([Run(**run_payload(agent_name="alpha")) for _ in range(30)])
    rows = lambda page: page.content.decode().count('class="action-select"')  # noqa: E731
    assert rows(admin_client.get(CHANGELIST, {"per_page": "10"})) == 10
    page = admin_client.get(CHANGELIST, {"per_page": "25", "agent_name__exact": "alpha"})
    assert rows(page) == 25 and "per_page=25" in page.content.decode()  # the page links keep it
    assert '<option value="25" selected>' in page.content.decode()
    assert rows(admin_client.get(CHANGELIST, {"per_page": "3"})) == 10  # at least 10
    assert rows(admin_client.get(CHANGELIST, {"per_page": "many"})) == 30  # the default, 100
