"""The runs app announces the days its writes change; their rollups are recomputed."""

from django.dispatch import receiver

from quality.models import ChangedDay
from runs.changes import runs_changed


@receiver(runs_changed)
def note_changed_days(sender, moments, **kwargs) -> None:
    ChangedDay.note(*moments)
