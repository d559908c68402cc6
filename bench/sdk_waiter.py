"""An agent that waits for signals in a process of its own, for bench/coordination.py (agents are
separate processes: in one, the waiter's and the sender's httpx would share one GIL). For each
line on stdin it calls wait_for_signal and prints when that returned (time.perf_counter: on Linux
the same clock in every process) and the signal's id.

python -m bench.sdk_waiter BASE_URL API_KEY AGENT_ID
"""

import sys
import tempfile
import time

from telemetry_client import CoordinationSignals, TelemetryClient, TelemetryConfig


def main(base: str, key: str, agent_id: str) -> None:
    with tempfile.TemporaryDirectory() as spool:
        client = TelemetryClient(TelemetryConfig(api_url=base, api_key=key, spool_dir=spool))
        waiter = CoordinationSignals(memory=client, agent_id=agent_id)
        print("ready", flush=True)
        for _ in sys.stdin:
            signal = waiter.wait_for_signal("go", timeout=10)
            print(time.perf_counter(), signal.signal_id if signal else "-", flush=True)
        client.close(timeout=1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
