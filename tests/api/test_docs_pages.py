"""``/docs`` and ``/redoc`` load every asset from the sidecar itself: no CDN, no fonts
from elsewhere, so the pages work on a network without internet."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tests.support.api import Api

# Every URL an HTML page makes the browser fetch: src=, href=, and the spec url.
URL_ATTRIBUTE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
SPEC_URL = re.compile(r"""(?:url|spec-url)\s*[:=]\s*['"]([^'"]+)['"]""")


def fetched_urls(html: str) -> list[str]:
    return URL_ATTRIBUTE.findall(html) + SPEC_URL.findall(html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_page_names_only_same_origin_urls(api: Api, page: str) -> None:
    response = await api.anon.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = fetched_urls(response.text)
    assert "/openapi.json" in urls
    assert any(u.startswith("/static/") for u in urls), urls
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{page} fetches {url} from elsewhere"
    assert "//" not in "".join(u.removeprefix("/") for u in urls)
    assert "cdn" not in response.text.lower() and "googleapis" not in response.text


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_every_asset_the_page_names_is_served(api: Api, page: str) -> None:
    html = (await api.anon.get(page)).text
    assets = [u for u in fetched_urls(html) if u.startswith("/static/")]
    assert assets
    for url in assets:
        response = await api.anon.get(url)
        assert response.status_code == 200, url
        kind = {".js": "javascript", ".css": "text/css", ".png": "image/png"}[url[url.rfind(".") :]]
        assert kind in response.headers["content-type"], (url, response.headers)
        assert len(response.content) > 100, url


LICENCES = {
    "/static/swagger-ui/LICENSE": "Apache License",
    "/static/swagger-ui/NOTICE": "SmartBear Software",
    "/static/redoc/LICENSE": "The MIT License",
}


@pytest.mark.parametrize(("url", "text"), LICENCES.items())
async def test_the_licences_ship_with_the_assets(api: Api, url: str, text: str) -> None:
    response = await api.anon.get(url)
    assert response.status_code == 200, url
    assert text in response.text


async def test_a_missing_asset_is_404(api: Api) -> None:
    assert (await api.anon.get("/static/swagger-ui/nothing.js")).status_code == 404
