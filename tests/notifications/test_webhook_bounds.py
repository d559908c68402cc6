"""What a receiver, or an agent's text, can do to a delivery: Slack markup an agent wrote is shown as
text; an answer's body is never read (an endless one costs nothing); a receiver that answers a byte
at a time is given up at WEBHOOK_DEADLINE_SECONDS; and with WEBHOOK_ALLOW_PRIVATE_ADDRESSES=false
no delivery reaches a loopback or private address, whatever name it is given by."""

from __future__ import annotations

import http.server
import json
import threading
import time
from contextlib import contextmanager

import pytest

from notifications import services
from notifications.models import Delivery, Notification, NotificationChannel
from notifications.sending import send
from tests.conftest import key_client, make_key
from tests.fakes import http_receiver

pytestmark = pytest.mark.django_db(transaction=True)


def test_slack_markup_an_agent_wrote_is_shown_as_text(eager):
    agent = key_client(make_key("alpha")[1])
    with http_receiver() as (url, received):
        NotificationChannel.objects.create(name="slack", kind="slack", target=url, topics=["approval.requested"])
        context = {"note": "<!channel> urgent: <https://evil.example/login|Approve here> & <@U024BE7LH>"}
        assert agent.post("/api/v1/approvals", {"approval_type": "deploy", "context": context}, format="json").status_code == 201
    (message,) = received
    text = json.loads(message["body"])["text"]
    assert "&lt;!channel&gt; urgent: &lt;https://evil.example/login|Approve here&gt; &amp; &lt;@U024BE7LH&gt;" in text
    assert text.count("<") == 1 and text.endswith("|Open>")  # the one link is the server's own


@contextmanager
def answering(respond):
    """A receiver whose handler, after reading the request, calls `respond(wfile)`; yields its URL
    and a dict that says whether `respond` finished (False: the client hung up first)."""
    outcome = {"finished": None}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                respond(self.wfile)
                outcome["finished"] = True
            except OSError:  # the client closed the connection
                outcome["finished"] = False

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", outcome
    finally:
        server.shutdown()
        server.server_close()


def deliver_one(url: str) -> Delivery:
    """A notification to a webhook at `url`, sent as the worker sends it; the delivery after."""
    channel = NotificationChannel.objects.create(name="hook", kind="webhook", target=url)
    (pk,) = services.record(Notification(topic="test", subject="s", text="t"), [channel])
    send([pk])
    return Delivery.objects.get(pk=pk)


ENDLESS = 64 * 1024 * 1024


def endless_body(wfile) -> None:
    wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % ENDLESS)
    block = b"x" * (1024 * 1024)
    for _ in range(ENDLESS // len(block)):
        wfile.write(block)
    wfile.flush()


def test_the_answers_body_is_never_read():
    with answering(endless_body) as (url, outcome):
        delivery = deliver_one(url)
        deadline = time.monotonic() + 30
        while outcome["finished"] is None:  # the receiver's thread notices the hang-up
            assert time.monotonic() < deadline, "the receiver is still sending"
            time.sleep(0.05)
    assert (delivery.status, delivery.last_error) == ("delivered", "")
    assert outcome["finished"] is False  # it could not send its 64 MiB: the client had gone


def byte_by_byte(wfile) -> None:
    """A valid answer, one byte of its headers every 0.2 s: about 12 s in all, each read quick."""
    answer = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 40 + b"\r\nContent-Length: 0\r\n\r\n"
    for index in range(len(answer)):
        wfile.write(answer[index : index + 1])
        wfile.flush()
        time.sleep(0.2)


def test_a_receiver_answering_a_byte_at_a_time_is_given_up_at_the_deadline(settings):
    settings.WEBHOOK_DEADLINE_SECONDS = 1
    with answering(byte_by_byte) as (url, _):
        delivery = deliver_one(url)
    assert delivery.status == "pending" and delivery.attempts == 1  # tried again after its backoff
    assert delivery.last_error.startswith("ReadTimeout: the delivery took longer than WEBHOOK_DEADLINE_SECONDS (1 s)")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_private_addresses_are_refused_when_not_allowed(settings, host):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    with http_receiver() as (url, received):
        delivery = deliver_one(url.replace("127.0.0.1", host))
    assert received == [] and delivery.status == "pending"
    assert "not a public address (WEBHOOK_ALLOW_PRIVATE_ADDRESSES is false)" in delivery.last_error


def test_private_addresses_are_served_by_default():
    with http_receiver() as (url, received):
        delivery = deliver_one(url.replace("127.0.0.1", "localhost"))
    assert delivery.status == "delivered" and len(received) == 1
