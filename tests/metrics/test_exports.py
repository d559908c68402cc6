"""Exports: the metric series as rotated JSON files."""

from __future__ import annotations

import json

import pytest

from metrics import exporters

pytestmark = pytest.mark.django_db

POINTS = [
    {"event_id": "p1", "agent_name": "alpha", "name": "tool_calls_total", "metric_type": "counter", "value": 2,
     "labels": {"tool": "bash"}},
    {"event_id": "p2", "agent_name": "alpha", "name": "queue_size", "metric_type": "gauge", "value": 7, "labels": {}},
    {"event_id": "p3", "agent_name": "alpha", "name": "step_seconds", "metric_type": "histogram", "value": 0.3, "labels": {}},
]  # fmt: skip


@pytest.fixture
def stored(agent):
    assert agent.post("/api/v1/metrics", POINTS, format="json").json()["inserted"] == 3


def test_json_exports_rotate(stored, tmp_path):
    written = [exporters.export_json(tmp_path, max_files=3) for _ in range(5)]
    assert sorted(tmp_path.iterdir()) == written[2:]
    series = {item["name"]: item for item in json.loads(written[-1].read_text())["series"]}
    assert series["tool_calls_total"]["value"] == 2 and series["queue_size"]["value"] == 7
    assert series["step_seconds"]["buckets"]["0.5"] == 1 and series["step_seconds"]["count"] == 1
