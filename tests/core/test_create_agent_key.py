import io

import pytest
from django.core.management import CommandError, call_command

from core.models import AgentKey
from core.scopes import agent_default
from tests.conftest import key_client
from tests.runs.factories import run_payload

pytestmark = pytest.mark.django_db


def create(*args) -> str:
    out = io.StringIO()
    call_command("create_agent_key", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip().splitlines()[-1]


def test_the_key_is_printed_alone_on_the_last_line_and_works():
    raw = create("alpha")
    key = AgentKey.objects.get()
    assert (key.agents, key.scopes) == (["alpha"], agent_default())
    assert key_client(raw).post("/api/v1/runs", run_payload(), format="json").status_code == 201


def test_agents_and_scopes_can_be_narrowed():
    raw = create("crawlers", "--agents", "crawler-*", "crawler-special", "--scope", "runs:read")
    key = AgentKey.objects.get()
    assert key.agents == ["crawler-*", "crawler-special"] and key.scopes == ["runs:read"]
    assert key_client(raw).post("/api/v1/runs", run_payload(agent_name="crawler-1"), format="json").status_code == 403


def test_an_unknown_scope_is_refused():
    with pytest.raises(CommandError):
        call_command("create_agent_key", "x", "--scope", "everything", stdout=io.StringIO(), stderr=io.StringIO())
    assert not AgentKey.objects.exists()
