from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self) -> None:
        from core import ingest
        from core.prometheus import register_json
        from runs import schemas, selectors, services

        register_json(selectors.run_counters)
        for kind, store, schema in (
            ("run", services.ingest_runs, schemas.RunItem),
            ("event", services.ingest_events, schemas.EventItem),
            ("end", services.end_runs, schemas.EndItem),
            ("commit", services.associate_commits, schemas.CommitKindItem),
        ):
            ingest.register(kind, store, schema)
