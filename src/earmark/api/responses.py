"""Fast success responses and the documentation of error responses.

Routes declare their ``response_model`` for ``/openapi.json`` but return a ``Response``
whose body pydantic-core serialized in one call (``model_dump_json``): FastAPI then skips
re-validating the model it was handed, which is measurable at thousands of requests/s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.responses import Response
from starlette.routing import BaseRoute

from earmark.api.deps import BEARER_SCHEME
from earmark.api.problems import PROBLEM_MEDIA_TYPE
from earmark.api.schemas import Problem

JSON = "application/json"

DESCRIPTIONS = {
    400: "Malformed JSON or a missing Idempotency-Key (problem+json)",
    401: "No valid API key (problem+json, code `unauthorized`)",
    403: "The API key lacks the scope (problem+json, code `forbidden`)",
    404: "Not found (problem+json)",
    409: "Refused by the current state (problem+json)",
    410: "The reservation's hold is gone (problem+json)",
    422: "Invalid request or idempotency conflict (problem+json)",
    503: "The store is not ready or unreachable (problem+json)",
}


def model_response(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(model.model_dump_json(), status, headers=headers, media_type=JSON)


def problem_responses(
    *statuses: int, models: Mapping[int, type[Problem]] | None = None, auth: bool = True
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the problem statuses a route can return (see ``openapi``)."""
    wanted = {422, 503, *statuses} | ({401, 403} if auth else set())
    chosen = models or {}
    return {
        status: {"model": chosen.get(status, Problem), "description": DESCRIPTIONS[status]}
        for status in sorted(wanted)
    }


def openapi(title: str, version: str, description: str, routes: list[BaseRoute]) -> dict[str, Any]:
    """FastAPI's schema, with every error response as ``application/problem+json``,
    FastAPI's default validation error body replaced by ``Problem`` (what we send), and
    the bearer scheme on every operation that can answer 401."""
    schema = get_openapi(title=title, version=version, description=description, routes=routes)
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                if not status.isdigit() or int(status) < 400:
                    continue
                content = response.pop("content", {})
                body = content.get(JSON, {}).get("schema", problem_ref)
                if "HTTPValidationError" in str(body.get("$ref", "")):
                    body = problem_ref
                    response["description"] = DESCRIPTIONS[422]
                response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": body}}
            if "401" in operation.get("responses", {}):
                operation["security"] = [{BEARER_SCHEME: []}]
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
