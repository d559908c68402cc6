SCOPES = {
    "coordination:read": "see agents and signals",
    "coordination:write": "heartbeat and send or consume signals",
}
PERMISSIONS = {
    "coordination:read": ("coordination.view_agent",),
    "coordination:write": ("coordination.change_agent",),
}
