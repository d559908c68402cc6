"""The load shedder's second trigger: a web process whose event loop runs late refuses new work
until it has caught up (the count of requests in progress: tests/client/test_overload.py)."""

import asyncio
import time

from core.overload import LoadShedder


async def app(scope, receive, send):
    if scope["path"] == "/hog":
        time.sleep(0.3)  # the point: a request that holds the event loop
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def status_of(shedder: LoadShedder, path: str) -> int:
    sent = []

    async def send(message):
        sent.append(message)

    await shedder({"type": "http", "path": path}, None, send)
    return sent[0]["status"]


async def until(condition) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


def test_a_process_whose_event_loop_runs_late_refuses_new_work_until_it_has_caught_up():
    async def scenario():
        shedder = LoadShedder(app, limit=0, max_lag=0.1)
        assert await status_of(shedder, "/api/v1/ingest") == 200  # starts the lag probe
        await asyncio.sleep(0.01)  # the probe is waiting now
        assert await status_of(shedder, "/hog") == 200
        await until(lambda: shedder.lag > 0.1)
        assert await status_of(shedder, "/api/v1/ingest") == 429
        assert await status_of(shedder, "/health") == 200  # exempt: a busy process is not a dead one
        await until(lambda: shedder.lag < 0.1)
        assert await status_of(shedder, "/api/v1/ingest") == 200
        shedder._probe.cancel()

    asyncio.run(scenario())
