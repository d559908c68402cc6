"""`python manage.py demo` (`make demo`): a handful of simulated agents against a running server, so
the live page (/live/) has something to show: heartbeats with progress, runs with events through
the SDK, stream events, one agent that goes silent (stale) and comes back."""

from __future__ import annotations

import contextlib
import random
import tempfile
import threading
import time

import httpx
from django.core.management.base import BaseCommand

from core.models import AgentKey

TASKS = ["fetch sources", "chunk documents", "embed chunks", "summarise", "review diff", "write report"]


class Command(BaseCommand):
    help = "Run simulated agents against a running server (make run) until Ctrl-C or --seconds."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running server")
        parser.add_argument("--agents", type=int, default=5)
        parser.add_argument("--seconds", type=float, default=300, help="stop after this long")

    def handle(self, url: str, agents: int, seconds: float, **options):
        try:
            httpx.get(f"{url}/health", timeout=3)
        except httpx.TransportError:
            self.stderr.write(f"No server at {url}: start it with `make run` (or pass --url).")
            raise SystemExit(1) from None
        scopes = ["runs:write", "coordination:write", "streams:write"]
        key = AgentKey(name=f"demo-{int(time.time())}", agents=["demo-*"], scopes=scopes)
        raw_key = AgentKey.objects.assign_key(key)
        key.save()
        self.stdout.write(f"{agents} demo agents on {url} for {seconds:.0f} s; watch {url}/live/ (Ctrl-C stops)")
        stop = threading.Event()
        threads = [
            threading.Thread(target=simulate, args=(url, raw_key, f"demo-{n + 1}", n == 0, stop), daemon=True)
            for n in range(agents)
        ]
        for thread in threads:
            thread.start()
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait(seconds)
        stop.set()
        for thread in threads:
            thread.join(10)
        key.revoked = True
        key.save()


def simulate(url: str, raw_key: str, agent_id: str, goes_silent: bool, stop: threading.Event) -> None:
    from telemetry_client import TelemetryClient

    headers = {"Authorization": f"Api-Key {raw_key}"}
    rng = random.Random(agent_id)
    spool = tempfile.mkdtemp(prefix=f"telemetry-demo-{agent_id}-")
    client = TelemetryClient(api_url=url, api_key=raw_key, spool_dir=spool)
    with httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=10) as http:
        start = {"display_name": agent_id.replace("-", " ").title(), "stale_after_seconds": 15}
        http.post(f"/agents/{agent_id}/heartbeat/start", json=start)
        runs = 0
        while not stop.is_set():
            runs += 1
            run_id = client.start_run(agent_id, rng.choice(["ingest", "review", "report"]))
            steps = rng.randint(4, 10)
            for step in range(steps):
                task = rng.choice(TASKS)
                beat = {"status": "running", "progress": (step + 1) / steps, "current_task": task}
                http.post(f"/agents/{agent_id}/heartbeat", json=beat)
                client.log_event(run_id, "step", {"task": task, "step": step + 1})
                if rng.random() < 0.2:
                    http.post("/streams/demo.insight", json={"data": {"agent_id": agent_id, "note": f"{task} looks fine"}})
                if stop.wait(rng.uniform(0.5, 2.0)):
                    break
            failed = rng.random() < 0.15
            client.end_run(run_id, "failure" if failed else "success", items_discovered=steps, items_succeeded=steps - failed)
            if goes_silent and runs % 3 == 0:
                stop.wait(20)  # past its 15 s threshold: stale on the page, recovered on the next beat
        http.post(f"/agents/{agent_id}/heartbeat/stop", json={"final_status": "stopped"})
    client.close()
