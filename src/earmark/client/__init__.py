"""A Python client for the earmark sidecar: the library's calls over HTTP.

    from earmark.client import Client
    with Client("http://127.0.0.1:8000", api_key=token) as earmark:
        held = earmark.reserve([("SNEAKER-42", 1)])
        earmark.commit(held.id)

``Client`` / ``AsyncClient`` answer with the models of ``earmark.models`` and raise the
exceptions of ``earmark.errors``, so code written against ``Engine`` / ``AsyncEngine``
keeps its error handling.
"""

from earmark.client.transport import NO_RETRY, AsyncClient, Client, Retry, error_of

__all__ = ["NO_RETRY", "AsyncClient", "Client", "Retry", "error_of"]
