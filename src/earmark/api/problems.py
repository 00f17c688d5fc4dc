"""Every error the service returns is ``application/problem+json`` (RFC 9457).

Members: ``type``, ``title``, ``status``, ``detail``, ``instance`` and a stable ``code``,
plus the error's own details (``lines`` of a refused reservation, ``status`` of a
reservation that cannot make a transition, ``field`` of an invalid input...). The body is
a pure function of the error, so a replayed request gets the same status and body.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import orjson
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from earmark.errors import EarmarkError

log = logging.getLogger("earmark.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "tag:earmark,2025:problem:"
IDEMPOTENCY_LOC = ["header", "idempotency-key"]


class Unauthorized(EarmarkError):
    """No bearer token, or one that matches no API key."""

    code = "unauthorized"


class Forbidden(EarmarkError):
    """The API key lacks the scope the operation needs."""

    code = "forbidden"


# code -> (HTTP status, title). A code missing here is a server error.
PROBLEMS: dict[str, tuple[int, str]] = {
    "invalid_request": (422, "The request is invalid"),
    "malformed_json": (400, "The request body is not valid JSON"),
    "idempotency_key_required": (400, "An Idempotency-Key header is required"),
    "unauthorized": (401, "Authentication required"),
    "forbidden": (403, "The API key lacks the scope for this operation"),
    "not_found": (404, "No such resource"),
    "method_not_allowed": (405, "Method not allowed"),
    "sku_not_found": (404, "No stock record for this SKU and location"),
    "reservation_not_found": (404, "No such reservation"),
    "insufficient_stock": (409, "Not enough stock available"),
    "would_oversell": (409, "The decrease would oversell"),
    "insufficient_on_hand": (409, "Not enough units on hand"),
    "insufficient_units": (409, "Not enough units in the bucket"),
    "stale_count": (409, "The count's stock version is too old or too new"),
    "transfer_not_found": (404, "No such transfer"),
    "transfer_already_received": (409, "The transfer was received with another quantity"),
    "return_exceeds_shipped": (409, "The return exceeds what the reservation shipped"),
    "purchase_order_not_found": (404, "No such purchase order"),
    "purchase_order_closed": (409, "The purchase order is closed or cancelled"),
    "invalid_transition": (409, "The reservation cannot make this transition"),
    "commit_in_progress": (409, "The reservation is being committed by another request"),
    "reservation_expired": (410, "The reservation has expired"),
    "reservation_released": (410, "The reservation was released"),
    "idempotency_conflict": (422, "The idempotency key was used for another request"),
    "not_ready": (503, "The service is not ready"),
    "store_not_ready": (503, "The store is not ready"),
    "store_unavailable": (503, "Redis is unreachable"),
    "ledger_unavailable": (503, "The durable record is unavailable"),
    "internal_error": (500, "Internal server error"),
}

# The member that carries an error's ``status`` detail (the record's state), by code.
STATUS_MEMBERS = {"purchase_order_closed": "purchase_order_status"}


def status_of(code: str) -> int:
    return PROBLEMS.get(code, (500, ""))[0]


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot serialize {type(value).__name__}")


def problem(
    code: str,
    detail: str,
    *,
    status: int | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response:
    """A problem+json response; ``extensions`` never overwrite the standard members."""
    status = status or status_of(code)
    title = PROBLEMS.get(code, (status, HTTPStatus(status).phrase))[1]
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance is not None:
        body["instance"] = instance
    for name, value in extensions.items():
        body.setdefault(name, value)
    content = orjson.dumps(body, default=_default, option=orjson.OPT_NON_STR_KEYS)
    return Response(content, status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def error_response(error: EarmarkError, instance: str | None = None) -> Response:
    """The one mapping from our exceptions to HTTP: status by ``code``, details as members."""
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthorized) else None
    details = dict(error.details)
    if "status" in details:  # the record's status; ``status`` is the HTTP status here
        member = STATUS_MEMBERS.get(error.code, "reservation_status")
        details[member] = details.pop("status")
    return problem(error.code, error.message, instance=instance, headers=headers, **details)


def _validation_problem(request: Request, exc: RequestValidationError) -> Response:
    errors = exc.errors()
    path = request.url.path
    if any(e.get("type") == "json_invalid" for e in errors):
        return problem("malformed_json", "the request body is not valid JSON", instance=path)
    for e in errors:
        loc = e.get("loc", ())
        if e.get("type") == "missing" and [str(x).lower() for x in loc] == IDEMPOTENCY_LOC:
            detail = "this request needs an Idempotency-Key header"
            return problem("idempotency_key_required", detail, instance=path)
    members = [
        {
            "loc": [str(part) for part in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]
    first = members[0] if members else {"loc": [], "msg": "invalid request"}
    detail = f"{'.'.join(first['loc'][1:]) or 'request'}: {first['msg']}"
    return problem("invalid_request", detail, instance=path, errors=members)


def _http_problem(request: Request, exc: StarletteHTTPException) -> Response:
    codes = {404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, f"http_{exc.status_code}")
    headers = dict(exc.headers or {})
    detail = f"{request.method} {request.url.path}: {HTTPStatus(exc.status_code).phrase.lower()}"
    if exc.status_code not in codes and isinstance(exc.detail, str):
        detail = exc.detail
    return problem(code, detail, status=exc.status_code, instance=request.url.path, headers=headers)


def install(app: FastAPI) -> None:
    """Registers the handlers: ours, FastAPI's validation, routing (404/405), and the rest."""

    async def on_earmark_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, EarmarkError):
            raise exc
        if status_of(exc.code) >= 500:
            log.warning("%s %s: %s (%s)", request.method, request.url.path, exc.code, exc)
        return error_response(exc, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, RequestValidationError):
            raise exc
        return _validation_problem(request, exc)

    async def on_http(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, StarletteHTTPException):
            raise exc
        return _http_problem(request, exc)

    async def on_redis(request: Request, exc: Exception) -> Response:
        log.error("%s %s: Redis unreachable: %s", request.method, request.url.path, exc)
        detail = "the store (Redis) did not answer; retry later"
        return problem("store_unavailable", detail, instance=request.url.path)

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
        return problem("internal_error", "an unexpected error occurred", instance=request.url.path)

    app.add_exception_handler(EarmarkError, on_earmark_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(redis.exceptions.ConnectionError, on_redis)
    app.add_exception_handler(redis.exceptions.TimeoutError, on_redis)
    app.add_exception_handler(Exception, on_crash)
