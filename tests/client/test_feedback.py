"""The SDK's FeedbackLoop and record_llm_usage against the real server."""

from __future__ import annotations

from decimal import Decimal

import pytest
from telemetry_client import FeedbackLoop, ModelTier, QualityStats, TelemetryClient, TelemetryConfig, TierRecommendation

from quality.models import FeedbackEntry, LlmUsage
from runs.models import Run


@pytest.fixture
def client(live_asgi, make_client) -> TelemetryClient:
    return make_client(live_asgi)


def test_ratings_are_recorded_without_waiting_and_answer_the_questions(client):
    loop = FeedbackLoop(client)
    for _ in range(10):
        assert loop.record_feedback("docs", "draft", ModelTier.CAPABLE, 0.9)
        assert loop.record_feedback("docs", "draft", "cheap", 0.88, {"prompt": "v2"})
    assert client.flush(timeout=10)
    stats = loop.get_quality_stats("docs", "draft", ModelTier.CHEAP)
    assert isinstance(stats, QualityStats)
    assert (stats.sample_count, stats.avg_quality, stats.tier) == (10, pytest.approx(0.88), "cheap")
    advice = loop.recommend_tier("docs", "draft", ModelTier.CAPABLE)
    assert isinstance(advice, TierRecommendation)
    assert (advice.recommended_tier, advice.confidence) == ("cheap", 0.5)
    assert FeedbackEntry.objects.filter(metadata={"prompt": "v2"}).count() == 10
    assert loop.get_quality_stats("docs", "nothing") is None


def test_template_ratings_give_a_confidence(client):
    loop = FeedbackLoop(client)
    for good in (True, True, True, False):
        assert loop.record_template_feedback("faq-7", good)
    assert client.flush(timeout=10)
    assert loop.get_template_confidence("faq-7") == 0.75
    assert loop.get_template_confidence("never-rated") == 0.5


def test_bad_ratings_are_refused_in_the_agent_without_raising(client, sdk_logs):
    loop = FeedbackLoop(client)
    assert loop.record_feedback("docs", "draft", "cheap", 1.5) == ""
    assert loop.record_feedback("docs", "draft", "cheap", float("nan")) == ""
    assert loop.record_feedback("docs", "draft", "gigantic", 0.5) == ""
    assert client.flush(timeout=10)
    assert FeedbackEntry.objects.count() == 0
    assert "quality_score=1.5" in sdk_logs.text


@pytest.mark.usefixtures("sonnet_price")
def test_llm_usage_is_linked_to_its_run_and_priced_by_the_server(client):
    run_id = client.start_run("alpha", "summarize")
    event_id = client.record_llm_usage(
        "alpha",
        "claude-sonnet-4",
        1000,
        500,
        run_id=run_id,
        workflow="docs",
        stage="draft",
        latency_ms=1200,
        cache_read_tokens=2000,
    )
    client.record_llm_usage("alpha", "claude-opus-4", 10, 10, fallback=True, tier="premium", unknown_field=1)
    client.end_run(run_id)
    assert event_id and client.flush(timeout=10)
    linked = LlmUsage.objects.get(event_id=event_id)
    assert linked.run == Run.objects.get(run_id=run_id)
    assert (linked.cost, linked.tier, linked.latency_ms) == (Decimal("0.0111"), "capable", 1200)
    assert LlmUsage.objects.get(model="claude-opus-4").fallback is True


def test_without_a_server_the_questions_have_safe_answers(tmp_path):
    client = TelemetryClient(TelemetryConfig(api_url="http://127.0.0.1:9", api_key="k", spool_dir=tmp_path))
    loop = FeedbackLoop(client)
    assert loop.record_feedback("docs", "draft", "cheap", 0.5)  # spooled for later
    assert loop.get_quality_stats("docs", "draft") is None
    advice = loop.recommend_tier("docs", "draft", "capable")
    assert (advice.recommended_tier, advice.confidence) == ("capable", 0.0)
    assert loop.get_template_confidence("faq") == 0.5
    client.close(timeout=0.1)


def test_the_sdk_asks_which_features_work(client, tmp_path):
    from telemetry_client import FeatureStatus, TelemetryFeatures

    features = TelemetryFeatures(client)
    found = {feature.name: feature for feature in features.check_all()}
    assert set(found) == {"database", "redis", "streams", "websockets", "worker_and_beat"}
    assert found["redis"].status is FeatureStatus.AVAILABLE and "ping" in found["redis"].detail
    assert features.is_available("database") and not features.is_available("no-such-feature")
    assert found["redis"].to_dict()["status"] == "available"
    offline = TelemetryFeatures(TelemetryClient(TelemetryConfig(api_url="http://127.0.0.1:9", api_key="k", spool_dir=tmp_path)))
    assert [(f.name, f.status) for f in offline.check_all()] == [("server", FeatureStatus.UNAVAILABLE)]
