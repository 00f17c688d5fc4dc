"""Where webhooks may go: http(s) URLs of public addresses only, unless allowed.

An endpoint URL is checked when it is set (create, PATCH) and its host is resolved again
before every attempt, so a name that later resolves to a private address (DNS
rebinding) is refused then too. By default private (RFC 1918, unique local), loopback,
link-local (cloud metadata at 169.254.169.254), shared (100.64/10), multicast, reserved
and unspecified addresses are refused: only addresses Python's ``ipaddress`` calls
global pass. ``EARMARK_WEBHOOKS_ALLOW_PRIVATE=true`` lifts that for tests and local
setups. A name that does not resolve at creation is accepted (its attempts fail and are
retried until it does).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from earmark.errors import InvalidWebhookUrl

URL_LENGTH_MAX = 2_048
SCHEMES = ("http", "https")
RESOLVE_TIMEOUT_SECONDS = 2.0
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
# What the API's schema accepts (host names and IPv4 literals; names may resolve to IPv6):
# a URL this matches passes ``parse_url``.
URL_PATTERN = rf"^https?://[A-Za-z0-9.-]+(:{_PORT})?([/?][!-\"$-~]*)?$"
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def parse_url(url: str) -> SplitResult:
    """The URL's parts; ``InvalidWebhookUrl`` unless it is an absolute http(s) URL with
    a host, no credentials and no fragment."""
    if not url or len(url) > URL_LENGTH_MAX or not url.isascii() or not url.isprintable():
        raise InvalidWebhookUrl(
            f"a webhook URL is printable ASCII, 1 to {URL_LENGTH_MAX} characters", field="url"
        )
    if " " in url:
        raise InvalidWebhookUrl("a webhook URL holds no spaces (encode them as %20)", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise InvalidWebhookUrl(f"not a URL: {error}", field="url") from None
    if parts.scheme not in SCHEMES:
        raise InvalidWebhookUrl("a webhook URL is http:// or https://", field="url")
    if not parts.hostname:
        raise InvalidWebhookUrl("a webhook URL names a host", field="url")
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhookUrl("a webhook URL carries no credentials", field="url")
    if parts.fragment:
        raise InvalidWebhookUrl("a webhook URL has no #fragment", field="url")
    if port == 0:
        raise InvalidWebhookUrl("port 0 is no destination", field="url")
    return parts


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to now (empty when it does not resolve)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_SECONDS
        )
    except (OSError, TimeoutError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


async def check_destination(url: str, *, allow_private: bool, require_resolved: bool) -> None:
    """``InvalidWebhookUrl`` when the URL is malformed or, unless ``allow_private``, any
    address its host has is not public. ``require_resolved``: a host that does not
    resolve is refused too (before an attempt; at creation it is accepted)."""
    parts = parse_url(url)
    if allow_private:
        return
    host = parts.hostname or ""
    if host.lower().rstrip(".") in LOCAL_NAMES or host.lower().endswith(".localhost"):
        raise InvalidWebhookUrl(f"{host} is a loopback name", field="url")
    literal = _literal(host)
    addresses = [literal] if literal else await resolve(host, parts.port or 443)
    if not addresses and require_resolved:
        raise InvalidWebhookUrl(f"{host} does not resolve", field="url")
    refused = [a for a in addresses if not is_public(a)]
    if refused:
        raise InvalidWebhookUrl(
            f"{host} is {', '.join(refused)}: private, loopback and link-local addresses are "
            "refused (EARMARK_WEBHOOKS_ALLOW_PRIVATE=true allows them)",
            field="url",
        )
