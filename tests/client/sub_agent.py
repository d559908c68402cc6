"""A sub-agent in its own process: continues the trace named by TRACEPARENT with one span (and a
child of it), records them and exits once they are delivered."""

import sys

from telemetry_client import TelemetryClient, Tracer


def main() -> None:
    client = TelemetryClient()
    tracer = Tracer("alpha-sub", client)
    work = tracer.continue_trace(None, "sub-agent-work")
    with tracer.span("write-file", parent=work, attributes={"files": 3}):
        pass
    tracer.end_span(work)
    sys.exit(0 if client.flush(timeout=30) else 1)


if __name__ == "__main__":
    main()
