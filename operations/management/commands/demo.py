"""`python manage.py demo` (`make demo`): a handful of simulated agents against a running server, so
the live page (/live/) has something to show: heartbeats with progress, runs with events through
the SDK, a trace of spans per run (/traces/), LLM calls and quality ratings (for the reports), stream
events, signals passed from agent to agent, an agent that asks for approval (decide it in the admin)
and one that goes silent (stale) and comes back. demo-1's first run fails, and the rule the demo
sets up (`demo: failed runs`) opens an alert when beat next evaluates the rules; a later successful
run of that job closes it."""

from __future__ import annotations

import contextlib
import random
import tempfile
import threading
import time

import httpx
from django.core.management.base import BaseCommand

from alerts.models import AlertRule
from core.models import AgentKey

FAILED_RUNS_RULE = {"name": "demo: failed runs", "kind": AlertRule.Kind.RUN_FAILED, "agents": "demo-*"}
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
        scopes = ["runs:write", "coordination:write", "streams:write", "approvals:request", "approvals:read"]
        key = AgentKey(name=f"demo-{int(time.time())}", agents=["demo-*"], scopes=scopes)
        raw_key = AgentKey.objects.assign_key(key)
        key.save()
        AlertRule.objects.get_or_create(name=FAILED_RUNS_RULE["name"], defaults=FAILED_RUNS_RULE)
        self.stdout.write(f"{agents} demo agents on {url} for {seconds:.0f} s; watch {url}/live/ (Ctrl-C stops)")
        stop = threading.Event()
        threads = [
            threading.Thread(target=simulate, args=(url, raw_key, n + 1, agents, stop), daemon=True) for n in range(agents)
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


def simulate(url: str, raw_key: str, number: int, agents: int, stop: threading.Event) -> None:
    """Agent demo-1 fails its first run and goes silent now and then; demo-2 asks for approval
    before each report; each agent signals the next when it finishes a run."""
    from telemetry_client import (
        ApprovalGate,
        CoordinationSignals,
        EventStreamer,
        FeedbackLoop,
        HeartbeatCoordinator,
        TelemetryClient,
        Tracer,
    )

    agent_id, next_agent = f"demo-{number}", f"demo-{number % agents + 1}"
    rng = random.Random(agent_id)
    client = TelemetryClient(api_url=url, api_key=raw_key, spool_dir=tempfile.mkdtemp(prefix=f"telemetry-demo-{agent_id}-"))
    heartbeat, streams = HeartbeatCoordinator(client), EventStreamer(client)
    signals, gate = CoordinationSignals(client, agent_id=agent_id), ApprovalGate(client, agent_id=agent_id)
    feedback, tracer = FeedbackLoop(client), Tracer(agent_id, client)
    # A thread keeps beating every 5 s (through the approval wait too), except for demo-1, which goes silent.
    interval = None if number == 1 else 5
    name = agent_id.replace("-", " ").title()
    heartbeat.start_heartbeat(agent_id, display_name=name, interval=interval, stale_after_seconds=15)
    runs = 0
    while not stop.is_set():
        runs += 1
        job = rng.choice(["ingest", "review", "report"])
        run_id = client.start_run(agent_id, job)
        trace = tracer.start_trace(f"{job} run", attributes={"job": job}, run_id=run_id)
        steps = rng.randint(4, 10)
        for step in range(steps):
            task = rng.choice(TASKS)
            heartbeat.beat(status="running", progress=(step + 1) / steps, current_task=task)
            client.log_event(run_id, "step", {"task": task, "step": step + 1})
            with tracer.span(task, parent=trace, attributes={"step": step + 1}):
                call_a_model(client, feedback, rng, agent_id, run_id, job, task)
                if rng.random() < 0.2:
                    streams.publish_event("demo.insight", {"agent_id": agent_id, "note": f"{task} looks fine"})
                if signals.check_signal("handoff"):
                    heartbeat.beat(status="running", progress=(step + 1) / steps, current_task="picking up a handoff")
                stopping = stop.wait(rng.uniform(0.5, 2.0))
            if stopping:
                break
        if number == 2 and not stop.is_set():
            heartbeat.beat(status="waiting for approval", progress=1.0, current_task="publish the report")
            with tracer.span("wait for approval", parent=trace):
                gate.request_approval("publish_report", {"run_id": run_id, "pages": steps}, timeout=30)
        failed = (number == 1 and runs == 1) or rng.random() < 0.15
        error = "the source site answered 503" if failed else ""
        tracer.end_span(trace, "error" if failed else "ok", error)
        client.end_run(
            run_id,
            "failure" if failed else "success",
            items_discovered=steps,
            items_succeeded=steps - failed,
            error_summary=error,
        )
        signals.signal("handoff", target_agent=next_agent, payload={"from_run": run_id}, ttl_seconds=30)
        if number == 1 and runs % 3 == 0:
            stop.wait(20)  # past its 15 s threshold: stale on the page, recovered on the next beat
    heartbeat.stop_heartbeat(final_status="stopped")
    client.close()


MODELS = {"cheap": "claude-3-5-haiku", "capable": "claude-sonnet-4", "premium": "claude-opus-4"}


def call_a_model(client, feedback, rng: random.Random, agent_id: str, run_id: str, workflow: str, task: str) -> None:
    """A pretend LLM call, priced by the server's table, and a rating of its answer: mostly on the
    cheap tier, now and then retried on a stronger one."""
    tier = rng.choices(list(MODELS), weights=[6, 3, 1])[0]
    failed = tier == "cheap" and rng.random() < 0.1

    def call(tier: str, **fields) -> None:
        client.record_llm_usage(
            agent_id,
            MODELS[tier],
            rng.randint(500, 6000),
            rng.randint(100, 1500),
            run_id=run_id,
            workflow=workflow,
            stage=task,
            task_type=task,
            tier=tier,
            latency_ms=rng.randint(300, 4000),
            **fields,
        )

    call(tier, cache_read_tokens=rng.choice([0, 0, 2000, 8000]), success=not failed)
    if failed:
        tier = "capable"
        call(tier, fallback=True)
    quality = {"cheap": 0.82, "capable": 0.9, "premium": 0.94}[tier]
    feedback.record_feedback(workflow, task, tier, round(min(1.0, max(0.0, rng.gauss(quality, 0.06))), 2))
