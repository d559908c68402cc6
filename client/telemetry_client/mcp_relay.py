"""`telemetry-mcp`: the server's MCP tools for MCP clients that only launch local servers.

It serves MCP on its stdin and stdout, and relays each request to the server's `/mcp` endpoint
(`TELEMETRY_API_URL`, with the agent key in `TELEMETRY_API_KEY`): the list of tools as the server
gives it, and each tool call with its result and its progress notifications. Both ends are the
`mcp` SDK's; install it with the extra: `pip install 'telemetry-client[mcp]'`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp_types import CallToolRequestParams, CallToolResult, ListToolsResult, PaginatedRequestParams

from telemetry_client.config import TelemetryConfig

# A tool call may wait for a person for as long as its request lives: no read timeout of our own.
HTTP_TIMEOUT = httpx2.Timeout(30.0, read=None)


def relay(url: str, api_key: str) -> Server[Client]:
    """A stdio MCP server whose tools are those of the MCP server at `url`."""

    @contextlib.asynccontextmanager
    async def connected(_: Server[Client]) -> AsyncIterator[Client]:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {api_key}"}, timeout=HTTP_TIMEOUT)
        async with http, Client(streamable_http_client(url, http_client=http)) as remote:
            yield remote

    async def list_tools(ctx: ServerRequestContext[Client], params: PaginatedRequestParams | None) -> ListToolsResult:
        return await ctx.lifespan_context.list_tools(cursor=params.cursor if params else None)

    async def call_tool(ctx: ServerRequestContext[Client], params: CallToolRequestParams) -> CallToolResult:
        async def progress(progress: float, total: float | None, message: str | None) -> None:  # mcp's ProgressFnT
            await ctx.session.report_progress(progress, total, message)

        return await ctx.lifespan_context.call_tool(params.name, params.arguments or {}, progress_callback=progress)

    return Server("telemetry", lifespan=connected, on_list_tools=list_tools, on_call_tool=call_tool)


def main() -> None:
    config = TelemetryConfig.from_env()
    if not config.api_url or not config.api_key:
        sys.exit("telemetry-mcp: set TELEMETRY_API_URL (the server's address) and TELEMETRY_API_KEY (an agent key).")
    server = relay(f"{config.api_url.rstrip('/')}/mcp", config.api_key)

    async def serve() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(serve)


if __name__ == "__main__":
    main()
