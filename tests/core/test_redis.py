"""The pipelined Redis connection of the hot path (core.fastpaths.pipelined_redis), on real Redis
servers: answers in order to their callers, errors, a password and a database, a Redis that
hangs, dies and comes back, a caller that gives up."""

import asyncio
import signal
import ssl

import pytest
import redis
from django.conf import settings

from core.fastpaths.pipelined_redis import PipelinedRedis, Script
from core.redis import SOCKET_CONNECT_TIMEOUT, SOCKET_TIMEOUT, get_pipelined_redis
from operations.embedded_redis import EmbeddedRedis, free_port


def run(coroutine):
    return asyncio.run(coroutine)


def pipelined(url: str, timeout: float = SOCKET_TIMEOUT) -> PipelinedRedis:
    return PipelinedRedis(url, timeout, SOCKET_CONNECT_TIMEOUT)


def test_concurrent_commands_share_one_connection_and_each_caller_gets_its_own_answer():
    async def main():
        client = pipelined(settings.REDIS_URL)
        echoes = [client.execute("ECHO", f"answer-{n}") for n in range(500)]
        connections = [client.execute("CLIENT", "ID") for _ in range(50)]
        return await asyncio.gather(*echoes), await asyncio.gather(*connections)

    answers, connection_ids = run(main())
    assert answers == [f"answer-{n}".encode() for n in range(500)]
    assert len(set(connection_ids)) == 1


def test_answers_keep_redis_types_and_error_answers_are_raised_without_breaking_the_connection():
    async def main():
        client = pipelined(settings.REDIS_URL)
        await client.execute("SET", "word", "x")
        with pytest.raises(redis.exceptions.ResponseError, match="not an integer"):
            await client.execute("INCR", "word")
        with pytest.raises(redis.exceptions.NoScriptError):
            await client.execute("EVALSHA", "0" * 40, 0)
        return [
            await client.execute("INCRBY", "counter", 7),
            await client.execute("GET", "missing"),
            await client.execute("EVAL", "return {1, 'two', {3}}", 0),
        ]

    assert run(main()) == [7, None, [1, b"two", [3]]]


def test_a_script_not_yet_loaded_is_loaded_by_its_first_call():
    script = Script("return {KEYS[1], ARGV[1]}", get_pipelined_redis)
    redis_client = redis.Redis.from_url(settings.REDIS_URL)
    redis_client.script_flush()

    assert run(script(["k"], ["v"])) == [b"k", b"v"]
    assert redis_client.script_exists(script.sha1) == [True]
    assert run(script(["k2"], [3])) == [b"k2", b"3"]


def test_a_caller_that_gives_up_does_not_take_the_next_callers_answer():
    async def main():
        client = pipelined(settings.REDIS_URL)
        slow = asyncio.create_task(client.execute("EVAL", "local t = redis.call('TIME') while true do "
                                                  "local n = redis.call('TIME') if (n[1] - t[1]) * 1e6 + n[2] - t[2] "
                                                  "> 200000 then return 'slow' end end", 0))  # fmt: skip
        await asyncio.sleep(0.05)
        slow.cancel()
        following = await client.execute("ECHO", "mine")
        return slow.cancelled(), following

    assert run(main()) == (True, b"mine")


def test_a_password_and_a_database_from_the_url(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis").start()
    try:
        redis.Redis(port=server.port).config_set("requirepass", "s3cret")

        async def main(url):
            client = pipelined(url)
            await client.execute("SET", "where", "db 3")
            return await client.execute("GET", "where")

        assert run(main(f"redis://:s3cret@127.0.0.1:{server.port}/3")) == b"db 3"
        assert redis.Redis(port=server.port, password="s3cret", db=3).get("where") == b"db 3"
        assert redis.Redis(port=server.port, password="s3cret", db=0).get("where") is None
        with pytest.raises(redis.exceptions.AuthenticationError):
            run(main(f"redis://:wrong@127.0.0.1:{server.port}/3"))
    finally:
        server.stop()


def test_redis_that_hangs_fails_the_commands_in_flight_after_the_timeout_then_serves_again(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis").start()
    try:

        async def main():
            client = pipelined(server.url, timeout=0.5)
            assert await client.execute("SET", "k", "before") is not None
            server.process.send_signal(signal.SIGSTOP)
            try:
                hung = await asyncio.gather(*(client.execute("GET", "k") for _ in range(3)), return_exceptions=True)
            finally:
                server.process.send_signal(signal.SIGCONT)
            return hung, await client.execute("GET", "k")

        hung, after = run(main())
        assert [type(error) for error in hung] == [redis.exceptions.TimeoutError] * 3
        assert after == b"before"
    finally:
        server.stop()


def test_redis_that_dies_fails_commands_with_connection_errors_and_is_used_again_once_back(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis").start()
    try:

        async def main():
            client = pipelined(server.url)
            await client.execute("SET", "k", "v")
            server.process.kill()
            server.process.wait()
            await asyncio.sleep(0.1)
            with pytest.raises(redis.exceptions.ConnectionError):
                await client.execute("GET", "k")
            with pytest.raises(redis.exceptions.ConnectionError, match="could not be reached"):
                await client.execute("GET", "k")
            EmbeddedRedis(tmp_path / "redis-again", port=server.port).start()
            return await client.execute("SET", "k", "again"), await client.execute("GET", "k")

        assert run(main()) == (b"OK", b"again")
    finally:
        redis.Redis(port=server.port).shutdown(nosave=True)


def test_commands_that_find_redis_unreachable_share_one_attempt_and_all_fail_with_it(monkeypatch):
    attempts = []
    connect = PipelinedRedis._connect

    async def counted(self):
        attempts.append(1)
        return await connect(self)

    monkeypatch.setattr(PipelinedRedis, "_connect", counted)

    async def main():
        client = pipelined(f"redis://127.0.0.1:{free_port()}/0")
        return await asyncio.gather(*(client.execute("PING") for _ in range(20)), return_exceptions=True)

    failures = run(main())
    assert [type(error) for error in failures] == [redis.exceptions.ConnectionError] * 20
    assert len(attempts) == 1


def test_a_full_redis_is_a_connection_error_as_redis_py_maps_it(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis").start()
    holder = redis.Redis(port=server.port)
    try:
        holder.config_set("maxclients", 1)
        with pytest.raises(redis.exceptions.ConnectionError):
            run(pipelined(server.url).execute("PING"))
    finally:
        holder.config_set("maxclients", 100)
        server.stop()


def test_a_tls_url_gets_redis_pys_tls_context():
    verified = pipelined("rediss://:pw@redis.example:6380/0").tls
    assert (verified.verify_mode, verified.check_hostname) == (ssl.CERT_REQUIRED, True)
    unverified = pipelined("rediss://redis.example:6380/0?ssl_cert_reqs=none").tls
    assert unverified.verify_mode == ssl.CERT_NONE
    assert pipelined("redis://127.0.0.1:6379/0").tls is None
