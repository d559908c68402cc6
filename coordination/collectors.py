"""/metrics: how many agents are beating, stale, and known."""

from __future__ import annotations

import time

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily

from coordination.heartbeats import LAST_BEATS
from coordination.models import Agent
from core.redis import get_redis


class AgentMetrics:
    def collect(self):
        beating = get_redis().zcount(LAST_BEATS, time.time() - settings.HEARTBEAT_STALE_SECONDS, "+inf")
        yield GaugeMetricFamily(
            "telemetry_agents_active", "Agents that beat within HEARTBEAT_STALE_SECONDS and have not stopped", value=beating
        )
        stale = Agent.objects.filter(stale_since__isnull=False, stopped_at__isnull=True).count()
        yield GaugeMetricFamily("telemetry_agents_stale", "Agents silent past their threshold (as the sweep found)", value=stale)
        yield GaugeMetricFamily("telemetry_agents_registered", "Agents in the registry", value=Agent.objects.count())
