"""The admin's edits of runs, validated by the PATCH schema (RunPatch) so that the admin and the API
take the same values and refuse the same ones."""

from __future__ import annotations

import json
from typing import Any

import pydantic
from django import forms
from django.core.validators import MaxLengthValidator

from core.api import validation_fields
from runs.models import Run
from runs.schemas import SUMMARY_LIMITS, RunPatch

EDITABLE = list(RunPatch.model_fields)


def patch_of(values: dict[str, Any]) -> tuple[RunPatch | None, dict[str, str]]:
    """The PATCH these field values make, or the problems of each field."""
    try:
        return RunPatch.model_validate(values), {}
    except pydantic.ValidationError as exc:
        return None, {name: "; ".join(problems) for name, problems in validation_fields(exc).items()}


class RunChangeForm(forms.ModelForm):
    """One run's page: exactly the fields PATCH may set. What changed is checked as a PATCH of
    those fields and saved through the same service (runs.services.update_run)."""

    class Meta:
        model = Run
        fields = EDITABLE
        widgets = {name: forms.Textarea(attrs={"rows": 3, "cols": 80}) for name in SUMMARY_LIMITS}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, limit in SUMMARY_LIMITS.items():
            if name in self.fields:
                self.fields[name].validators.append(MaxLengthValidator(limit))
                self.fields[name].widget.attrs["maxlength"] = limit
        self.patch: RunPatch | None = None

    def clean(self):
        cleaned = super().clean()
        changed = {name: cleaned[name] for name in self.changed_data if name in cleaned}
        self.patch, problems = patch_of(changed)
        for name, problem in problems.items():
            self.add_error(name if name in self.fields else None, problem)
        return cleaned


class BulkEditForm(forms.Form):
    """One of the fields PATCH may set, to one value for every selected run."""

    field = forms.ChoiceField(choices=[(name, name.replace("_", " ")) for name in EDITABLE])
    value = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Empty clears a text, time or JSON field. Times in ISO 8601; JSON fields take a JSON object.",
    )

    def clean(self):
        cleaned = super().clean()
        field, value = cleaned.get("field"), (cleaned.get("value") or "").strip()
        if not field:
            return cleaned
        if field.endswith("_json") and value:
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise forms.ValidationError({"value": f"Not JSON: {exc}"}) from None
        cleaned["patch"], problems = patch_of({field: value if value != "" else None})
        if problems:
            raise forms.ValidationError({"value": "; ".join(problems.values())})
        return cleaned
