"""How the questions reach the server (as opposed to the records, which the sender delivers):
kept-alive HTTP/1.1 connections, one per thread, through the proxy the environment names."""

from __future__ import annotations

import http.client
import json
import logging
import select
import socket
import threading
import urllib.parse
import urllib.request
from base64 import b64encode
from typing import Any

import httpx

from telemetry_client.common import to_json

logger = logging.getLogger("telemetry_client")


class Connections:
    """Keep-alive HTTP/1.1 connections to the server at `api_url`, one per thread, on the standard
    library's http.client. Not httpx, which the background sender uses: a question here is one
    small request the agent waits on (a signal wait's wake-up), and httpx spent ~0.8 ms of CPU on
    each, against ~0.2 ms here."""

    def __init__(self, api_url: str, headers: dict[str, str]):
        self.api_url, self.headers = api_url, headers
        self.local = threading.local()
        self.route: Route | None = None  # on first use: a bad URL fails calls, not the constructor

    def ask(self, method: str, path: str, timeout: float, body: Any = None, params: dict | None = None) -> Any:
        """The JSON answer to `body` (sent as JSON), or None when the server could not be reached or
        refused (logged)."""
        target = urllib.parse.quote(path, safe=PATH_SAFE) + query_string(params)
        try:
            sent = None if body is None else to_json(body)
            status, content = self.request(method, target, sent, timeout)
            if not 200 <= status < 300:
                logger.warning("telemetry: %s %s failed: %s", method, target, _reason(status, content))
                return None
            return json.loads(content)
        except Exception as exc:  # noqa: BLE001 - the SDK never raises into the agent
            logger.warning("telemetry: %s %s failed: %s", method, target, str(exc) or type(exc).__name__)
            return None

    def request(self, method: str, target: str, body: bytes | None, timeout: float) -> tuple[int, bytes]:
        """The status and body of the answer to `method target`; raises OSError, HTTPException or
        ValueError (a bad URL)."""
        route = self.route = self.route or Route(self.api_url, self.headers)
        kept = getattr(self.local, "kept", None)
        if kept is None:
            kept = self.local.kept = Kept(route.connection())
        connection = kept.connection
        connection.timeout = timeout  # for a new connection's connect
        if connection.sock is not None:
            if _readable(connection.sock):  # the server closed it while it was idle
                connection.close()
            else:
                connection.sock.settimeout(timeout)
        headers = route.headers if body is None else route.json_headers
        try:
            connection.request(method, route.prefix + target, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        except BaseException:
            connection.close()  # a late answer must not be read as the next request's
            raise


class Kept:
    """A thread's connection, closed when the thread ends or the Connections go (their thread's
    value of `local` goes with them)."""

    def __init__(self, connection: http.client.HTTPConnection):
        self.connection = connection

    def __del__(self):
        self.connection.close()


class Route:
    """How requests reach the server at `api_url`: directly, or through the proxy the environment
    names (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY, as httpx reads them; an http:// proxy).
    Certificates are checked as httpx checks them (certifi's, or SSL_CERT_FILE's)."""

    def __init__(self, api_url: str, headers: dict[str, str]):
        url = urllib.parse.urlsplit(api_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"TELEMETRY_API_URL {api_url!r} is not the http(s) URL of a server")
        self.scheme, self.host, self.port, self.prefix = url.scheme, url.hostname, url.port, url.path
        self.tunnel = None
        headers = {**headers, "Accept": "application/json"}
        proxies = urllib.request.getproxies_environment()
        bypass = urllib.request.proxy_bypass_environment(url.hostname, proxies)
        proxy = None if bypass else proxies.get(url.scheme) or proxies.get("all")
        if proxy:
            proxy_url = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            if proxy_url.scheme != "http" or not proxy_url.hostname:  # (not shown: it may hold a password)
                raise ValueError(f"the {url.scheme} proxy set in the environment is not an http://host:port URL")
            proxy_headers = {}
            if proxy_url.username:
                login = f"{urllib.parse.unquote(proxy_url.username)}:{urllib.parse.unquote(proxy_url.password or '')}"
                proxy_headers["Proxy-Authorization"] = f"Basic {b64encode(login.encode()).decode()}"
            self.host, self.port = proxy_url.hostname, proxy_url.port
            if url.scheme == "https":  # a tunnel through the proxy (CONNECT): TLS end to end
                self.tunnel = (url.hostname, url.port, proxy_headers)
            else:  # the proxy forwards plain requests, named by absolute URL
                self.scheme, self.prefix = "http", f"{url.scheme}://{url.netloc.rpartition('@')[2]}{url.path}"
                headers.update(proxy_headers)
        self.headers, self.json_headers = headers, {**headers, "Content-Type": "application/json"}
        self.tls = httpx.create_ssl_context() if self.scheme == "https" else None

    def connection(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            connection = http.client.HTTPSConnection(self.host, self.port, context=self.tls)
        else:
            connection = http.client.HTTPConnection(self.host, self.port)
        if self.tunnel:
            connection.set_tunnel(*self.tunnel)
        return connection


PATH_SAFE = "/:@!$&'()*+,;=~"  # what a URL path may hold unencoded (RFC 3986), as httpx encodes paths


def _readable(sock: socket.socket) -> bool:
    """Whether an idle connection has something to read: its end of file, most likely."""
    if hasattr(select, "poll"):  # select() fails on descriptors above 1023
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])


def query_string(params: dict | None) -> str:
    """`?name=value&...` for the parameters that are not None (booleans as true/false)."""
    pairs = {
        name: str(value).lower() if isinstance(value, bool) else value
        for name, value in (params or {}).items()
        if value is not None
    }
    return f"?{urllib.parse.urlencode(pairs)}" if pairs else ""


def _reason(status: int, content: bytes) -> str:
    """The status, with the server's own error message when it sent one."""
    try:
        return f"{status} {json.loads(content)['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return str(status)
