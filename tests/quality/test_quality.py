"""LLM usage (priced from the table), quality feedback, its statistics and tier recommendations,
template confidence: exact values on known data, through the API."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from quality import services as quality
from quality.models import FeedbackEntry, LlmUsage, ModelPrice, TemplateFeedback
from runs.models import Run
from tests.runs.factories import run_payload

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sonnet_price")]

FEEDBACK = {"workflow_name": "docs", "stage_name": "draft", "tier": "cheap", "quality_score": 0.7}


def usage(**fields) -> dict:
    return {"agent_name": "alpha", "model": "claude-sonnet-4", **fields}


def test_a_call_without_a_cost_is_priced_from_the_table_and_takes_its_tier(agent):
    body = usage(event_id="u1", input_tokens=1000, output_tokens=500, cache_read_tokens=2000, cache_write_tokens=100)
    response = agent.post("/api/v1/llm-usage", body, format="json")
    assert response.status_code == 200, response.json()
    stored = LlmUsage.objects.get(event_id="u1")
    # (1000 x 3 + 500 x 15 + 2000 x 0.30 + 100 x 3.75) / 1,000,000 dollars
    assert stored.cost == Decimal("0.011475")
    assert stored.tier == "capable"


def test_a_sent_cost_and_tier_are_kept_and_an_unknown_model_costs_nothing(agent):
    items = [
        usage(event_id="u1", cost="0.5", tier="premium", input_tokens=10),
        usage(event_id="u2", model="home-made-7b", input_tokens=10_000),
    ]
    assert agent.post("/api/v1/llm-usage", items, format="json").status_code == 200
    kept, unknown = LlmUsage.objects.get(event_id="u1"), LlmUsage.objects.get(event_id="u2")
    assert (kept.cost, kept.tier) == (Decimal("0.5"), "premium")
    assert (unknown.cost, unknown.tier) == (0, "")


@pytest.mark.parametrize("snapshot", ["claude-sonnet-4-20250514", "claude-sonnet-4-2025-05-14"])
def test_a_dated_snapshot_is_priced_as_its_alias_unless_it_has_its_own_price(snapshot):
    items = [usage(event_id="u1", model=snapshot, input_tokens=1_000_000), usage(event_id="u2", model="claude-sonnet-4-1")]
    assert quality.ingest_usage(items, lambda agent: True).failed == 0
    stored = LlmUsage.objects.get(event_id="u1")
    assert (stored.model, stored.cost, stored.tier) == (snapshot, Decimal(3), "capable")
    assert LlmUsage.objects.get(event_id="u2").tier == ""  # not a date: another model
    ModelPrice.objects.create(model=snapshot, tier="cheap", input_per_mtok=1, output_per_mtok=1)
    quality.ingest_usage([usage(event_id="u3", model=snapshot, input_tokens=1_000_000)], lambda agent: True)
    assert (LlmUsage.objects.get(event_id="u3").cost, LlmUsage.objects.get(event_id="u3").tier) == (Decimal(1), "cheap")


def test_a_price_changed_in_the_table_prices_later_calls():
    ModelPrice.objects.filter(model="claude-sonnet-4").update(input_per_mtok=Decimal(6))
    batch = quality.ingest_usage([usage(event_id="u1", input_tokens=1_000_000)], lambda agent: True)
    assert batch.failed == 0
    assert LlmUsage.objects.get(event_id="u1").cost == Decimal(6)


def test_usage_links_to_its_run_and_bad_items_are_refused_one_by_one(agent):
    run = run_payload(agent_name="alpha")
    agent.post("/api/v1/runs", run, format="json")
    items = [
        usage(event_id="u1", run_event_id=run["event_id"]),
        usage(event_id="u2", run_event_id="no-such-run"),
        usage(event_id="u3", agent_name="beta"),
        usage(event_id="u4", tier="huge", input_tokens=-1),
        usage(event_id="u1"),
    ]
    response = agent.post("/api/v1/llm-usage", {"usage": items}, format="json")
    assert response.status_code == 200 and response.json()["failed"] == 3
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["created", "rejected", "rejected", "rejected", "duplicate"]
    assert [r["error"]["code"] for r in results[1:4]] == ["run_not_found", "agent_forbidden", "invalid"]
    assert set(results[3]["error"]["fields"]) == {"tier", "input_tokens"}
    assert LlmUsage.objects.get().run == Run.objects.get(event_id=run["event_id"])


def test_usage_and_feedback_ride_the_sdk_ingest_batch(agent):
    items = [
        {"kind": "usage", **usage(event_id="u1", input_tokens=5)},
        {
            "kind": "feedback",
            "event_id": "f1",
            "workflow_name": "docs",
            "stage_name": "draft",
            "tier": "cheap",
            "quality_score": 0.7,
        },
        {"kind": "template_feedback", "event_id": "t1", "template_id": "faq-1", "good": True},
    ]
    response = agent.post("/api/v1/ingest", items, format="json")
    assert [r["status"] for r in response.json()["results"]] == ["created"] * 3
    assert (LlmUsage.objects.count(), FeedbackEntry.objects.count(), TemplateFeedback.objects.count()) == (1, 1, 1)


def rate(scores: list[float], tier: str = "capable", days_ago: float = 0, stage: str = "draft") -> None:
    at = timezone.now() - timedelta(days=days_ago)
    FeedbackEntry.objects.bulk_create(
        FeedbackEntry(
            event_id=f"{stage}-{tier}-{days_ago}-{index}",
            timestamp=at,
            workflow_name="docs",
            stage_name=stage,
            tier=tier,
            quality_score=score,
        )
        for index, score in enumerate(scores)
    )


def test_quality_stats_with_the_recent_trend(agent):
    rate([0.6, 0.8], days_ago=10)
    rate([0.9, 1.0], days_ago=1)
    rate([0.1], tier="cheap")
    rate([0.2], stage="review")
    stats = agent.get("/api/v1/feedback/stats", {"workflow_name": "docs", "stage_name": "draft", "tier": "capable"}).json()
    assert stats == {
        "workflow_name": "docs",
        "stage_name": "draft",
        "tier": "capable",
        "avg_quality": pytest.approx(0.825),
        "min_quality": 0.6,
        "max_quality": 1.0,
        "sample_count": 4,
        "recent_trend": pytest.approx(0.25),  # 0.95 this week against 0.70 before
    }
    every_tier = agent.get("/api/v1/feedback/stats", {"workflow_name": "docs", "stage_name": "draft"}).json()
    assert (every_tier["sample_count"], every_tier["min_quality"], every_tier["tier"]) == (5, 0.1, None)


def test_quality_stats_of_a_stage_without_feedback_and_bad_queries(agent):
    missing = agent.get("/api/v1/feedback/stats", {"workflow_name": "docs", "stage_name": "none"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = agent.get("/api/v1/feedback/stats", {"stage_name": "draft", "tier": "huge"})
    assert bad.status_code == 400 and set(bad.json()["error"]["fields"]) == {"workflow_name", "tier"}


@pytest.mark.parametrize(
    ("ratings", "current", "expected", "confidence"),
    [
        ({"capable": [0.9] * 9}, "capable", "capable", 0.0),  # 9 ratings: too few to judge
        ({"capable": [0.9] * 12, "cheap": [0.86] * 10}, "capable", "cheap", 0.5),  # cheap holds
        ({"capable": [0.9] * 12, "cheap": [0.84] * 30}, "capable", "capable", 0.6),  # cheap 0.06 below
        # the cheapest tier that holds, with enough ratings: cheap has too few
        ({"premium": [0.9] * 10, "capable": [0.87] * 40, "cheap": [0.95] * 5}, "premium", "capable", 1.0),
        ({"capable": [0.5] * 10}, "capable", "premium", 0.5),  # below 0.6: stronger
        ({"premium": [0.5] * 10}, "premium", "premium", 0.5),  # nothing stronger
    ],
)
def test_tier_recommendations(agent, ratings, current, expected, confidence):
    for tier, scores in ratings.items():
        rate(scores, tier=tier)
    query = {"workflow_name": "docs", "stage_name": "draft", "current_tier": current}
    found = agent.get("/api/v1/feedback/recommendation", query).json()
    assert (found["recommended_tier"], found["confidence"]) == (expected, confidence), found["reason"]
    assert found["tiers"][current]["sample_count"] == len(ratings[current])


def test_template_confidence_is_good_over_all_ratings(agent):
    ratings = [{"event_id": f"t{i}", "template_id": "faq-1", "good": good} for i, good in enumerate([True, True, False, True])]
    assert agent.post("/api/v1/feedback/templates", ratings, format="json").status_code == 200
    found = agent.get("/api/v1/feedback/templates/confidence", {"template_id": "faq-1"}).json()
    assert found == {"template_id": "faq-1", "good": 3, "bad": 1, "confidence": 0.75}
    unrated = agent.get("/api/v1/feedback/templates/confidence", {"template_id": "faq-2"}).json()
    assert unrated["confidence"] == 0.5


def test_feedback_needs_its_scopes(anonymous, db):
    from tests.conftest import key_client, make_key

    assert anonymous.get("/api/v1/feedback/stats", {"workflow_name": "d", "stage_name": "s"}).status_code == 401
    reader = key_client(make_key("alpha", scopes=["runs:read"])[1])
    refused = reader.post(
        "/api/v1/feedback", {"workflow_name": "d", "stage_name": "s", "tier": "cheap", "quality_score": 1}, format="json"
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "missing_scope"
    assert FeedbackEntry.objects.count() == 0
