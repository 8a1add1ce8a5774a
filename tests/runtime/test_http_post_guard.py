"""The kill switch and the approvals answer the server's own command line only. Reached through the documented
``ssh -L 8000:127.0.0.1:8000`` tunnel, a web page open in the trader's browser (or a DNS-rebinding one) also
arrives from 127.0.0.1; it must not be able to flatten the account or approve a trade with a cross-site POST."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from engine.runtime.http import Health, Metrics, build_app


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, list[str]]]:
    calls: list[str] = []

    async def approver(approval_id: str, action: str) -> str:
        calls.append(f"{action}:{approval_id}")
        return "approved"

    async def kill() -> str:
        calls.append("kill")
        return "flat"

    runner = web.AppRunner(build_app(Metrics(), Health(), lambda: {"mode": "paper"}, approver, kill))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    try:
        yield f"http://127.0.0.1:{port}", calls
    finally:
        await runner.cleanup()


BROWSER_HEADERS = [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
    {"Host": "rebind.evil.example:8000"},
]


@pytest.mark.parametrize("headers", BROWSER_HEADERS, ids=[next(iter(h.values())) for h in BROWSER_HEADERS])
@pytest.mark.parametrize("path", ["/killswitch", "/approvals/a1/approve"])
async def test_post_from_a_browser_page_is_refused(
    served: tuple[str, list[str]], headers: dict[str, str], path: str
) -> None:
    url, calls = served
    async with aiohttp.ClientSession() as s, s.post(url + path, headers=headers) as r:
        assert r.status == 403
    assert calls == []


@pytest.mark.parametrize("host", [None, "127.0.0.1:8000", "localhost:8000", "[::1]:8000", "localhost"])
async def test_post_from_the_command_line_still_works(served: tuple[str, list[str]], host: str | None) -> None:
    url, calls = served
    headers = {} if host is None else {"Host": host}
    async with aiohttp.ClientSession(skip_auto_headers=["User-Agent"]) as s:
        async with s.post(url + "/killswitch", headers=headers) as r:
            assert r.status == 200 and (await r.json()) == {"outcome": "flat"}
        async with s.post(url + "/approvals/a1/approve", headers=headers) as r:
            assert r.status == 200
    assert calls == ["kill", "approve:a1"]
