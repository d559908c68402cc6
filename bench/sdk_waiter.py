"""An agent that waits for signals in a process of its own, for bench/coordination.py (agents are
separate processes: in one, the waiter's and the sender's httpx would share one GIL). For each
line on stdin it calls wait_for_signal (or, with `async`, awaits await_for_signal in one event
loop) and prints when that returned (time.perf_counter: on Linux the same clock in every process)
and the signal's id.

python -m bench.sdk_waiter BASE_URL API_KEY AGENT_ID [sync|async]
"""

import asyncio
import sys
import tempfile
import time

from telemetry_client import CoordinationSignals, TelemetryClient, TelemetryConfig


def main(base: str, key: str, agent_id: str, mode: str = "sync") -> None:
    with tempfile.TemporaryDirectory() as spool:
        client = TelemetryClient(TelemetryConfig(api_url=base, api_key=key, spool_dir=spool))
        waiter = CoordinationSignals(memory=client, agent_id=agent_id)
        print("ready", flush=True)
        if mode == "async":
            asyncio.run(awaiting(waiter))
        else:
            for _ in sys.stdin:
                signal = waiter.wait_for_signal("go", timeout=10)
                print(time.perf_counter(), signal.signal_id if signal else "-", flush=True)
        client.close(timeout=1)


async def awaiting(waiter: CoordinationSignals) -> None:
    while await asyncio.to_thread(sys.stdin.readline):
        signal = await waiter.await_for_signal("go", timeout=10)
        print(time.perf_counter(), signal.signal_id if signal else "-", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
