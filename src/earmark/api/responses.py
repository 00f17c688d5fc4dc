"""Fast success responses and the documentation of error responses.

Routes declare their ``response_model`` for ``/openapi.json`` but return a ``Response``
whose body pydantic-core serialized in one call (``model_dump_json``): FastAPI then skips
re-validating the model it was handed, which is measurable at thousands of requests/s.

Each route names the errors it can answer with (``problem_responses(InsufficientStock,
...)``); their HTTP statuses, titles and codes come from the error classes, the one
table of ``earmark.errors``, so the document cannot disagree with what is sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.responses import Response
from starlette.routing import BaseRoute

from earmark.api.deps import BEARER_SCHEME
from earmark.api.problems import PROBLEM_MEDIA_TYPE
from earmark.api.schemas import (
    InsufficientStockProblem,
    Problem,
    PurchaseOrderClosedProblem,
    TransitionProblem,
)
from earmark.errors import (
    BodyTooLarge,
    EarmarkError,
    Forbidden,
    HeadersTooLarge,
    IdempotencyConflict,
    IdempotencyKeyRequired,
    InsufficientStock,
    InvalidRequest,
    MalformedJson,
    Overloaded,
    PurchaseOrderClosed,
    RequestTimeout,
    ReservationNotHeld,
    StoreNotReady,
    StoreUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)

JSON = "application/json"

# Any request can be refused for its size or its slowness (earmark.api.guard, .protocol);
# every route can answer these too; writes also these; authenticated routes also these.
TRANSPORT: tuple[type[EarmarkError], ...] = (BodyTooLarge, HeadersTooLarge, RequestTimeout)
ANY_ROUTE: tuple[type[EarmarkError], ...] = (
    *TRANSPORT,
    InvalidRequest,
    StoreNotReady,
    StoreUnavailable,
)
WRITES: tuple[type[EarmarkError], ...] = (
    MalformedJson,
    UnsupportedMediaType,
    IdempotencyConflict,
    IdempotencyKeyRequired,
)
AUTHENTICATED: tuple[type[EarmarkError], ...] = (Unauthorized, Forbidden, Overloaded)

# The problem body of an error with members of its own (by class, subclasses included).
PROBLEM_MODELS: dict[type[EarmarkError], type[Problem]] = {
    InsufficientStock: InsufficientStockProblem,
    ReservationNotHeld: TransitionProblem,
    PurchaseOrderClosed: PurchaseOrderClosedProblem,
}


# Sent with a response that replays a stored success (the same Idempotency-Key and body as
# an earlier request): the body and status are the original's, nothing was executed again.
REPLAYED_HEADER = "Idempotent-Replayed"
REPLAYED_DOC = {
    "description": "`true` when this is the stored response of an earlier request with the "
    "same Idempotency-Key and body (nothing was executed again); absent otherwise",
    "schema": {"type": "string", "enum": ["true"]},
}


def model_response(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """``model`` as JSON; a result the engine replayed (``Frozen.replayed``) says so."""
    if getattr(model, "replayed", False):
        headers = {**(headers or {}), REPLAYED_HEADER: "true"}
    return Response(model.model_dump_json(), status, headers=headers, media_type=JSON)


def problem_model(error: type[EarmarkError]) -> type[Problem]:
    for klass in error.__mro__:
        if klass in PROBLEM_MODELS:
            return PROBLEM_MODELS[klass]
    return Problem


def problem_responses(
    *errors: type[EarmarkError] | Iterable[type[EarmarkError]],
    auth: bool = True,
    base: tuple[type[EarmarkError], ...] = ANY_ROUTE,
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the errors a route can answer with (groups such as
    ``WRITES`` may be passed whole), grouped by HTTP status; each status documents its
    codes and, when they share one, their problem body. ``base``: what every such route
    answers (``TRANSPORT`` alone for the liveness and metrics routes)."""
    wanted: list[type[EarmarkError]] = [*base, *(AUTHENTICATED if auth else ())]
    for item in errors:
        wanted.extend([item] if isinstance(item, type) else item)
    by_status: dict[int, list[type[EarmarkError]]] = {}
    for error in dict.fromkeys(wanted):
        by_status.setdefault(error.http_status, []).append(error)
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted(by_status):
        group = by_status[status]
        models = {problem_model(error) for error in group}
        codes = "; ".join(f"`{error.code}`: {error.title}" for error in group)
        responses[status] = {
            "model": models.pop() if len(models) == 1 else Problem,
            "description": f"problem+json. {codes}",
        }
    return responses


def openapi(title: str, version: str, description: str, routes: list[BaseRoute]) -> dict[str, Any]:
    """FastAPI's schema, with every error response as ``application/problem+json``,
    FastAPI's default validation error body replaced by ``Problem`` (what we send), and
    the bearer scheme on every operation that can answer 401."""
    schema = get_openapi(title=title, version=version, description=description, routes=routes)
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    invalid = problem_responses(auth=False)[InvalidRequest.http_status]["description"]
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                if not status.isdigit() or int(status) < 400:
                    continue
                content = response.pop("content", {})
                body = content.get(JSON, {}).get("schema", problem_ref)
                if "HTTPValidationError" in str(body.get("$ref", "")):
                    body = problem_ref
                    response["description"] = invalid
                response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": body}}
            if "401" in operation.get("responses", {}):
                operation["security"] = [{BEARER_SCHEME: []}]
            if "Idempotency-Key" in str(operation.get("parameters", [])):
                for status, response in operation.get("responses", {}).items():
                    if status.startswith("2"):
                        response.setdefault("headers", {})[REPLAYED_HEADER] = REPLAYED_DOC
    components = schema.setdefault("components", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(unused, None)
    components["securitySchemes"] = {
        BEARER_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "an API key from `earmark keys create`",
        }
    }
    return schema
