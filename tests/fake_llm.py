"""A fake of the OpenAI and Anthropic APIs on 127.0.0.1 in their wire formats, for their real client
libraries: JSON answers, or server-sent events when the request asks for a stream. A request for
the model MISSING is answered 404 in the provider's error format, and a chat completion of the
model UNCOUNTED has usage without counts (as a proxy might answer); a streamed one of BROKEN
breaks off with an error event after its first chunk."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MISSING = "no-such-model"
UNCOUNTED = "gpt-uncounted"
BROKEN = "gpt-broken"
SNAPSHOT = "gpt-4o-mini-2024-07-18"  # what OpenAI answers for "gpt-4o-mini"
USAGE = {"prompt_tokens": 1200, "completion_tokens": 80, "total_tokens": 1280, "prompt_tokens_details": {"cached_tokens": 1024}}
RESPONSES_USAGE = {
    "input_tokens": 1200,
    "input_tokens_details": {"cached_tokens": 1024},
    "output_tokens": 80,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 1280,
}
CLAUDE = "claude-sonnet-4-20250514"  # what Anthropic answers for "claude-sonnet-4-0"
CLAUDE_USAGE = {"input_tokens": 200, "output_tokens": 80, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 500}


def sse(events: list[dict[str, Any]], named: bool = False, done: bool = False) -> bytes:
    """Server-sent events: each `data:` a JSON event (with `event:` its type when `named`)."""
    lines = [(f"event: {event['type']}\n" if named else "") + f"data: {json.dumps(event)}\n\n" for event in events]
    return "".join(lines).encode() + (b"data: [DONE]\n\n" if done else b"")


def chat_completion(request: dict[str, Any]) -> tuple[bytes, str]:
    base = {"id": "chatcmpl-42", "created": 1765000000, "model": SNAPSHOT, "system_fingerprint": "fp_42"}
    if not request.get("stream"):
        choice = {"index": 0, "message": {"role": "assistant", "content": "Hello."}, "finish_reason": "stop"}
        usage = dict.fromkeys(USAGE) if request["model"] == UNCOUNTED else USAGE
        return json.dumps({**base, "object": "chat.completion", "choices": [choice], "usage": usage}).encode(), "application/json"
    chunk = {**base, "object": "chat.completion.chunk"}
    events = [
        {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": None}]},
        {**chunk, "choices": [{"index": 0, "delta": {"content": "lo."}, "finish_reason": "stop"}]},
    ]
    if request["model"] == BROKEN:
        events[1:] = [{"error": {"message": "The server is overloaded", "type": "server_error"}}]
    elif request.get("stream_options", {}).get("include_usage"):
        events.append({**chunk, "choices": [], "usage": USAGE})
    return sse(events, done=True), "text/event-stream"


def response(request: dict[str, Any]) -> tuple[bytes, str]:
    """The Responses API: a response, or its events from response.created to response.completed."""
    text = {"type": "output_text", "text": "Hello.", "annotations": []}
    message = {"type": "message", "id": "msg_42", "status": "completed", "role": "assistant", "content": [text]}
    done = {"id": "resp_42", "object": "response", "created_at": 1765000000, "model": SNAPSHOT, "status": "completed",
            "output": [message], "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": RESPONSES_USAGE}  # fmt: skip
    if not request.get("stream"):
        return json.dumps(done).encode(), "application/json"
    started = {**done, "status": "in_progress", "output": [], "usage": None}
    delta = {"item_id": "msg_42", "output_index": 0, "content_index": 0, "logprobs": []}
    events = [
        {"type": "response.created", "response": started},
        {"type": "response.output_text.delta", **delta, "delta": "Hel"},
        {"type": "response.output_text.delta", **delta, "delta": "lo."},
        {"type": "response.completed", "response": done},
    ]
    return sse([{**event, "sequence_number": number} for number, event in enumerate(events)], named=True), "text/event-stream"


def message(request: dict[str, Any]) -> tuple[bytes, str]:
    """Anthropic's Messages API: a message, or its events from message_start to message_stop."""
    text = {"type": "text", "text": "Hello."}
    done = {"id": "msg_42", "type": "message", "role": "assistant", "model": CLAUDE, "content": [text],
            "stop_reason": "end_turn", "stop_sequence": None, "usage": CLAUDE_USAGE}  # fmt: skip
    if not request.get("stream"):
        return json.dumps(done).encode(), "application/json"
    started = {**done, "content": [], "stop_reason": None, "usage": {**CLAUDE_USAGE, "output_tokens": 1}}
    delta = {"type": "content_block_delta", "index": 0}
    events = [
        {"type": "message_start", "message": started},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {**delta, "delta": {"type": "text_delta", "text": "Hel"}},
        {**delta, "delta": {"type": "text_delta", "text": "lo."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 80}},
        {"type": "message_stop"},
    ]
    return sse(events, named=True), "text/event-stream"


ROUTES = {"/v1/chat/completions": chat_completion, "/v1/responses": response, "/v1/messages": message}


def not_found(path: str) -> bytes:
    text = f"The model `{MISSING}` does not exist"
    if path == "/v1/messages":
        return json.dumps({"type": "error", "error": {"type": "not_found_error", "message": text}}).encode()
    error = {"message": text, "type": "invalid_request_error", "param": None, "code": "model_not_found"}
    return json.dumps({"error": error}).encode()


class FakeLLM(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        assert self.path in ROUTES, self.path
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if request.get("model") == MISSING:
            status, (body, content_type) = 404, (not_found(self.path), "application/json")
        else:
            status, (body, content_type) = 200, ROUTES[self.path](request)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def fake_llm() -> Iterator[str]:
    """The fake on a free port: its base URL (OpenAI's clients take it with /v1)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLLM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
