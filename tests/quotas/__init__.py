"""The bounds on what one agent key can consume (core.quotas), each tried on the real server: the abuse
is refused or bounded with its error code, nothing it asked for is stored, /metrics counts the
refusal, and another agent is served meanwhile (its latency printed, not asserted)."""
