"""GET /api/v1/streams: the event types that have a stream."""

import pytest

from core import events

pytestmark = pytest.mark.django_db


def test_the_list_names_each_event_type_with_a_stream_once_sorted(agent):
    assert agent.get("/api/v1/streams").json() == {"event_types": []}
    for event_type in ("deploys", "builds", "deploys"):
        assert agent.post(f"/api/v1/streams/{event_type}", {"data": {}}, format="json").status_code == 201
    events.publish_now([events.Event("run.ended", {"run_id": "r1"})])
    response = agent.get("/api/v1/streams")
    assert response.status_code == 200
    assert response.json() == {"event_types": ["builds", "deploys", "run.ended"]}
