"""The hot routes, served in one pass: ``POST /v1/reservations`` and the transitions of a
reservation (``POST /v1/reservations/{id}/commit``, ``release``, ``extend``, ``ship``).

Every checkout's hold and its commit or release go through these routes, so they skip
what FastAPI does per request that they do not need: matching the path against every
route, solving the dependency graph, validating the body a second time on the way into
the handler. Here, after
``RequestGuard`` authenticated the caller and read the body:

* a body is parsed and validated in one pass by the route's own model
  (``ReservationIn`` / ``ExtendIn``, ``model_validate_json``, pydantic-core), the
  Idempotency-Key header by the same rule as the route's (commit, release and ship take
  no body: as on the route, one sent is not read);
* the caller's scope is checked and the route's own handler body answers (``hold`` and
  ``act`` of earmark.api.routes.reservations), the reply bytes built once from the model
  the engine returned.

Anything this pass would not answer exactly as the route does (a body or header that
fails validation, another content type) is handed to FastAPI unchanged, so every bad
input gets the route's own problem+json. The routes stay registered: ``/openapi.json``
documents them, with their schemas and every problem response, from the same models.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import redis.exceptions
from pydantic import ValidationError
from starlette.types import Scope, Send

from earmark import limits
from earmark.api.auth import require_scope
from earmark.api.deps import Context
from earmark.api.guard import PRINCIPAL
from earmark.api.problems import error_response, problem
from earmark.api.routes.reservations import (
    STOCK_SCOPE,
    ExtendIn,
    ReservationIn,
    act,
    hold,
    router,
)
from earmark.api.schemas import PRINTABLE_PATTERN
from earmark.engine.refusals import store_error
from earmark.errors import EarmarkError, InternalError

log = logging.getLogger("earmark.api")

PATH = router.prefix
RESERVE = "reserve"
# The transitions served here, by the last part of their path, and the scope each needs.
TRANSITIONS = {"commit": RESERVE, "release": RESERVE, "extend": RESERVE, "ship": STOCK_SCOPE}
TRANSITION_PATH = re.compile("^" + re.escape(PATH) + "/([^/]+)/(" + "|".join(TRANSITIONS) + ")$")
# The route of each operation, by its path template (the latency metrics' label).
TEMPLATES = {RESERVE: PATH} | {op: f"{PATH}/{{reservation_id}}/{op}" for op in TRANSITIONS}
_KEY = re.compile(PRINTABLE_PATTERN)
_JSON = re.compile(rb"^application/json\s*(;.*)?$", re.IGNORECASE)


def idempotency_key(scope: Scope) -> str | None:
    """The Idempotency-Key header when the route would accept it, else None."""
    found = [v for n, v in scope["headers"] if n == b"idempotency-key"]
    if len(found) != 1:
        return None
    key: str = found[0].decode("latin-1")
    if not 1 <= len(key) <= limits.IDEMPOTENCY_KEY_LENGTH_MAX or not _KEY.match(key):
        return None
    return key


def is_json(scope: Scope) -> bool:
    found = [v for n, v in scope["headers"] if n == b"content-type"]
    return len(found) == 1 and _JSON.match(found[0]) is not None


class HotRoutes:
    """See the module docstring. ``routes``: the registered APIRoute of each operation
    (``TEMPLATES``); its template goes to the latency metrics as for a routed request."""

    def __init__(self, state: Any, routes: dict[str, Any]) -> None:
        self.state = state
        self.routes = routes

    def takes(self, scope: Scope) -> bool:
        if scope["method"] != "POST":
            return False
        path = scope["path"]
        return bool(path == PATH or TRANSITION_PATH.match(path))

    async def serve(self, scope: Scope, body: bytes, send: Send) -> bool:
        """Answers the request and returns True, or returns False having sent nothing
        (FastAPI then answers it)."""
        key = idempotency_key(scope)
        if key is None:
            return False
        path: str = scope["path"]
        found = TRANSITION_PATH.match(path)
        operation = found.group(2) if found else RESERVE
        ttl_seconds = None
        cart = None
        try:
            if operation == RESERVE:
                if not is_json(scope):
                    return False
                cart = ReservationIn.model_validate_json(body)
            elif operation == "extend":
                if not is_json(scope):
                    return False
                ttl_seconds = ExtendIn.model_validate_json(body).ttl_seconds
        except ValidationError:
            return False
        scope["route"] = self.routes[operation]
        try:
            ctx = self.context(scope, operation)
            if cart is not None:
                response = await hold(ctx, cart, key)
            else:
                assert found is not None
                response = await act(ctx, operation, found.group(1), key, ttl_seconds)
        except EarmarkError as error:
            response = error_response(error, path)
        except redis.exceptions.RedisError as error:
            mapped = store_error(error)
            if mapped is None:
                log.exception("POST %s failed", path, exc_info=error)
                detail = "an unexpected error occurred"
                response = problem(InternalError.code, detail, instance=path)
            else:
                log.warning("POST %s: %s", path, mapped)
                response = error_response(mapped, path)
        await response(scope, _no_body, send)
        return True

    def context(self, scope: Scope, operation: str) -> Context:
        caller = require_scope(scope[PRINCIPAL], TRANSITIONS.get(operation, RESERVE))
        return Context(self.state.engine, self.state.metrics, caller)


async def _no_body() -> dict[str, Any]:  # pragma: no cover - a response never reads
    return {"type": "http.disconnect"}
