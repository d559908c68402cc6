"""An agent process for bench/load.py: runs with events through the SDK (TelemetryClient) at a
fixed rate, in a process of its own so that the SDK's threads do not share the load generator's
GIL. At the end it flushes and prints one JSON line: the run ids it started, its events per run,
whether everything was delivered and the SDK's counters.

python -m bench.load_agent BASE_URL API_KEY AGENT_NAME RUNS_PER_SECOND EVENTS_PER_RUN SECONDS
"""

import json
import sys
import tempfile
import time

from telemetry_client import TelemetryClient, TelemetryConfig

FLUSH_TIMEOUT = 120.0  # seconds to deliver what is left once the runs stop


def main(base: str, key: str, agent: str, rate: float, events: int, seconds: float) -> None:
    run_ids = []
    with tempfile.TemporaryDirectory() as spool:
        client = TelemetryClient(TelemetryConfig(api_url=base, api_key=key, spool_dir=spool))
        started = time.monotonic()
        for n in range(int(rate * seconds)):
            time.sleep(max(0.0, started + n / rate - time.monotonic()))
            run_id = client.start_run(agent, "load")
            for step in range(events):
                client.log_event(run_id, "step", {"n": step, "note": "a typical small payload"})
            client.set_metrics(run_id, items_discovered=events, items_succeeded=events)
            client.end_run(run_id)
            run_ids.append(run_id)
        recorded_s = time.monotonic() - started
        delivered = client.flush(timeout=FLUSH_TIMEOUT)
        stats = client.get_stats()
        client.close(timeout=1)
    print(
        json.dumps(
            {
                "agent": agent,
                "runs": run_ids,
                "events_per_run": events,
                "recorded_s": recorded_s,
                "delivered_s": time.monotonic() - started,
                "delivered_all": delivered,
                "stats": stats,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    base, key, agent, rate, events, seconds = sys.argv[1:7]
    main(base, key, agent, float(rate), int(events), float(seconds))
