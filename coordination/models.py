from datetime import datetime

from django.db import connections, models, router

LAST_SEEN_BATCH = 500  # agents per UPDATE


class AgentQuerySet(models.QuerySet):
    def record_last_seen(self, last_seen: dict[str, datetime]) -> int:
        """Set each agent's `last_seen_at` to its time in `last_seen` where that is later; how many
        rows changed. One UPDATE ... FROM (VALUES ...) per LAST_SEEN_BATCH agents (SQLite >= 3.33
        and PostgreSQL both speak it): bulk_update's CASE expressions cost a quarter of a second
        of CPU per 1,000 agents, every REGISTRY_SYNC_SECONDS."""
        connection = connections[router.db_for_write(self.model)]
        quote = connection.ops.quote_name
        table, agent_id, last = quote(self.model._meta.db_table), quote("agent_id"), quote("last_seen_at")
        field = self.model._meta.get_field("last_seen_at")
        pairs = [(agent, field.get_db_prep_value(seen, connection)) for agent, seen in last_seen.items()]
        changed = 0
        with connection.cursor() as cursor:
            for start in range(0, len(pairs), LAST_SEEN_BATCH):
                part = pairs[start : start + LAST_SEEN_BATCH]
                cursor.execute(
                    f"UPDATE {table} SET {last} = seen.column2 FROM (VALUES {', '.join(['(%s, %s)'] * len(part))}) AS seen "  # noqa: S608 - names from the model
                    f"WHERE {table}.{agent_id} = seen.column1 AND ({table}.{last} IS NULL OR {table}.{last} < seen.column2)",
                    [value for pair in part for value in pair],
                )
                changed += cursor.rowcount
        return changed


class Agent(models.Model):
    """The registry row of one agent, by the id it acts as (keys are bound to these ids). Its live
    state is in Redis (coordination.heartbeats); this row follows it without a write per beat."""

    agent_id = models.CharField(max_length=200, unique=True)
    display_name = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=50, blank=True, default="", help_text="The last status it reported.")
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    stale_since = models.DateTimeField(null=True, blank=True, help_text="Set while the agent is silent past its threshold.")
    stale_after_seconds = models.FloatField(
        null=True, blank=True, help_text="This agent's staleness threshold; empty: the server's default."
    )

    objects = AgentQuerySet.as_manager()

    class Meta:
        ordering = ["agent_id"]

    def __str__(self) -> str:
        return self.display_name or self.agent_id
