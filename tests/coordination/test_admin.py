"""The agents admin: live state from Redis, stale marks, the live signals page."""

import pytest
from django.utils import formats, timezone
from django.utils.dateparse import parse_datetime

from coordination import signals
from coordination.models import Agent
from tests.conftest import key_client, make_key

pytestmark = pytest.mark.django_db


def test_the_agents_list_shows_live_state_and_stale_marks(admin_client, agent):
    beat = {"status": "indexing", "progress": 0.25, "current_task": "doc-42"}
    agent.post("/api/v1/agents/alpha/heartbeat", beat, format="json")
    other = key_client(make_key("beta")[1])
    other.post("/api/v1/agents/beta/heartbeat/start", {"stale_after_seconds": 1}, format="json")
    Agent.objects.filter(agent_id="beta").update(stale_since=timezone.now())
    page = admin_client.get("/admin/coordination/agent/").content.decode()
    assert "indexing" in page and "doc-42" in page and "25%" in page
    assert "stale</b> for" in page
    stale_only = admin_client.get("/admin/coordination/agent/", {"stale_since__isnull": "False"}).content.decode()
    assert "beta" in stale_only and "doc-42" not in stale_only
    detail = admin_client.get(f"/admin/coordination/agent/{Agent.objects.get(agent_id='alpha').pk}/change/").content.decode()
    assert "doc-42" in detail and "Live state (Redis)" in detail
    assert admin_client.get("/admin/coordination/agent/add/").status_code == 403


def test_live_signals_are_listed_until_taken(admin_client, agent):
    agent.post("/api/v1/signals", {"signal_type": "reindex", "target_agent": "beta", "payload": {"shard": 3}}, format="json")
    page = admin_client.get("/admin/coordination/agent/signals/").content.decode()
    assert "reindex" in page and "beta" in page and "&quot;shard&quot;: 3" in page
    (signal,) = signals.live()
    shown = formats.date_format(timezone.localtime(parse_datetime(signal["timestamp"])), "DATETIME_FORMAT")
    assert f'title="{signal["timestamp"]}">{shown}</td>' in page  # as the agents list shows times
    key_client(make_key("beta")[1]).post("/api/v1/signals/receive", {}, format="json")
    assert "No live signals." in admin_client.get("/admin/coordination/agent/signals/").content.decode()


def test_the_signals_page_is_for_staff_only(client):
    assert client.get("/admin/coordination/agent/signals/").status_code == 302  # to the login
