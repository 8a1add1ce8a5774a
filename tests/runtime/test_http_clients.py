"""The HTTP side against clients that misbehave, over real sockets: wrong paths and methods get a clear answer, and
a client that opens connections and never finishes a request cannot hold the process's file descriptors (shared
with the exchange sockets) for long, nor slow down the answers to the others."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from engine.runtime.http import HTTP_IDLE_TIMEOUT_S, Health, Metrics, build_app, http_runner


@pytest.fixture
async def port() -> AsyncIterator[int]:
    runner = http_runner(build_app(Metrics(), Health(), lambda: {"mode": "paper"}))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield next(a[1] for a in runner.addresses if isinstance(a, tuple))
    finally:
        await runner.cleanup()


async def test_wrong_paths_and_methods_get_a_clear_answer(port: int) -> None:
    async with aiohttp.ClientSession() as http:
        for method, path, status, allow in (
            ("GET", "/nope", 404, None),
            ("GET", "/dashboard/", 404, None),
            ("POST", "/metrics", 405, "GET,HEAD"),
            ("DELETE", "/dashboard", 405, "GET,HEAD"),
            ("GET", "/killswitch", 405, "POST"),  # the kill switch is never a link a browser can follow
        ):
            async with http.request(method, f"http://127.0.0.1:{port}{path}") as r:
                assert (r.status, r.headers.get("Allow")) == (status, allow), (method, path)
                assert "Traceback" not in await r.text()


async def test_the_bare_address_leads_to_the_dashboard(port: int) -> None:
    """http://127.0.0.1:8000/ through the ssh tunnel, as a trader types it, answered "404: Not Found"."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/", allow_redirects=False) as r:
            assert (r.status, r.headers.get("Location")) == (302, "/dashboard")
        async with http.get(f"http://127.0.0.1:{port}/") as r:
            assert r.status == 200 and "<th>mode</th><td>paper</td>" in await r.text()


async def test_a_client_that_never_finishes_its_request_is_cut_off(port: int) -> None:
    """Half a request, then silence: aiohttp kept such a connection open for 3630 s (still open after 20 s)."""
    idle = []
    for _ in range(50):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the blank line never comes
        idle.append((reader, writer))
    started = time.monotonic()
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health/live") as r:
        assert r.status == 200 and time.monotonic() - started < 2  # the others are answered meanwhile, at once
    for reader, writer in idle:
        assert await asyncio.wait_for(reader.read(), HTTP_IDLE_TIMEOUT_S + 5) == b""  # closed by the server
        writer.close()
    assert time.monotonic() - started < HTTP_IDLE_TIMEOUT_S + 5


async def test_more_connections_than_the_cap_keep_the_descriptors_bounded_and_health_answering() -> None:
    """300 connections opened at once and left idle: each held a descriptor on the server side for the whole idle
    timeout (300 open at once, and ~1000 within 10 s could use up the descriptors the exchange sockets need). Now
    at most the cap stay open, the oldest idle ones are closed to make room, /health/live answers at once and the
    event loop (the engine's) does not stall."""
    runner = http_runner(build_app(Metrics(), Health(), lambda: {"mode": "paper"}), max_connections=16)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    server = runner.server
    assert server is not None
    ticks: list[float] = []

    async def engine_heartbeat() -> None:  # stands in for the engine: a task that must keep running on time
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    beat = asyncio.create_task(engine_heartbeat())
    idle = []
    try:
        for n in range(300):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if n % 2:
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # half a request, then silence
            idle.append((reader, writer))
        await asyncio.sleep(0.3)
        open_on_server = len([h for h in server.connections if h.transport is not None])
        assert open_on_server <= 16
        closed = 0
        for reader, _ in idle:
            with contextlib.suppress(TimeoutError):
                closed += await asyncio.wait_for(reader.read(), 0.01) == b""
        assert closed >= 300 - 16  # the server closed the oldest ones: their descriptors are free again
        started = time.monotonic()
        async with aiohttp.ClientSession() as http:
            for _ in range(5):
                async with http.get(f"http://127.0.0.1:{port}/health/live") as r:
                    assert r.status == 200 and (await r.json())["live"] is True
        assert time.monotonic() - started < 2
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        assert max(gaps) < 0.5  # the engine's loop kept its pace meanwhile
    finally:
        beat.cancel()
        for _, writer in idle:
            writer.close()
        await runner.cleanup()
