from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularSwaggerView

from approvals.pages import open_link
from core.ingest import Ingest
from core.openapi import SchemaView
from core.prometheus import metrics
from core.views import health, unknown_api_path
from quality.pages import analytics_export, analytics_page
from streaming.views import live_page
from traces.pages import trace_page, traces_page
from traces.views import otlp_traces

urlpatterns = [
    # The API first, its busiest paths (heartbeats, signals, ingest) foremost: Django tries the
    # patterns in order, and a heartbeat resolved behind the others spent 60 us there.
    path("api/v1/", include("coordination.urls")),
    path("api/v1/", include("runs.urls")),
    path("api/v1/ingest", Ingest.as_view(), name="ingest"),
    path("api/v1/", include("approvals.urls")),
    path("api/v1/", include("quality.urls")),
    path("api/v1/", include("metrics.urls")),
    path("api/v1/", include("traces.urls")),
    path("api/v1/", include("streaming.urls")),
    re_path(r"^api/v1/", unknown_api_path),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),  # the admin, linking the staff pages
    path("admin/", admin.site.urls),
    path("health", health, name="health"),
    path("metrics", metrics, name="metrics"),
    path("v1/traces", otlp_traces, name="otlp-traces"),
    path("live/", live_page, name="live"),
    path("analytics/", analytics_page, name="analytics"),
    path("analytics/export.<str:fmt>", analytics_export, name="analytics-export"),
    path("traces/", traces_page, name="traces"),
    path("traces/<id:trace_id>/", trace_page, name="trace"),
    path("approvals/open/<id:token>/", open_link, name="approval-link"),
    path("chatops/", include("chatops.urls")),
]

handler404 = "core.views.not_found"
handler500 = "core.views.server_error"
