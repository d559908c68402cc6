"""The SDK's local trackers: append-only JSONL, hashed user ids, no text of prompts; optionally
uploaded to the real server."""

from __future__ import annotations

import json
import threading

import pytest
from telemetry_client import HelpTracker, ModelTier, UsageTracker

from quality.models import LlmUsage, TemplateFeedback


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_usage_is_kept_locally_with_the_user_hashed(tmp_path):
    tracker = UsageTracker(tmp_path)
    assert tracker.track_llm_call(
        "docs", "draft", ModelTier.CHEAP, "claude-3-5-haiku", 1000, 200, cost=0.002, user_id="alice@example.com"
    )
    assert tracker.track_llm_call(
        "docs", "review", "premium", "claude-opus-4", 500, 100, cost=0.015, success=False, user_id="alice@example.com"
    )
    assert tracker.track_llm_call("docs", "draft", "cheap", "claude-3-5-haiku", 10, 10, user_id="bob")
    records = lines(tmp_path / "usage.jsonl")
    assert len(records) == 3
    assert "alice" not in (tmp_path / "usage.jsonl").read_text()
    assert records[0]["user"] == records[1]["user"] != records[2]["user"]
    assert len(records[0]["user"]) == 16 and not any("prompt" in record for record in records)
    stats = tracker.get_stats()
    assert (stats["calls"], stats["tokens"], stats["cost"], stats["success_rate"]) == (
        3,
        1820,
        pytest.approx(0.017),
        pytest.approx(2 / 3),
    )
    assert stats["by_tier"]["cheap"] == {"calls": 2, "tokens": 1220, "cost": pytest.approx(0.002)}
    assert [r["stage"] for r in tracker.get_recent_entries(limit=2)] == ["review", "draft"]
    assert tracker.reset() == 3 and tracker.get_stats()["calls"] == 0


def test_another_installation_hashes_the_same_user_differently(tmp_path):
    for name in ("one", "two"):
        UsageTracker(tmp_path / name).track_llm_call("w", "s", "cheap", "m", user_id="alice")
    assert lines(tmp_path / "one" / "usage.jsonl")[0]["user"] != lines(tmp_path / "two" / "usage.jsonl")[0]["user"]


def test_threads_appending_at_once_lose_no_line(tmp_path):
    tracker = HelpTracker(tmp_path)

    def ask(n: int):
        for i in range(200):
            tracker.track_query(f"how do I {n}-{i}", template_id=f"t{i % 5}")

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(lines(tmp_path / "help_queries.jsonl")) == 800
    stats = tracker.get_stats()
    assert stats["queries"] == stats["answered"] == 800 and stats["top_templates"][0][1] == 160


def test_help_template_confidence_and_a_broken_line(tmp_path):
    tracker = HelpTracker(tmp_path)
    for good in (True, True, False):
        tracker.record_feedback("faq-1", good)
    with (tmp_path / "help_queries.jsonl").open("a") as file:
        file.write("{not json\n")
    assert tracker.get_template_confidence("faq-1") == pytest.approx(2 / 3)
    assert tracker.get_template_confidence("faq-2") == 0.5


def test_an_unwritable_directory_never_raises(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    tracker = UsageTracker(tmp_path)
    tracker.file.path = blocked / "usage.jsonl"  # a file where a folder should be
    assert tracker.track_llm_call("w", "s", "cheap", "m") is False


@pytest.mark.usefixtures("sonnet_price")
def test_with_a_client_the_records_also_reach_the_server(live_asgi, make_client, tmp_path):
    client = make_client(live_asgi)
    usage = UsageTracker(tmp_path / "local", memory=client, agent_name="alpha")
    usage.track_llm_call("docs", "draft", "capable", "claude-sonnet-4", 1_000_000, 0, duration_ms=900)
    HelpTracker(tmp_path / "local", memory=client).record_feedback("faq-9", good=True)
    assert client.flush(timeout=10)
    stored = LlmUsage.objects.get(agent_name="alpha")
    assert (stored.workflow, stored.tier, stored.latency_ms, float(stored.cost)) == ("docs", "capable", 900, 3.0)
    assert TemplateFeedback.objects.get().template_id == "faq-9"
