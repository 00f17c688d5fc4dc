"""The hot route, served in one pass: ``POST /v1/reservations`` with a well-formed body.

Every checkout's hold goes through this route, so it skips what FastAPI does per request
that this route does not need: matching the path against every route, solving the
dependency graph, validating the body a second time on the way into the handler. Here,
after ``RequestGuard`` authenticated the caller and read the body:

* the body is parsed and validated in one pass by the route's own model
  (``ReservationIn.model_validate_json``, pydantic-core), the Idempotency-Key header by
  the same rule as the route's;
* the caller's scope is checked, the engine reserves, and the reply bytes are built once
  from the model the engine returned.

Anything this pass would not answer exactly as the route does (a body or header that
fails validation, another content type) is handed to FastAPI unchanged, so every bad
input gets the route's own problem+json. The route stays registered: ``/openapi.json``
documents it, with its schema and every problem response, from the same model.
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
from earmark.api.guard import PRINCIPAL
from earmark.api.problems import error_response, problem
from earmark.api.responses import model_response
from earmark.api.routes.reservations import ReservationIn, router
from earmark.api.schemas import PRINTABLE_PATTERN
from earmark.engine.refusals import store_error
from earmark.errors import EarmarkError, InternalError

log = logging.getLogger("earmark.api")

PATH = router.prefix
SCOPE = "reserve"
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


class HotReserve:
    """See the module docstring. ``route`` is the registered APIRoute (its template goes
    to the latency metrics as for any routed request)."""

    def __init__(self, state: Any, route: Any) -> None:
        self.state = state
        self.route = route

    def takes(self, scope: Scope) -> bool:
        return bool(scope["method"] == "POST" and scope["path"] == PATH)

    async def serve(self, scope: Scope, body: bytes, send: Send) -> bool:
        """Answers the request and returns True, or returns False having sent nothing
        (FastAPI then answers it)."""
        key = idempotency_key(scope)
        if key is None or not is_json(scope):
            return False
        try:
            cart = ReservationIn.model_validate_json(body)
        except ValidationError:
            return False
        scope["route"] = self.route
        try:
            response = await self.reserve(scope, cart, key)
        except EarmarkError as error:
            response = error_response(error, PATH)
        except redis.exceptions.RedisError as error:
            mapped = store_error(error)
            if mapped is None:
                log.exception("POST %s failed", PATH, exc_info=error)
                detail = "an unexpected error occurred"
                response = problem(InternalError.code, detail, instance=PATH)
            else:
                log.warning("POST %s: %s", PATH, mapped)
                response = error_response(mapped, PATH)
        await response(scope, _no_body, send)
        return True

    async def reserve(self, scope: Scope, cart: ReservationIn, key: str) -> Any:
        caller = require_scope(scope[PRINCIPAL], SCOPE)
        state = self.state
        with state.metrics.reservation("reserve"):
            held = await state.engine.reserve(
                [(line.sku, line.qty, line.location) for line in cart.lines],
                idempotency_key=key,
                ttl_seconds=cart.ttl_seconds,
                channel=cart.channel,
                actor=caller.name,
                customer=cart.customer,
            )
        return model_response(held, 201, {"Location": f"{PATH}/{held.id}"})


async def _no_body() -> dict[str, Any]:  # pragma: no cover - a response never reads
    return {"type": "http.disconnect"}
