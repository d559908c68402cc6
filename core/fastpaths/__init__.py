"""Hand-written stand-ins for library code, each kept because a bench measured the library's way
as too slow. They lean on names the libraries do not promise to keep: those libraries are pinned
(requirements.in), and tests/core/test_fastpaths.py fails, naming the library and the name, when
one of those names moves or an installed version differs from its pin. After an upgrade, re-run
the piece's bench before trusting the figures below (from docs/performance.md and the commit log).

pipelined_redis: PipelinedRedis, one pipelined connection per event loop for the quick commands of
    the hot path, and Script, which runs the Lua scripts (beats, signals, events published from
    async views) on it. Stands in for redis-py's asyncio client (redis.asyncio.Redis, its pooled
    connections and registered scripts): about 120 us of CPU a command there, 16-30 us here.
    Bench: bench/coordination.py. Heartbeats as a share of the lean bare view (part 3): 41-47%
    with redis-py's client, 51% with this when it came, 57-59% (SQLite) and 57-63% (PostgreSQL)
    since (target >= 50%). Signal -> wait returns, p50 (part 1), in one slow hour: HTTP 4.6-4.9 ms
    with redis-py's client, 3.1-3.6 ms with this; SDK 6.4-7.0 ms, 5.6-5.7 ms.
    Uses: redis._parsers.base.BaseParser.parse_error, redis.asyncio.connection's parse_url,
    RedisSSLContext and SSLConnection, redis.exceptions.InvalidResponse; hiredis.Reader's
    replyError and protocolError, hiredis.pack_command.

agent_handler: AgentApiHandler, the Django handler of API requests that carry an agent key: no
    session, CSRF, auth, messages or clickjacking middleware, no thread unless the view needs one,
    and then one of WEB_SYNC_THREADS long-lived threads, not a new one. A sync view's key is checked
    and its events are published from the event loop, on the pipelined Redis connection.
    Stands in for Django's ASGIHandler with settings.MIDDLEWARE.
    Bench: bench/coordination.py, part 3's two bare views (the same async view through this
    handler and through Django's own): 4,000-4,500 req/s against 210-400 (uvicorn x2, one run);
    heartbeats are 455-516% (SQLite) and 383-473% (PostgreSQL) of the second. bench/ingest.py's
    bare DRF view: 210-280 req/s before, 604 after (SQLite); 170-250 and 910 (PostgreSQL).
    Its long-lived threads, the key checked and the events published from the event loop:
    bench/single_writes.py, CPU of the web process per request, before -> after: single POST
    4.25 -> 2.06 ms (SQLite), 3.33 -> 2.13 ms (PostgreSQL); PATCH 4.23 -> 2.26, 3.75 -> 2.68 ms;
    the bare DRF view 1.11 -> 0.56, 1.07 -> 0.64 ms (docs/performance.md, 2026-12-07).
    Uses of django.core.handlers.asgi.ASGIHandler: overrides load_middleware and handle, sets
    _middleware_chain, _view_middleware, _template_response_middleware, _exception_middleware,
    calls _get_response_async, read_body, create_request, run_get_response, send_response,
    listen_for_disconnect, and __call__ (overridden) and resolve_request (overridden, once a
    request); asgiref.sync.ThreadSensitiveContext(executor=); django.core.handlers.asgi.get_script_prefix,
    django.core.handlers.exception.convert_exception_to_response, SecurityMiddleware's
    process_request and process_response; request.auser (as AuthenticationMiddleware sets it).

sqlite_writer: OneWriterWrapper, the SQLite connection of the agent API's threads: each write
    transaction takes a process-wide Python lock and then an flock on `<database>-writers` from
    BEGIN IMMEDIATE to its end, so the threads and web processes queue on them and the next starts
    when the holder commits, instead of sleeping in SQLite's busy handler (1 to 100 ms between
    tries). Stands in for Django's sqlite3 DatabaseWrapper there. Bench: see agent_handler's
    threads, with which the Python lock came; the flock came with core.group_commit
    (bench/ingest.py, single POST /api/v1/runs at 64 clients on two workers: p99 199.6 -> 160.2 ms).
    Uses: DatabaseWrapper._start_transaction_under_autocommit (overridden), set_autocommit and
    close (extended), and Atomic calling them at a block's start and end.

bulk_insert: insert_rows and insert_new, chunked INSERT ... ON CONFLICT of plain rows (dicts),
    RETURNING what was stored, their parameters bound by PostgreSQL in binary (UNNEST arrays, or
    one row's VALUES) and prepared after DATABASE_PREPARE_THRESHOLD runs;
    update_rows, the same rows joined into an UPDATE by primary key (metric series totals, the fields
    a group of writes changed on runs: runs.services.RunChanges);
    db_values, the rows' values as sent, for callers to make before their transaction (Batch.store).
    Stands in for QuerySet.bulk_create (which builds a model instance per row, cannot say which
    rows a conflict skipped, and binds every value into the SQL text in Python through Django's
    psycopg cursor).
    Bench: bench/ingest.py, POST /api/v1/runs/batch against raw bulk_create of the same runs:
    PostgreSQL 154% (7,343 rows/s against 4,767), 63% before the server bound the parameters;
    SQLite 77% (target >= 50%). bench/metrics.py times insert_new itself as its raw rate (metric
    points 52,408 rows/s on SQLite, 34,619 on PostgreSQL; spans 11,646 and 10,291), the limit the
    API's rates are read against. bench/delivery.py: 1,000 forwarded records inserted in 74 ms
    instead of 278 with Django's client-side binding; the worker's CPU per run with a dead
    receiver 258 -> 87 us. update_rows for PATCH (bench/ingest.py, 64 clients, of the bare view):
    SQLite 64-70% -> 113-117%, PostgreSQL 52-54% -> 95-99%.
    Uses: psycopg.Cursor on Django's raw connection (DatabaseWrapper.connection), Django's
    DatabaseWrapper.wrap_database_errors and ensure_connection, connection.ops.bulk_batch_size
    and quote_name, Model._meta.concrete_fields.

prometheus_text: the agents' series of /metrics in the Prometheus text format (read from the
    database by metrics.collectors), each series' label text rendered once per process.
    Stands in for prometheus_client's exposition (generate_latest), whose per-sample escaping and
    validation were two thirds of a scrape. Bench: bench/metrics.py, part 2 (GET /metrics, 10,000
    agents, 1,000,000 points, 11,045 samples): 129 -> 71 ms in-process; over HTTP best 53 ms,
    median 62 ms (SQLite), 66 and 76 ms (PostgreSQL) (target < 200 ms).
    Uses: prometheus_client.utils.floatToGoString.
"""
