"""How the SDK's questions reach the server (telemetry_client.api): kept-alive connections that
survive a restart of the server or a close under a request, proxies named by the environment,
and HTTPS."""

from __future__ import annotations

import asyncio
import base64
import re
import threading
import time
import urllib.parse
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme
from telemetry_client import CoordinationSignals, HeartbeatCoordinator

from tests.services import asgi_server, free_port


@contextmanager
def loopback_server(handle):
    """An asyncio server on loopback running `handle(reader, writer)` for each connection, in a
    thread of its own; yields its port."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[1]
    finally:

        async def shut_down():
            server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

        asyncio.run_coroutine_threadsafe(shut_down(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@contextmanager
def forwarding_proxy():
    """An HTTP proxy on loopback: CONNECT tunnels and plain requests named by absolute URL. Yields
    its URL (with a login) and the head of each request it was sent."""
    heads: list[str] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head.decode())
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
        else:
            url = urllib.parse.urlsplit(target)
            host, port = url.hostname, url.port
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            upstream_writer.write(head)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    with loopback_server(handle) as port:
        yield f"http://agent:p%40ss@127.0.0.1:{port}", heads


@contextmanager
def keep_alive_server(upstream: str, drop_reused: bool = False):
    """A loopback server in front of the real one at `upstream`: it forwards each request and
    keeps the connection alive. With `drop_reused`, it closes a connection as the next request on
    it arrives, unanswered: what a server whose keep-alive timeout fires just then does. Yields
    its URL and its counts: connections accepted, requests dropped, requests being answered."""
    counts = {"connections": 0, "dropped": 0, "open": 0}
    host, port = urllib.parse.urlsplit(upstream).netloc.split(":")

    def without_connection_header(head: bytes) -> bytes:
        return b"\r\n".join(line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:"))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        counts["connections"] += 1
        answered = False
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n"))[:-4]
                length = re.search(rb"(?im)^content-length: *(\d+)", head)
                body = await reader.readexactly(int(length[1]) if length else 0)
                if answered and drop_reused:
                    counts["dropped"] += 1
                    return
                counts["open"] += 1
                upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
                upstream_writer.write(without_connection_header(head) + b"\r\nConnection: close\r\n\r\n" + body)
                answer = await upstream_reader.read()  # to the end: the server closes after it
                upstream_writer.close()
                counts["open"] -= 1
                response_head, _, response_body = answer.partition(b"\r\n\r\n")
                writer.write(without_connection_header(response_head) + b"\r\n\r\n" + response_body)
                await writer.drain()
                answered = True
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    with loopback_server(handle) as own_port:
        yield f"http://127.0.0.1:{own_port}", counts


@pytest.fixture
def no_proxy_settings(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def round_trip(signals: CoordinationSignals, signal_type: str = "go") -> None:
    """A signal to itself, taken back: a POST with a body and its answer."""
    sent = signals.signal(signal_type, target_agent="alpha", payload={"n": 1})
    assert sent
    taken = signals.check_signal(signal_type)
    assert taken is not None and taken.signal_id == sent and taken.payload == {"n": 1}


def test_questions_keep_their_connection_and_find_a_restarted_server(server_env, make_client, sdk_logs):
    port = free_port()
    with asgi_server(server_env, port=port) as base:
        with keep_alive_server(base) as (kept_alive, counts):
            signals = CoordinationSignals(make_client(kept_alive), agent_id="alpha")
            for _ in range(3):
                round_trip(signals)
            assert counts["connections"] == 1
        signals = CoordinationSignals(make_client(base), agent_id="alpha")
        round_trip(signals)
    with asgi_server(server_env, port=port):
        round_trip(signals)  # the kept connection was closed by the old server: replaced, not failed
    assert "failed" not in sdk_logs.text
    assert signals.get_pending_signals() == []  # the server is down: logged, not raised
    assert "GET /api/v1/signals?agent_id=alpha failed" in sdk_logs.text
    sdk_logs.clear()
    with asgi_server(server_env, port=port):
        round_trip(signals)
    assert "failed" not in sdk_logs.text


def test_a_repeatable_question_is_asked_again_when_a_kept_alive_connection_closes_under_it(live_asgi, make_client, sdk_logs):
    """Reads, heartbeats, looks at signals and approval waits are asked again on a new connection;
    taking or sending a signal is not (the lost answer may have held the signal, or it was sent)."""
    with keep_alive_server(live_asgi, drop_reused=True) as (dropping, counts):
        client = make_client(dropping)
        heartbeat, signals = HeartbeatCoordinator(client), CoordinationSignals(client, agent_id="alpha")
        heartbeat.start_heartbeat("alpha")
        heartbeat.beat(status="building", progress=0.5)
        status = heartbeat.get_agent_status("alpha")
        assert status is not None and status.status == "building"
        assert asyncio.run(heartbeat.aget_agent_status("alpha")).status == "building"
        assert signals.check_signal("go", consume=False) is None
        assert counts["dropped"] == 3 and "failed" not in sdk_logs.text

        assert signals.signal("go", target_agent="alpha") == ""
        assert counts["dropped"] == 4 and "POST /api/v1/signals failed: Server disconnected" in sdk_logs.text
    assert CoordinationSignals(make_client(live_asgi), agent_id="alpha").get_pending_signals() == []


def test_threads_ask_at_the_same_time_each_on_a_connection(live_asgi, make_client, sdk_logs):
    with keep_alive_server(live_asgi) as (kept_alive, counts):
        signals = CoordinationSignals(make_client(kept_alive), agent_id="alpha")
        taken = {}

        def wait(signal_type: str):
            taken[signal_type] = signals.wait_for_signal(signal_type, timeout=30)

        threads = [threading.Thread(target=wait, args=(f"go-{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while counts["open"] < 4:  # four waits held at once
            assert time.monotonic() < deadline, counts
            time.sleep(0.02)
        sender = CoordinationSignals(make_client(live_asgi), agent_id="alpha")
        sent = {f"go-{n}": sender.signal(f"go-{n}", target_agent="alpha") for n in range(4)}
        for thread in threads:
            thread.join(30)
        assert {signal_type: found.signal_id for signal_type, found in taken.items()} == sent
    assert "failed" not in sdk_logs.text


def test_questions_go_through_the_proxy_the_environment_names(live_asgi, make_client, no_proxy_settings, sdk_logs):
    with forwarding_proxy() as (proxy, heads):
        no_proxy_settings.setenv("HTTP_PROXY", proxy)
        round_trip(CoordinationSignals(make_client(live_asgi), agent_id="alpha"))
        assert heads[0].startswith(f"POST {live_asgi}/api/v1/signals HTTP/1.1\r\n")
        assert f"Proxy-Authorization: Basic {base64.b64encode(b'agent:p@ss').decode()}\r\n" in heads[0]
        assert "Api-Key " in heads[0]

        heads.clear()
        no_proxy_settings.setenv("NO_PROXY", "127.0.0.1")
        round_trip(CoordinationSignals(make_client(live_asgi), agent_id="alpha"))
        assert heads == []
    assert "failed" not in sdk_logs.text


@pytest.mark.parametrize("setting", [":3128", "http://", "socks5://127.0.0.1:1080", "http://127.0.0.1:port"])
def test_a_proxy_setting_the_sdk_cannot_use_fails_the_call_with_a_log_line(make_client, no_proxy_settings, sdk_logs, setting):
    no_proxy_settings.setenv("HTTP_PROXY", setting)
    signals = CoordinationSignals(make_client("http://127.0.0.1:9"), agent_id="alpha")
    assert signals.signal("go", target_agent="alpha") == ""
    assert signals.get_pending_signals() == []
    assert sdk_logs.text.count("failed") == 2


def test_agent_ids_with_spaces_and_accents_reach_the_server(live_asgi, make_client, sdk_logs):
    heartbeat = HeartbeatCoordinator(make_client(live_asgi))
    heartbeat.start_heartbeat("alpha-build ë 1", display_name="Build ë")
    heartbeat.beat(status="building", progress=0.5)
    status = heartbeat.get_agent_status("alpha-build ë 1")
    assert status is not None and status.status == "building" and status.display_name == "Build ë"
    heartbeat.stop_heartbeat()
    assert "failed" not in sdk_logs.text


@pytest.fixture
def tls_files(tmp_path) -> dict[str, str]:
    """A certificate authority of this test and a certificate it issued for localhost (the
    proxy is reached as 127.0.0.1: a check against the proxy's name would fail)."""
    authority = trustme.CA()
    leaf = authority.issue_cert("localhost")
    files = {name: str(tmp_path / f"{name}.pem") for name in ("ca", "cert", "key")}
    authority.cert_pem.write_to_path(files["ca"])
    leaf.cert_chain_pems[0].write_to_path(files["cert"])
    leaf.private_key_pem.write_to_path(files["key"])
    return files


def test_https_directly_and_through_a_proxy_tunnel(server_env, make_client, tls_files, no_proxy_settings, sdk_logs):
    with asgi_server(server_env, tls=(tls_files["cert"], tls_files["key"])) as served:
        base = served.replace("127.0.0.1", "localhost")
        assert CoordinationSignals(make_client(base), agent_id="alpha").signal("go", target_agent="alpha") == ""
        assert "CERTIFICATE_VERIFY_FAILED" in sdk_logs.text  # our CA is not one certifi trusts

        no_proxy_settings.setenv("SSL_CERT_FILE", tls_files["ca"])
        direct = make_client(base)
        round_trip(CoordinationSignals(direct, agent_id="alpha"))
        direct.close()  # (else the server's stop waits for its idle connection's TLS close)
        with forwarding_proxy() as (proxy, heads):
            no_proxy_settings.setenv("HTTPS_PROXY", proxy)
            tunnelled = make_client(base)
            round_trip(CoordinationSignals(tunnelled, agent_id="alpha"))
            tunnelled.close()
            authority = base.removeprefix("https://")
            assert heads[0].startswith(f"CONNECT {authority} HTTP/1.")
            assert "Proxy-Authorization: Basic " in heads[0]
            assert "Api-Key" not in heads[0]  # the key travels inside the tunnel


def test_a_url_without_a_server_is_named_in_the_log(make_client, sdk_logs):
    signals = CoordinationSignals(make_client("http:///api"), agent_id="alpha")
    assert signals.signal("go", target_agent="alpha") == ""
    assert "TELEMETRY_API_URL 'http:///api' is not the http(s) URL of a server" in sdk_logs.text


def test_a_payload_json_cannot_carry_is_sent_with_strings_not_raised(live_asgi, make_client):
    signals = CoordinationSignals(make_client(live_asgi), agent_id="alpha")
    when = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert signals.signal("go", target_agent="alpha", payload={"at": when, "where": Path("data/in.csv")})
    assert signals.check_signal("go").payload == {"at": "2026-11-30 12:00:00+00:00", "where": "data/in.csv"}


def test_a_key_from_the_environment_ending_in_a_newline_still_works(live_asgi, agent_key, monkeypatch, sdk_logs):
    monkeypatch.setenv("TELEMETRY_API_URL", f"{live_asgi}\n")
    monkeypatch.setenv("TELEMETRY_API_KEY", f"{agent_key}\n")
    round_trip(CoordinationSignals(agent_id="alpha"))  # configured from the environment
    assert "failed" not in sdk_logs.text
