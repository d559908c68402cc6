from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self) -> None:
        from core import ingest
        from core.metrics import register, register_text
        from runs import metrics, quality, schemas, services

        register(metrics.RunMetrics())
        register_text(metrics.sent_series_text)
        for kind, store, schema in (
            ("run", services.ingest_runs, schemas.RunItem),
            ("event", services.ingest_events, schemas.EventItem),
            ("end", services.end_runs, schemas.EndItem),
            ("commit", services.associate_commits, schemas.CommitKindItem),
            ("usage", quality.ingest_usage, schemas.UsageItem),
            ("feedback", quality.ingest_feedback, schemas.FeedbackItem),
            ("template_feedback", quality.ingest_template_feedback, schemas.TemplateFeedbackItem),
            ("metric", metrics.ingest_metrics, schemas.MetricItem),
        ):
            ingest.register(kind, store, schema)
