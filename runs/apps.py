from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self) -> None:
        from core import ingest
        from runs import schemas, services

        for kind, store, schema in (
            ("run", services.ingest_runs, schemas.RunItem),
            ("event", services.ingest_events, schemas.EventItem),
            ("end", services.end_runs, schemas.EndItem),
            ("commit", services.associate_commits, schemas.CommitKindItem),
        ):
            ingest.register(kind, store, schema)
