"""Single items posted to the batch endpoints (feedback, LLM usage, template ratings, metric points)
at the same moment are stored in one transaction (core.ingest.single_items), each request answered
with its own per-item results."""

import asyncio
import functools

import pytest

from core.ingest import single_items
from core.models import AgentKey
from core.permissions import key_checker
from quality import services
from quality.models import FeedbackEntry

pytestmark = pytest.mark.django_db(transaction=True)


def rating(agent: str = "alpha", **fields) -> dict:
    return {"agent_name": agent, "workflow_name": "docs", "stage_name": "draft", "tier": "cheap", "quality_score": 0.8, **fields}


def test_single_items_sent_together_are_one_transaction_each_answered_its_own_results():
    key = AgentKey(name="alpha", agents=["alpha"], scopes=["runs:write"])
    twin = rating(event_id="twin")
    posted = [rating(), twin, rating(quality_score=2), rating("beta"), twin, rating("beta")]
    principals = [key, key, key, key, key, None]  # the last: staff, who may act as any agent

    async def post_all():
        writes = [
            single_items.write(functools.partial(services.ingest_feedback, [item], key_checker(principal)))
            for item, principal in zip(posted, principals, strict=True)
        ]
        return await asyncio.gather(*writes)

    replies = asyncio.run(post_all())

    assert single_items.sizes[-1] == len(posted)
    statuses = [(reply.results[0]["status"], reply.results[0].get("error", {}).get("code")) for reply in replies]
    assert statuses == [
        ("created", None),
        ("created", None),
        ("rejected", "invalid"),
        ("rejected", "agent_forbidden"),
        ("duplicate", None),
        ("created", None),
    ]
    assert sorted(FeedbackEntry.objects.values_list("agent_name", flat=True)) == ["alpha", "alpha", "beta"]
