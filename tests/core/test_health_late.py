"""/health when the worker and beat have stopped ticking."""

import time

import pytest

from core.features import background_late_after
from core.redis import get_redis
from core.tasks import BACKGROUND_TICK_KEY, record_worker_heartbeat

pytestmark = pytest.mark.django_db


def test_health_reports_a_late_worker_and_stays_200(client):
    get_redis().set(BACKGROUND_TICK_KEY, time.time() - background_late_after() - 30)
    response = client.get("/health")
    assert response.status_code == 200  # the web process itself is fine: the load balancer keeps it
    background = response.json()["worker_and_beat"]
    assert background["status"] == "late" and background["last_tick_seconds_ago"] >= background_late_after() + 30

    record_worker_heartbeat()
    assert client.get("/health").json()["worker_and_beat"]["status"] == "ok"
