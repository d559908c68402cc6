from django.apps import AppConfig


class TracesConfig(AppConfig):
    name = "traces"

    def ready(self) -> None:
        from core import ingest
        from traces import schemas, services

        ingest.register("span", services.ingest_spans, schemas.SpanItem)
