from datetime import UTC

import django_filters
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField

from runs.models import Run, RunStatus
from runs.schemas import STATUS_ALIASES


class UtcIsoDateTimeField(IsoDateTimeField):
    """In UTC: PostgreSQL takes offsets up to 15:59 only, ISO 8601's go to 23:59 (a 500 there)."""

    def to_python(self, value):
        parsed = super().to_python(value)
        try:
            return parsed.astimezone(UTC) if parsed is not None and parsed.tzinfo else parsed
        except OverflowError:  # out of range in UTC
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class RunFilter(django_filters.FilterSet):
    """The query parameters of GET /api/v1/runs (local-telemetry's, plus run and time ranges)."""

    agent_name = django_filters.CharFilter()
    job_type = django_filters.CharFilter()
    status = django_filters.ChoiceFilter(
        choices=RunStatus.choices + [(alias, alias) for alias in STATUS_ALIASES], method="filter_status"
    )
    run_id = django_filters.CharFilter()
    parent_run_id = django_filters.CharFilter()
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gt")
    start_time_from = UtcDateTimeFilter(field_name="start_time", lookup_expr="gte")
    start_time_to = UtcDateTimeFilter(field_name="start_time", lookup_expr="lte")

    class Meta:
        model = Run
        fields: list[str] = []

    def filter_status(self, queryset, name, value):
        return queryset.filter(status=STATUS_ALIASES.get(value, value))
