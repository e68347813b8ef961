"""One ASGI middleware for what every request gets: an ``X-Request-Id``, the API key check, the body size
limit, Prometheus metrics and one structured access-log line.

It is plain ASGI (not ``BaseHTTPMiddleware``) so streamed responses pass through untouched.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from typing import Any

from fastapi import HTTPException
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ragtune.server.schemas import error_body

access_log = logging.getLogger("ragtune.server.access")
OPEN_PATHS = frozenset({"/health", "/", "/favicon.ico", "/favicon.svg"})  # the page itself holds no data
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (several apps can live in one process)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("ragtune_requests_total", "HTTP requests by route, method and status", ["route", "method", "status"], registry=r)
        self.latency = Histogram("ragtune_request_seconds", "Time to the end of the response, by route", ["route"], registry=r,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.queue_depth = Gauge("ragtune_queue_depth", "Answer requests waiting or being decoded", registry=r)
        self.batch_size = Histogram("ragtune_batch_size", "Answer requests per micro-batch", registry=r,
                                    buckets=(1, 2, 4, 8, 16, 32, 64))
        self.generated_tokens = Counter("ragtune_generated_tokens_total", "Answer tokens generated", registry=r)
        self.prompt_tokens = Counter("ragtune_prompt_tokens_total", "Prompt tokens read by the generator", registry=r)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _route(scope: dict) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


async def _send_json(send: Any, status: int, message: str, request_id: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(error_body(status, message)).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"x-request-id", request_id.encode())]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


class ServerMiddleware:
    def __init__(self, app: Any, *, api_key: str | None, max_body_bytes: int, metrics: Metrics):
        self.app, self.api_key, self.max_body, self.metrics = app, api_key, max_body_bytes, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        start = time.perf_counter()
        status = [0]

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = list(message.get("headers", [])) + [(b"x-request-id", rid.encode())]
            await send(message)

        try:
            problem = self._refuse(scope["path"], headers)
            if problem is not None:
                code, msg, extra = problem
                status[0] = code
                await _send_json(send, code, msg, rid, extra)
                return
            await self.app(scope, self._limited(receive), send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = _route(scope)
            self.metrics.requests.labels(route, scope["method"], str(status[0] or 500)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            client = scope.get("client") or ("-", 0)
            access_log.info(json.dumps({"request_id": rid, "method": scope["method"], "path": scope["path"], "route": route,
                                        "status": status[0] or 500, "ms": round(seconds * 1000, 1), "client": client[0]}))

    def _refuse(self, path: str, headers: dict[str, str]) -> tuple[int, str, dict[str, str] | None] | None:
        if self.api_key and path not in OPEN_PATHS:
            auth = headers.get("authorization", "")
            token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(token.encode(), self.api_key.encode()):
                return 401, "missing or wrong API key: send Authorization: Bearer <key>", {"WWW-Authenticate": "Bearer"}
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return 400, "bad Content-Length", None
            if int(length) > self.max_body:
                return 413, f"request body over {self.max_body} bytes", None
        return None

    def _limited(self, receive: Any) -> Any:
        """``receive`` that stops a chunked body once it passes the limit."""
        seen = [0]

        async def wrapped() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > self.max_body:
                    raise HTTPException(413, f"request body over {self.max_body} bytes")
            return message

        return wrapped
