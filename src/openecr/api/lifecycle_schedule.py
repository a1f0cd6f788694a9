"""The periodic runs of a server process (lifecycle policies, garbage collection): an ASGI
wrapper that, between the lifespan's startup and shutdown, runs ``run`` in a worker thread every
``interval`` seconds (the first one interval after startup). Shutdown waits for a run in
progress, then lets the app shut down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class LifecycleSchedule:
    def __init__(
        self, app: ASGIApp, run: Callable[[], object], interval: float, what: str = "lifecycle"
    ) -> None:
        self.app = app
        self.run = run
        self.interval = interval
        self.what = what

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" or self.interval <= 0:
            return await self.app(scope, receive, send)
        stopping = asyncio.Event()
        task: asyncio.Task[None] | None = None

        async def send_starting(message: Message) -> None:
            nonlocal task
            if message["type"] == "lifespan.startup.complete" and task is None:
                task = asyncio.create_task(self._loop(stopping))
            await send(message)

        async def receive_stopping() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown" and task is not None:
                stopping.set()
                await task
            return message

        await self.app(scope, receive_stopping, send_starting)

    async def _loop(self, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval)
            if stopping.is_set():
                return
            try:
                await loop.run_in_executor(None, self.run)
            except Exception:  # a failed run is logged; the next one tries again
                logging.getLogger(f"openecr.{self.what}").exception("%s run failed", self.what)
