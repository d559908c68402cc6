import django_filters

from runs.models import Run, RunStatus
from runs.schemas import STATUS_ALIASES


class RunFilter(django_filters.FilterSet):
    """The query parameters of GET /api/v1/runs (seed 003's, plus run and time ranges)."""

    agent_name = django_filters.CharFilter()
    job_type = django_filters.CharFilter()
    status = django_filters.ChoiceFilter(
        choices=RunStatus.choices + [(alias, alias) for alias in STATUS_ALIASES], method="filter_status"
    )
    run_id = django_filters.CharFilter()
    parent_run_id = django_filters.CharFilter()
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gt")
    start_time_from = django_filters.IsoDateTimeFilter(field_name="start_time", lookup_expr="gte")
    start_time_to = django_filters.IsoDateTimeFilter(field_name="start_time", lookup_expr="lte")

    class Meta:
        model = Run
        fields: list[str] = []

    def filter_status(self, queryset, name, value):
        return queryset.filter(status=STATUS_ALIASES.get(value, value))
