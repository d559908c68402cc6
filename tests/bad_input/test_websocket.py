"""Frames the live feed does not take: each closes that connection with an error, and the feed's
other clients go on being served."""

from __future__ import annotations

import json
import uuid
from contextlib import ExitStack

import httpx
import pytest

from tests.bad_input.limits import WS_MAX_SIZE
from tests.conftest import make_key

pytestmark = pytest.mark.django_db(transaction=True)

# --- the websocket live feed --------------------------------------------------------------


@pytest.fixture
def feed(server):
    """Connects readers of the live feed (a key with streams:read, no Origin: an agent program),
    each ready (its `ready` message read); all closed at the end."""
    from websockets.sync.client import connect as ws_connect

    headers = {"Authorization": f"Api-Key {make_key('watcher', scopes=['streams:read'])[1]}"}
    url = server.replace("http", "ws", 1) + "/ws/live/"
    with ExitStack() as opened:

        def connect():
            client = opened.enter_context(ws_connect(url, additional_headers=headers, open_timeout=10))
            assert json.loads(client.recv(10))["type"] == "ready"
            return client

        yield connect


def closed_with(client) -> tuple[list[dict], int | None]:
    """The messages `client` gets until the server closes it, and the close code."""
    from websockets.exceptions import ConnectionClosed

    messages = []
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(100):
            messages.append(json.loads(client.recv(10)))
    return messages, closed.value.rcvd and closed.value.rcvd.code


def still_served(api: httpx.Client, client) -> None:
    """`client` gets an event published now."""
    mark = uuid.uuid4().hex
    assert api.post("/api/v1/streams/deploys", json={"data": {"mark": mark}}).status_code == 201
    for _ in range(100):
        message = json.loads(client.recv(10))
        if any(event["data"].get("mark") == mark for event in message.get("events", [])):
            return
    raise AssertionError("the event never arrived")


FRAMES = {
    "text that is not JSON": "hello?",
    "binary": b"\x00\xff\xfe binary",
    "JSON of a shape it does not know": '{"type": "subscribe", "types": 5}',
    "a JSON array": "[]",
    "an empty text": "",
}


@pytest.mark.parametrize("frame", FRAMES.values(), ids=FRAMES.keys())
def test_a_frame_sent_to_the_live_feed_gets_an_error_and_a_close_and_other_clients_go_on(api, feed, frame):
    """The feed takes no messages from clients."""
    bystander, sender = feed(), feed()
    sender.send(frame)
    messages, code = closed_with(sender)
    assert code == 4400
    assert messages[-1]["type"] == "error" and messages[-1]["error"]["code"] == "unexpected_message"
    still_served(api, bystander)
    still_served(api, feed())


def test_a_frame_over_the_size_limit_closes_that_connection_with_1009_and_no_other(api, feed):
    bystander, sender = feed(), feed()
    sender.send("x" * (WS_MAX_SIZE + 1))
    assert closed_with(sender)[1] == 1009  # "message too big"
    still_served(api, bystander)
    still_served(api, feed())
