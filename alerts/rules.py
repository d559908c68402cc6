"""What each kind of rule finds matching right now: {subject: Finding}. A subject matching that has
no open alert opens one; an open alert whose subject is no longer found closes."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from django.utils import timezone

from alerts.models import Alert, AlertRule
from approvals import selectors as approvals
from coordination import selectors as coordination
from core import events
from core.redis import get_redis
from quality import selectors as quality
from runs import selectors as runs

VOLUME_SAMPLES_KEY = "alerts:volume:{rule}"
VOLUME_MIN_MINUTES = 0.5


@dataclass
class Finding:
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


Findings = dict[str, Finding]


def _agent_matches(rule: AlertRule, agent: str) -> bool:
    return not rule.agents or fnmatchcase(agent, rule.agents)


def agent_stale(rule: AlertRule, now: datetime, open_alerts: dict[str, Alert]) -> Findings:
    return {
        f"agent:{agent.agent_id}": Finding(
            f"{agent.agent_id} is stale: no heartbeat since {agent.last_seen_at or agent.stale_since:%Y-%m-%d %H:%M:%S} UTC",
            {"agent_id": agent.agent_id, "stale_since": agent.stale_since.isoformat()},
        )
        for agent in coordination.stale_agents()
        if _agent_matches(rule, agent.agent_id)
    }


def run_failed(rule: AlertRule, now: datetime, open_alerts: dict[str, Alert]) -> Findings:
    """An agent and job whose latest ended run failed or timed out (new failures: those that ended
    in the window); an open alert stays until a run of theirs succeeds after the failure."""
    found: Findings = {}
    for run in runs.failed_runs(now - timedelta(minutes=rule.window_minutes), rule.job_type):
        if _agent_matches(rule, run.agent_name):
            found[f"run:{run.agent_name}/{run.job_type}"] = Finding(  # the latest failure wins
                f"{run.agent_name} {run.job_type} run {run.run_id} {run.status}: {run.error_summary or 'no error summary'}",
                {"agent_name": run.agent_name, "job_type": run.job_type, "event_id": run.event_id,
                 "status": run.status, "failed_at": run.end_time.isoformat()},
            )  # fmt: skip
    for subject, alert in open_alerts.items():
        found.setdefault(subject, Finding(alert.summary, alert.details))
    return {
        subject: finding
        for subject, finding in found.items()
        if not runs.succeeded_after(finding.details["agent_name"], finding.details["job_type"], finding.details["failed_at"])
    }


def error_rate(rule: AlertRule, now: datetime, open_alerts: dict[str, Alert]) -> Findings:
    found = {}
    for row in runs.ended_run_counts(now - timedelta(minutes=rule.window_minutes)):
        rate = 100 * row["failed"] / row["total"]
        if row["total"] >= rule.min_runs and rate > rule.threshold and _agent_matches(rule, row["agent_name"]):
            found[f"agent:{row['agent_name']}"] = Finding(
                f"{row['agent_name']}: {rate:.0f}% of {row['total']} runs failed in the last {rule.window_minutes} min "
                f"(threshold {rule.threshold:g}%)",
                {"agent_name": row["agent_name"], "runs": row["total"], "failed": row["failed"], "rate_percent": round(rate, 1)},
            )
    return found


def llm_cost(rule: AlertRule, now: datetime, open_alerts: dict[str, Alert]) -> Findings:
    """Today's cost (UTC day) of the matching agents, per agent or per model, over the limit; the
    next day starts below it."""
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    totals: dict[str, float] = defaultdict(float)
    for row in quality.llm_cost(day_start, now):
        if _agent_matches(rule, row["agent_name"]):
            totals[row["agent_name"] if rule.per == AlertRule.Per.AGENT else row["model"]] += float(row["cost"])
    return {
        f"{rule.per}:{name}": Finding(
            f"LLM cost of {rule.per} {name} today: ${cost:.2f} (limit ${rule.threshold:g})",
            {rule.per: name, "day": day_start.date().isoformat(), "cost": round(cost, 6)},
        )
        for name, cost in totals.items()
        if cost > rule.threshold
    }


def _minutes(duration: timedelta) -> int:
    return int(duration.total_seconds() // 60)


def approval_pending(rule: AlertRule, now: datetime, open_alerts: dict[str, Alert]) -> Findings:
    return {
        f"approval:{request.request_id}": Finding(
            f"{request.agent_id}'s {request.approval_type} approval has waited {_minutes(now - request.created_at)} min",
            {"request_id": request.request_id, "agent_id": request.agent_id, "approval_type": request.approval_type},
        )
        for request in approvals.pending_since(now - timedelta(seconds=rule.threshold))
        if _agent_matches(rule, request.agent_id)
    }


def volume_spike(rule: AlertRule, now: datetime, open_alerts: dict[str, Alert]) -> Findings:
    """Events a minute of one type over the window, from the bus's published counts sampled at each
    evaluation (kept in Redis, so any worker continues where another left off)."""
    redis = get_redis()
    key = VOLUME_SAMPLES_KEY.format(rule=rule.pk)
    sample = [time.time(), events.published_counts().get(rule.event_type, 0)]
    redis.rpush(key, json.dumps(sample))
    samples = [json.loads(raw) for raw in redis.lrange(key, 0, -1)]
    kept = [s for s in samples if s[0] >= sample[0] - rule.window_minutes * 60]
    redis.ltrim(key, len(samples) - len(kept), -1)
    redis.expire(key, rule.window_minutes * 60 * 2)
    oldest = kept[0]
    minutes = (sample[0] - oldest[0]) / 60
    if minutes < VOLUME_MIN_MINUTES:  # too short a span for a rate (two evaluations close together): nothing changes
        return {subject: Finding(alert.summary, alert.details) for subject, alert in open_alerts.items()}
    rate = max(sample[1] - oldest[1], 0) / minutes  # counts restart at 0 when Redis loses its data
    if rate <= rule.threshold:
        return {}
    return {
        f"events:{rule.event_type}": Finding(
            f"{rule.event_type}: {rate:.0f} events a minute over the last {minutes:.1f} min (threshold {rule.threshold:g})",
            {"event_type": rule.event_type, "per_minute": round(rate, 1)},
        )
    }


FIND: dict[str, Callable[[AlertRule, datetime, dict[str, Alert]], Findings]] = {
    AlertRule.Kind.AGENT_STALE: agent_stale,
    AlertRule.Kind.RUN_FAILED: run_failed,
    AlertRule.Kind.ERROR_RATE: error_rate,
    AlertRule.Kind.LLM_COST: llm_cost,
    AlertRule.Kind.APPROVAL_PENDING: approval_pending,
    AlertRule.Kind.VOLUME_SPIKE: volume_spike,
}


def findings(rule: AlertRule, open_alerts: dict[str, Alert]) -> Findings:
    return FIND[rule.kind](rule, timezone.now(), open_alerts)
