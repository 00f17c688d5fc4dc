"""Every error the service returns is ``application/problem+json`` (RFC 9457).

Members: ``type``, ``title``, ``status``, ``detail``, ``instance`` and a stable ``code``,
plus the error's own details (``lines`` of a refused reservation, ``status`` of a
reservation that cannot make a transition, ``field`` of an invalid input...). The body is
a pure function of the error, so a replayed request gets the same status and body.
"""

from __future__ import annotations

import logging
import typing
from http import HTTPStatus
from typing import Any

import orjson
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from earmark.engine.refusals import store_error
from earmark.errors import (
    ERRORS,
    EarmarkError,
    IdempotencyKeyRequired,
    InternalError,
    InvalidRequest,
    MalformedJson,
    MethodNotAllowed,
    RouteNotFound,
    Unauthorized,
    UnsupportedMediaType,
)

log = logging.getLogger("earmark.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "tag:earmark,2025:problem:"
IDEMPOTENCY_LOC = ["header", "idempotency-key"]


# The member that carries an error's ``status`` detail (the record's state), by code.
STATUS_MEMBERS = {"purchase_order_closed": "purchase_order_status"}


def status_of(code: str) -> int:
    error = ERRORS.get(code)
    return 500 if error is None else error.http_status


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
    error = ERRORS.get(code)
    title = HTTPStatus(status).phrase if error is None else error.title
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
    headers: dict[str, str] = {}
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if error.retry_after_seconds is not None:
        headers["Retry-After"] = str(error.retry_after_seconds)
    details = dict(error.details)
    if "status" in details:  # the record's status; ``status`` is the HTTP status here
        member = STATUS_MEMBERS.get(error.code, "reservation_status")
        details[member] = details.pop("status")
    return problem(error.code, error.message, instance=instance, headers=headers or None, **details)


# What pydantic says when the whole body is not an object (FastAPI hands it the raw bytes
# when the Content-Type is not JSON).
NOT_AN_OBJECT = frozenset({"model_attributes_type", "model_type", "dict_type"})


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def body_model(request: Request) -> type[BaseModel] | None:
    """The request body model of the route that answered, if it takes one."""
    field = getattr(request.scope.get("route"), "body_field", None)
    annotation = getattr(getattr(field, "field_info", None), "annotation", None)
    for candidate in typing.get_args(annotation) or (annotation,):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _missing_body(request: Request, path: str) -> Response:
    """No body where one is required: name the fields it needs."""
    model = body_model(request)
    fields = model.model_fields if model is not None else {}
    required = [name for name, info in fields.items() if info.is_required()]
    named = [f"{name} (required)" if name in required else name for name in fields]
    detail = "this request needs a JSON body (Content-Type: application/json)"
    if named:
        detail += " with " + ", ".join(named)
    return problem(InvalidRequest.code, detail, instance=path, required=required)


def _validation_problem(request: Request, exc: RequestValidationError) -> Response:
    errors = exc.errors()
    path = request.url.path
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = "the request body is not valid JSON"
        return problem(MalformedJson.code, detail, instance=path)
    content_type = request.headers.get("content-type", "")
    whole_body = [e for e in errors if tuple(e.get("loc", ())) == ("body",)]
    # A union body (replay: after_seq | since) reports one "not an object" per member, at
    # ("body", member); a plain model reports it at ("body",).
    not_objects = [
        e for e in errors if e.get("type") in NOT_AN_OBJECT and len(e.get("loc", ())) <= 2
    ]
    not_json = bool(content_type) and not _is_json(content_type)
    if not_json and any(tuple(e.get("loc", ()))[:1] == ("body",) for e in not_objects):
        detail = (
            f"the body was sent as {content_type}; send it as JSON with "
            "'Content-Type: application/json'"
        )
        return problem(UnsupportedMediaType.code, detail, instance=path)
    for e in errors:
        loc = e.get("loc", ())
        if e.get("type") == "missing" and [str(x).lower() for x in loc] == IDEMPOTENCY_LOC:
            detail = "this request needs an Idempotency-Key header"
            return problem(IdempotencyKeyRequired.code, detail, instance=path)
    if any(e.get("type") == "missing" for e in whole_body):
        return _missing_body(request, path)
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
    return problem(InvalidRequest.code, detail, instance=path, errors=members)


def _http_problem(request: Request, exc: StarletteHTTPException) -> Response:
    codes = {404: RouteNotFound.code, 405: MethodNotAllowed.code}
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
        """A Redis failure outside an engine operation (which maps its own)."""
        mapped = store_error(exc)
        if mapped is None:
            return await on_crash(request, exc)
        log.warning("%s %s: %s", request.method, request.url.path, mapped)
        return error_response(mapped, request.url.path)

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
        detail = "an unexpected error occurred"
        return problem(InternalError.code, detail, instance=request.url.path)

    app.add_exception_handler(EarmarkError, on_earmark_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(redis.exceptions.RedisError, on_redis)
    app.add_exception_handler(Exception, on_crash)
