"""Hand-written stand-ins for library code, each kept because a bench measured the library's way
as too slow: what each stands in for, and the bench and figures that justify it (from the README
and the commit log).

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
"""
