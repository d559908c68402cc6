from django.apps import AppConfig


class QualityConfig(AppConfig):
    name = "quality"

    def ready(self) -> None:
        from core import ingest
        from core.prometheus import register
        from quality import collectors, receivers, schemas, services  # noqa: F401  (receivers: connects them)

        register(collectors.RunMetrics())
        for kind, store, schema in (
            ("usage", services.ingest_usage, schemas.UsageItem),
            ("feedback", services.ingest_feedback, schemas.FeedbackItem),
            ("template_feedback", services.ingest_template_feedback, schemas.TemplateFeedbackItem),
        ):
            ingest.register(kind, store, schema)
