"""What every HTTP route shares (the composition root and the doors): JSON errors instead of tracebacks, bearer tokens, JSON bodies,
bodies read within a deadline, and a client that goes away mid-request logged quietly."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.app_keys import MAX_BODY, METRICS

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answered to the client as `{"error": {"code", "message"}}` with a 4xx status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status=status)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON error; a bad request never gets a 500 or a traceback."""
    metrics = request.app.get(METRICS)
    started = time.perf_counter()
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except ConnectionResetError:
        transport = request.transport
        if transport is not None and not transport.is_closing():  # another connection's reset
            log.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(500, "internal", "internal error; the request was not processed")
        # The client went away mid-request (aiohttp fails its body read): nothing to answer and
        # nothing wrong here. Raising it on would have aiohttp log a traceback at ERROR.
        log.info("client went away during %s %s", request.method, request.path)
        return error_response(400, "client_gone", "the connection was closed by the client")
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith(_API_PATHS):
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; the request was not processed")
    finally:
        if metrics is not None:
            route = request.match_info.route.resource
            name = route.canonical if route is not None else "unmatched"
            metrics.observe_request(name, time.perf_counter() - started)


_API_PATHS = ("/api/", "/healthz", "/metrics", "/channels/")


STREAMS_BODY = "streams_body"


def streams_body(handler: Handler) -> Handler:
    """Mark a handler that reads its request body as a stream, with a bound and a deadline of
    its own (a partner's file of tens of megabytes): `body_deadline` leaves its body alone, so
    `http.max_body_bytes` does not apply to it."""
    setattr(handler, STREAMS_BODY, True)
    return handler


def body_deadline(seconds: float) -> Middleware:
    """Read each request's body (but multipart, and those of handlers marked `streams_body`,
    read as streams) within `seconds`, or answer 408 and close the connection: a client
    dripping its body holds nothing for long. Handlers then get the body already read
    (`request.read()`, `post()` and `json()` keep it)."""

    @web.middleware
    async def read_body_in_time(request: web.Request, handler: Handler) -> web.StreamResponse:
        streamed = request.content_type.startswith("multipart/") or getattr(
            request.match_info.handler, STREAMS_BODY, False
        )
        if request.body_exists and not streamed:
            try:
                if request.content.is_eof():
                    # The whole body came with the headers (most API calls): nothing to wait
                    # for, so no timer is armed; arming one cost ~8 % of a single-reading push.
                    await request.read()
                else:
                    async with asyncio.timeout(seconds):
                        await request.read()
            except TimeoutError:
                log.info("body of %s %s not received within %g s", request.method, request.path, seconds)
                response = error_response(
                    408, "body_timeout", f"the body did not arrive within {seconds:g} s"
                )
                response.force_close()
                return response
            except web.HTTPRequestEntityTooLarge:
                if not request.path.startswith(_API_PATHS):
                    raise
                raise ApiError(
                    413, "body_too_large", f"the body exceeds {request.app[MAX_BODY]} bytes"
                ) from None
        return await handler(request)

    return read_body_in_time


def require_bearer(request: web.Request, tokens: list[str], who: str) -> str:
    """Check `Authorization: Bearer <token>` against the configured tokens; returns the token."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", f"{who} calls need 'Authorization: Bearer <token>'")
    for known in tokens:
        if hmac.compare_digest(known.encode(), token.strip().encode()):
            return known
    raise ApiError(403, "forbidden", f"this token is not a {who} token")


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or a clear 4xx saying what is wrong with it."""
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "body_too_large", f"the body exceeds {request.app[MAX_BODY]} bytes") from None
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
