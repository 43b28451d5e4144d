"""A real HTTP server for webhook tests: aiohttp.web on 127.0.0.1 in a thread of its own,
recording every request and answering what the test tells it to (an outage, a 429 with
Retry-After, a 400)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.helpers import PATIENCE_S


@dataclass(frozen=True)
class Received:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int
    """What the server answered."""
    at: float
    """time.monotonic() on arrival."""

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def key(self) -> str:
        return self.headers.get("Idempotency-Key", "")


@dataclass
class WebhookServer:
    """Answers ``status`` (and ``headers``) to every request until told otherwise;
    ``answers`` (a queue) takes precedence, one per request."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    _received: list[Received] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def received(self) -> list[Received]:
        with self._cond:
            return list(self._received)

    def delivered(self) -> list[Received]:
        """Requests answered 2xx."""
        return [r for r in self.received if 200 <= r.status < 300]

    def answer(self, status: int, headers: dict[str, str] | None = None) -> None:
        with self._cond:
            self.status = status
            self.headers = dict(headers or {})

    def wait_for(
        self, test: Callable[[list[Received]], bool], *, timeout: float = PATIENCE_S
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not test(self._received):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"webhook server: condition not met; got {self._received}")
                self._cond.wait(left)
            return list(self._received)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._cond:
            if self.answers:
                status, headers = self.answers.pop(0)
            else:
                status, headers = self.status, dict(self.headers)
            self._received.append(
                Received(
                    path=request.path,
                    query=request.query_string,
                    headers=dict(request.headers),
                    body=body,
                    status=status,
                    at=time.monotonic(),
                )
            )
            self._cond.notify_all()
        return web.Response(status=status, headers=headers, text="ok" if status < 300 else "no")


@dataclass
class _Running:
    server: WebhookServer
    loop: asyncio.AbstractEventLoop
    runner: web.AppRunner
    thread: threading.Thread


def _start(server: WebhookServer, port: int = 0) -> _Running:
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server._handle)
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", port)
        loop.run_until_complete(site.start())
        sockets = site._server.sockets if site._server is not None else ()  # type: ignore[union-attr]
        server.port = sockets[0].getsockname()[1]
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="webhook-server", daemon=True)
    thread.start()
    if not started.wait(PATIENCE_S):
        raise RuntimeError("webhook server did not start")
    return _Running(server, loop, runner, thread)


def _stop(running: _Running) -> None:
    asyncio.run_coroutine_threadsafe(running.runner.cleanup(), running.loop).result(PATIENCE_S)
    running.loop.call_soon_threadsafe(running.loop.stop)
    running.thread.join(PATIENCE_S)


def serve() -> Iterator[WebhookServer]:
    """For a fixture: a server on a free port, stopped afterwards."""
    server = WebhookServer()
    running = _start(server)
    try:
        yield server
    finally:
        _stop(running)
