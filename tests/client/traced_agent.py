"""A sub-agent whose decorated functions continue the trace named by TRACEPARENT."""

import sys

import telemetry_client


@telemetry_client.traced(agent_name="alpha-sub")
def work() -> None:
    write_file()


@telemetry_client.traced(agent_name="alpha-sub")
def write_file() -> None:
    pass


if __name__ == "__main__":
    work()
    sys.exit(0 if telemetry_client.get_client().flush(timeout=30) else 1)
