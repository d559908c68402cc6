from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self) -> None:
        from core import ingest
        from core.prometheus import register
        from runs import collectors, quality, schemas, services

        register(collectors.RunMetrics())
        for kind, store, schema in (
            ("run", services.ingest_runs, schemas.RunItem),
            ("event", services.ingest_events, schemas.EventItem),
            ("end", services.end_runs, schemas.EndItem),
            ("commit", services.associate_commits, schemas.CommitKindItem),
            ("usage", quality.ingest_usage, schemas.UsageItem),
            ("feedback", quality.ingest_feedback, schemas.FeedbackItem),
            ("template_feedback", quality.ingest_template_feedback, schemas.TemplateFeedbackItem),
        ):
            ingest.register(kind, store, schema)
