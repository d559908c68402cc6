SCOPES = {
    "coordination:read": "see agents and signals",
    "coordination:write": "heartbeat and send or consume signals",
}
