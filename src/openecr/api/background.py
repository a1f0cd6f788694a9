"""Background work of a server process tied to the ASGI lifespan: ``start`` once the app has
started, ``stop`` when it shuts down (before the app's own shutdown)."""

from __future__ import annotations

from collections.abc import Callable

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Background:
    def __init__(self, app: ASGIApp, start: Callable[[], None], stop: Callable[[], None]) -> None:
        self.app = app
        self.start = start
        self.stop = stop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)

        async def send_started(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.start()
            await send(message)

        async def receive_stopping() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await anyio.to_thread.run_sync(self.stop)
            return message

        await self.app(scope, receive_stopping, send_started)
