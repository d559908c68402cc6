"""What an agent key may do. Each API view names the scope it needs per HTTP method."""

SCOPES: dict[str, str] = {
    "runs:read": "read runs and their events",
    "runs:write": "record runs, events and commits",
    "coordination:read": "see agents and signals",
    "coordination:write": "heartbeat and send or consume signals",
    "approvals:read": "see approval requests",
    "approvals:request": "ask for approval and wait for the decision",
    "streams:read": "read the event streams and the live feed",
    "streams:write": "publish to the event streams",
    "streams:admin": "trim and delete event streams",
    "metrics:read": "scrape /metrics (a key for Prometheus)",
}

# What a key gets when none are named: everything an agent does, nothing administrative.
AGENT_SCOPES: list[str] = [scope for scope in SCOPES if scope not in {"streams:admin", "metrics:read"}]
