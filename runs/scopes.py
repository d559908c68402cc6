"""What a key may do with runs and what agents record beside them (usage, feedback, metrics, spans)."""

SCOPES = {
    "runs:read": "read runs and their events, traces, metrics, quality figures and reports",
    "runs:write": "record runs, events and commits, and LLM usage, feedback, metric points and spans",
}
PERMISSIONS = {
    "runs:read": ("runs.view_run",),
    "runs:write": ("runs.add_run", "runs.change_run"),
}
