"""core.fastpaths leans on names its libraries do not promise to keep (core/fastpaths/__init__.py
lists them, with the bench behind each piece). These tests fail, naming the library and the name,
when one moves, disappears or takes other parameters, and when an installed library is not the
version requirements.txt pins: an upgrade means checking the pieces and re-running their benches."""

import importlib
import importlib.metadata
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (library as pinned, module, name in it, its parameters as called, or None): what the pieces
# import, call, override or set.
NAMES = [
    # pipelined_redis
    ("redis", "redis._parsers.base", "BaseParser.parse_error", ["response"]),
    ("redis", "redis.asyncio.connection", "parse_url", ["url"]),
    ("redis", "redis.asyncio.connection", "RedisSSLContext.get", ["self"]),
    ("redis", "redis.asyncio.connection", "SSLConnection", None),
    ("redis", "redis.exceptions", "InvalidResponse", None),
    ("hiredis", "hiredis", "Reader", None),
    ("hiredis", "hiredis", "pack_command", None),
    # agent_handler
    ("Django", "django.core.handlers.asgi", "ASGIHandler.load_middleware", ["self", "is_async"]),
    ("Django", "django.core.handlers.asgi", "ASGIHandler.handle", ["self", "scope", "receive", "send"]),
    ("Django", "django.core.handlers.asgi", "ASGIHandler._middleware_chain", None),
    ("Django", "django.core.handlers.asgi", "ASGIHandler._view_middleware", None),
    ("Django", "django.core.handlers.asgi", "ASGIHandler._template_response_middleware", None),
    ("Django", "django.core.handlers.asgi", "ASGIHandler._exception_middleware", None),
    ("Django", "django.core.handlers.asgi", "ASGIHandler._get_response_async", ["self", "request"]),
    ("Django", "django.core.handlers.asgi", "ASGIHandler.read_body", ["self", "receive"]),
    ("Django", "django.core.handlers.asgi", "ASGIHandler.create_request", ["self", "scope", "body_file"]),
    ("Django", "django.core.handlers.asgi", "ASGIHandler.run_get_response", ["self", "request"]),
    ("Django", "django.core.handlers.asgi", "ASGIHandler.send_response", ["self", "response", "send"]),
    ("Django", "django.core.handlers.asgi", "ASGIHandler.listen_for_disconnect", ["self", "receive"]),
    ("Django", "django.core.handlers.asgi", "get_script_prefix", ["scope"]),
    ("Django", "django.core.handlers.exception", "convert_exception_to_response", ["get_response"]),
    ("Django", "django.middleware.security", "SecurityMiddleware.process_request", ["self", "request"]),
    ("Django", "django.middleware.security", "SecurityMiddleware.process_response", ["self", "request", "response"]),
    ("Django", "django.core.handlers.asgi", "ASGIHandler.__call__", ["self", "scope", "receive", "send"]),
    ("Django", "django.core.handlers.base", "BaseHandler.resolve_request", ["self", "request"]),
    ("asgiref", "asgiref.sync", "ThreadSensitiveContext.__init__", ["self", "executor"]),
    # sqlite_writer
    ("Django", "django.db.backends.sqlite3.base", "DatabaseWrapper._start_transaction_under_autocommit", ["self"]),
    (
        "Django",
        "django.db.backends.base.base",
        "BaseDatabaseWrapper.set_autocommit",
        ["self", "autocommit", "force_begin_transaction_with_broken_autocommit"],
    ),
    ("Django", "django.db.backends.base.base", "BaseDatabaseWrapper.close", ["self"]),
    # bulk_insert
    ("psycopg", "psycopg", "Cursor", None),
    ("Django", "django.db.backends.base.base", "BaseDatabaseWrapper.wrap_database_errors", None),
    ("Django", "django.db.backends.base.base", "BaseDatabaseWrapper.ensure_connection", None),
    ("Django", "django.db.backends.base.operations", "BaseDatabaseOperations.bulk_batch_size", ["self", "fields", "objs"]),
    ("Django", "django.db.backends.base.operations", "BaseDatabaseOperations.quote_name", ["self", "name"]),
    ("Django", "django.db.models.options", "Options.concrete_fields", None),
    # prometheus_text
    ("prometheus-client", "prometheus_client.utils", "floatToGoString", ["d"]),
]
PINNED = sorted({library for library, *_ in NAMES})

# Django calls these on the handler, where AgentApiHandler puts its own, and on the connection,
# where OneWriterWrapper does.
CALLED_BY_DJANGO = [
    ("django.core.handlers.asgi", "ASGIHandler.__init__", "self.load_middleware("),
    ("django.core.handlers.asgi", "ASGIHandler.__call__", "self.handle("),
    ("django.core.handlers.base", "BaseHandler.get_response_async", "self._middleware_chain("),
    ("django.core.handlers.base", "BaseHandler._get_response_async", "self.resolve_request("),
    # sqlite_writer: where a transaction starts and ends
    ("django.db.backends.base.base", "BaseDatabaseWrapper.set_autocommit", "self._start_transaction_under_autocommit("),
    ("django.db.transaction", "Atomic.__enter__", "force_begin_transaction_with_broken_autocommit=True"),
    ("django.db.transaction", "Atomic.__exit__", "connection.set_autocommit(True)"),
]


def found(module: str, name: str):
    value = importlib.import_module(module)
    for part in name.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize(("library", "module", "name", "parameters"), NAMES, ids=[f"{n[0]}:{n[1]}.{n[2]}" for n in NAMES])
def test_each_name_the_fast_paths_use_is_where_they_use_it(library, module, name, parameters):
    try:
        value = found(module, name)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{library}: {module}.{name} is gone ({exc}); core.fastpaths uses it")
    if parameters is not None:
        have = list(inspect.signature(value).parameters)
        assert have == parameters, f"{library}: {module}.{name} takes {have}, core.fastpaths calls it with {parameters}"


@pytest.mark.parametrize(("module", "name", "call"), CALLED_BY_DJANGO, ids=[n[1] for n in CALLED_BY_DJANGO])
def test_django_still_calls_what_the_agent_handler_replaces(module, name, call):
    source = inspect.getsource(found(module, name))
    assert call in source, f"Django: {module}.{name} no longer calls {call}...), which core.fastpaths overrides"


def test_the_agent_handler_overrides_only_what_djangos_handler_has():
    from django.core.handlers.asgi import ASGIHandler

    from core.fastpaths.agent_handler import AgentApiHandler

    own = [name for name, value in vars(AgentApiHandler).items() if callable(value)]
    missing = [name for name in own if not hasattr(ASGIHandler, name)]
    assert not missing, f"Django: ASGIHandler has no {missing}, which AgentApiHandler overrides"


def test_the_agent_apis_threads_keep_their_sqlite_connection_and_write_one_at_a_time(transactional_db):
    """core.fastpaths.sqlite_writer: a write transaction holds the process's lock and the web
    processes' flock from BEGIN to its end, committed or rolled back, or its connection closed;
    Django reads CONN_MAX_AGE from the wrapper's settings_dict when it connects."""
    import fcntl
    import os
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection, connections, transaction

    from core.fastpaths.sqlite_writer import WRITE_LOCK, one_sqlite_writer

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's write lock")

    def locked() -> tuple[bool, bool]:
        """Whether this process's lock is taken, and the flock (tried from another open file, as
        another process would)."""
        other = os.open(f"{connection.settings_dict['NAME']}-writers", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            flocked = False
        except BlockingIOError:
            flocked = True
        finally:
            os.close(other)
        return WRITE_LOCK.locked(), flocked

    def transactions():
        one_sqlite_writer()
        wrapper = connections["default"]
        states = []
        with transaction.atomic():
            states.append(locked())
        states.append(locked())
        with pytest.raises(ZeroDivisionError), transaction.atomic():
            states.append(locked())
            1 / 0  # noqa: B018
        states.append(locked())
        with transaction.atomic():
            wrapper.close()
        states.append(locked())
        wrapper.ensure_connection()
        states.append(wrapper.close_at)
        wrapper.close()
        return states

    held, free = (True, True), (False, False)
    with ThreadPoolExecutor(max_workers=1) as thread:
        assert thread.submit(transactions).result() == [held, free, held, free, free, None]


def test_what_the_pipelined_connection_takes_from_redis_py_and_hiredis_behaves_as_it_did():
    import hiredis
    from redis._parsers.base import BaseParser
    from redis.asyncio.connection import SSLConnection, parse_url
    from redis.exceptions import BusyLoadingError, InvalidResponse, NoScriptError, ResponseError

    assert parse_url("rediss://redis.example:6380/0")["connection_class"] is SSLConnection, (
        "redis: parse_url no longer names SSLConnection for rediss:// (core.fastpaths.pipelined_redis._tls_context)"
    )
    assert type(BaseParser.parse_error("NOSCRIPT No matching script.")) is NoScriptError, "redis: BaseParser.parse_error"
    assert type(BaseParser.parse_error("LOADING Redis is loading")) is BusyLoadingError, "redis: BaseParser.parse_error"
    reader = hiredis.Reader(replyError=BaseParser.parse_error, protocolError=InvalidResponse)
    reader.feed(b"-ERR wrong\r\n:7\r\n")
    assert [type(reader.gets()), reader.gets()] == [ResponseError, 7], "hiredis: Reader(replyError=, protocolError=)"
    assert hiredis.pack_command(("SET", "k", 1)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n", "hiredis: pack_command"


def test_the_bulk_insert_reaches_the_db_api_connection_where_django_keeps_it():
    import psycopg
    from django.db import connections

    assert "connection" in vars(connections["default"]), "Django: DatabaseWrapper.connection (the DB-API connection)"
    assert not issubclass(psycopg.Cursor, psycopg.ClientCursor), "psycopg: Cursor binds on the client now"


def test_httpx_still_sends_through_the_pool_notifications_replaces():
    """notifications.sending.GuardedTransport replaces httpx.HTTPTransport._pool with a pool on its
    own network backend (the deadline and the address check): httpx takes no backend otherwise."""
    import inspect

    import httpcore
    import httpx

    assert isinstance(getattr(httpx.HTTPTransport(), "_pool", None), httpcore.ConnectionPool), "httpx: HTTPTransport._pool"
    assert "self._pool.handle_request" in inspect.getsource(httpx.HTTPTransport.handle_request), "httpx: handle_request"
    assert all(pins(ROOT / path).get(name) for path in ("requirements.in", "requirements.txt") for name in ("httpx", "httpcore"))


def pins(path: Path) -> dict[str, str]:
    """`name==version` lines of a requirements file, by normalised name (extras dropped)."""
    found = {}
    for line in path.read_text().splitlines():
        if match := re.match(r"([A-Za-z0-9_.-]+)(\[[^]]*\])?==([^\s#]+)", line):
            found[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[3]
    return found


@pytest.mark.parametrize("library", PINNED)
def test_the_libraries_are_installed_at_their_pins(library):
    name = library.lower()
    locked, asked = pins(ROOT / "requirements.txt").get(name), pins(ROOT / "requirements.in").get(name)
    installed = importlib.metadata.version(library)
    assert asked == locked, f"{library}: requirements.in pins {asked}, requirements.txt {locked}; core.fastpaths needs it pinned"
    assert installed == locked, (
        f"{library} {installed} is installed, requirements.txt pins {locked}: core.fastpaths uses names it does not "
        "promise to keep; run tests/core/test_fastpaths.py and the benches core/fastpaths/__init__.py names, then move the pin"
    )
