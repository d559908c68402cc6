"""The websocket live feed, /ws/live/, through Channels' communicator on the channels-redis layer
and the real Redis (and, for a slow client, through the real server over TCP)."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from core import events
from core.streams import parse_stream_id
from telemetry_site.asgi import application
from tests.conftest import make_key, make_operator

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost:8000")


def publish(*events_: events.Event) -> list[str]:
    return events.publish_now(events_)


class Watcher:
    """A websocket client of the live feed, and the events it has received."""

    def __init__(self, query: str = "", headers: list[tuple[bytes, bytes]] | None = None):
        self.communicator = WebsocketCommunicator(application, f"/ws/live/?{query}", headers=headers or [])
        self.events: list[dict] = []

    async def connect(self):
        connected, _ = await self.communicator.connect()
        return connected

    async def receive(self, timeout: float = 5) -> dict:
        return json.loads(await self.communicator.receive_from(timeout))

    async def until_ready(self) -> dict:
        while (message := await self.receive())["type"] != "ready":
            self.events += message["events"]
        return message

    async def collect(self, count: int, timeout: float = 10) -> list[dict]:
        """Receive until `count` events in all have arrived."""
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                message = await self.receive(timeout)
                assert message["type"] == "events", message
                self.events += message["events"]
        return self.events

    async def closed_with(self) -> tuple[dict, int]:
        error = await self.receive()
        close = await self.communicator.receive_output(5)
        assert close["type"] == "websocket.close"
        return error, close["code"]


def key_headers(raw_key: str, *extra) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Api-Key {raw_key}".encode()), *extra]


@pytest.fixture
def reader() -> list[tuple[bytes, bytes]]:
    return key_headers(make_key("watcher", scopes=["streams:read"])[1])


def test_refused_without_login_or_key_and_for_keys_without_the_read_scope():
    write_only_key = make_key("writer", scopes=["streams:write"])[1]

    async def run():
        anonymous = Watcher()
        assert await anonymous.connect()
        error, code = await anonymous.closed_with()
        assert code == 4401 and error["error"]["code"] == "not_authenticated"

        writer_only = Watcher(headers=key_headers(write_only_key))
        assert await writer_only.connect()
        error, code = await writer_only.closed_with()
        assert code == 4403 and error["error"]["code"] == "missing_scope"

        wrong = Watcher(headers=key_headers("not-a-key"))
        assert await wrong.connect()
        assert (await wrong.closed_with())[1] == 4401

    async_to_sync(run)()


def test_refused_from_a_foreign_origin_and_bad_query(reader):
    async def run():
        foreign = Watcher(headers=[*reader, (b"origin", b"https://evil.example")])
        assert not await foreign.connect()
        bad = Watcher("since=yesterday&types=a b", headers=reader)
        assert await bad.connect()
        error, code = await bad.closed_with()
        assert code == 4400 and set(error["error"]["fields"]) == {"since", "types"}

    async_to_sync(run)()


def test_a_staff_session_from_our_own_origin_gets_published_events(django_user_model):
    make_operator(django_user_model, "reviewer", "x")
    browser = Client()
    browser.login(username="reviewer", password="x")
    cookie = (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode())

    async def run():
        watcher = Watcher(headers=[cookie, ORIGIN])
        assert await watcher.connect()
        assert (await watcher.until_ready())["replayed"] == 0
        ids = await sync_to_async(publish)(events.Event("deploys", {"n": 1}), events.Event("run.started", {"agent_name": "a"}))
        got = await watcher.collect(2)
        assert [e["event_id"] for e in got] == sorted(ids)
        assert {e["event_type"] for e in got} == {"deploys", "run.started"}
        await watcher.communicator.disconnect()

    async_to_sync(run)()


def test_filters_by_event_type_and_agent(reader):
    async def run():
        runs_of_a = Watcher("types=run.started,run.ended&agents=a", headers=reader)
        deploys = Watcher("types=deploys", headers=reader)
        for watcher in (runs_of_a, deploys):
            assert await watcher.connect()
            await watcher.until_ready()
        await sync_to_async(publish)(
            events.Event("run.started", {"agent_name": "b"}),
            events.Event("run.started", {"agent_name": "a", "n": 1}),
            events.Event("deploys", {"agent_id": "a"}),
            events.Event("run.ended", {"agent_name": "a", "n": 2}),
        )
        # ordered per stream; across streams by id (events of one millisecond may interleave)
        assert sorted(e["data"].get("n") for e in await runs_of_a.collect(2)) == [1, 2]
        assert [e["event_type"] for e in await deploys.collect(1)] == ["deploys"]
        await sync_to_async(publish)(events.Event("deploys", {"last": True}))
        assert (await deploys.collect(2))[-1]["data"] == {"last": True}
        assert len(runs_of_a.events) == 2
        for watcher in (runs_of_a, deploys):
            await watcher.communicator.disconnect()

    async_to_sync(run)()


def test_a_new_event_type_reaches_watchers_at_once(reader):
    async def run():
        watcher = Watcher(headers=reader)
        assert await watcher.connect()
        await watcher.until_ready()
        await sync_to_async(publish)(events.Event("brand.new.type", {"first": True}))
        assert (await watcher.collect(1, timeout=2))[0]["event_type"] == "brand.new.type"
        await watcher.communicator.disconnect()

    async_to_sync(run)()


def test_resume_with_since_gets_what_was_missed_then_live_events_no_gap_no_duplicate(reader):
    """Watchers connect, drop and reconnect with the last id they saw while a publisher keeps
    publishing on three streams: together their sessions see every event exactly once, in order."""
    published: list[str] = []
    stop = threading.Event()

    def publisher():
        n = 0
        while not stop.is_set() and n < 3000:
            batch = [events.Event(("deploys", "builds", "run.started")[(n + i) % 3], {"n": n + i}) for i in range(3)]
            published.extend(zip([e.event_type for e in batch], publish(*batch), strict=True))
            n += 3
            stop.wait(0.002)

    async def run():
        seen: list[dict] = []
        since = ""
        thread = threading.Thread(target=publisher)
        thread.start()
        try:
            for _ in range(8):
                watcher = Watcher(f"since={since}" if since else "", headers=reader)
                assert await watcher.connect()
                await watcher.until_ready()
                await watcher.collect(len(watcher.events) + 20)
                await watcher.communicator.disconnect()
                seen += watcher.events
                since = seen[-1]["event_id"] if seen else since
        finally:
            stop.set()
            await asyncio.to_thread(thread.join)
        # the last watcher catches up with everything published after its predecessors left
        watcher = Watcher(f"since={since}", headers=reader)
        assert await watcher.connect()
        await watcher.until_ready()
        seen += watcher.events
        await watcher.communicator.disconnect()
        return seen

    seen = async_to_sync(run)()
    # streams number their entries independently: an event is its type and id
    got = [(e["event_type"], e["event_id"]) for e in seen]
    assert len(got) == len(set(got)), "an event was delivered twice"
    order = [parse_stream_id(event_id) for _, event_id in got]
    assert order == sorted(order)
    assert set(got) == {event for event in published if parse_stream_id(event[1]) >= order[0]}, "an event was missed"


def test_a_revoked_key_is_disconnected():
    key, raw = make_key("watcher", scopes=["streams:read"])

    async def run():
        watcher = Watcher(headers=key_headers(raw))
        assert await watcher.connect()
        await watcher.until_ready()
        key.revoked = True
        await sync_to_async(key.save)()
        close = await watcher.communicator.receive_output(5)
        assert close == {"type": "websocket.close", "code": 4401}

    async_to_sync(run)()


def test_a_slow_client_is_dropped_without_holding_up_the_others(server_env):
    """Over TCP against the real server: a client that stops reading is cut off with 'lagged'
    while another gets every event; the slow one resumes with since and misses nothing."""
    import websockets.sync.client as ws
    from websockets.exceptions import ConnectionClosed

    from tests.services import asgi_server

    raw = make_key("watcher", scopes=["streams:read"])[1]
    with asgi_server({**server_env, "LIVE_CLIENT_BUFFER": "4000000"}) as base:
        url = base.replace("http", "ws") + "/ws/live/"
        headers = {"Authorization": f"Api-Key {raw}"}
        tiny_buffer = socket.socket()
        tiny_buffer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: no window scaling
        tiny_buffer.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))
        slow = ws.connect(url, sock=tiny_buffer, additional_headers=headers, max_queue=1)
        with slow, ws.connect(url, additional_headers=headers) as fast:
            for client in (slow, fast):
                assert json.loads(client.recv(5))["type"] == "ready"
            fast_ids: list[str] = []

            def read_fast():
                while len(fast_ids) < 600:
                    message = json.loads(fast.recv(10))
                    assert message["type"] == "events", message
                    fast_ids.extend(e["event_id"] for e in message["events"])

            reader = threading.Thread(target=read_fast)
            reader.start()
            ids = []
            for n in range(600):  # ~12 MB, incompressible (the server deflates messages): 3x the buffer
                ids += publish(events.Event("bulk", {"n": n, "padding": secrets.token_urlsafe(15_000)}))
                time.sleep(0.001)
            reader.join(30)
            assert fast_ids == ids
            slow_ids = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    message = json.loads(slow.recv(10))
                    if message["type"] == "error":
                        assert message["error"]["code"] == "lagged"
                    else:
                        slow_ids += [e["event_id"] for e in message["events"]]
            assert closed.value.rcvd.code == 4008
            assert slow_ids == ids[: len(slow_ids)] and len(slow_ids) < len(ids)
        with ws.connect(f"{url}?since={slow_ids[-1]}", additional_headers=headers) as again:
            resumed = []
            while (message := json.loads(again.recv(10)))["type"] == "events":
                resumed += [e["event_id"] for e in message["events"]]
        assert slow_ids + resumed == ids
