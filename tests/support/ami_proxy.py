"""A TCP proxy between `bereik serve` and Asterisk's AMI, for faults from outside: it can
slip a message of its own between two of Asterisk's (a malformed event), and cut the
connection in the middle of a message, as a network or a crashing peer would.

It runs on an event loop of its own in a thread: a test's blocking calls (a /healthz
request, a database read) must not hold up the stream it passes on, or serve would see a
stalled connection rather than the fault the test makes."""

from __future__ import annotations

import asyncio
import contextlib
import threading

EOM = b"\r\n\r\n"  # the end of one AMI message


class AmiProxy:
    def __init__(self, listen_port: int, ami_port: int) -> None:
        self.listen_port, self.ami_port = listen_port, ami_port
        self.connections = 0  # how many times serve connected
        self.cuts = 0
        self._inject: list[bytes] = []
        self._cut = threading.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", self.listen_port), self._loop
        ).result(10)

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for writer in self._writers:
                writer.transport.abort()
            # Every connection's coroutine ends here, on this loop: one left pending would be
            # finalized later by the garbage collector in whatever thread runs then (once,
            # inside the next test's import, which CPython 3.11 failed with "AST constructor
            # recursion depth mismatch").
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    @property
    def injected(self) -> bool:
        """Whether what `inject` was given has been sent."""
        return not self._inject

    def inject(self, *messages: bytes) -> None:
        """Send `messages` to serve right after the next whole message from Asterisk."""
        self._loop.call_soon_threadsafe(self._inject.extend, messages)

    def cut_mid_message(self) -> None:
        """With Asterisk's next message: pass half of it, then kill both sides."""
        self._cut.set()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        ami_r, ami_w = await asyncio.open_connection("127.0.0.1", self.ami_port)
        self._writers += [client_w, ami_w]

        async def upstream() -> None:
            while data := await client_r.read(65536):
                ami_w.write(data)
                await ami_w.drain()

        async def downstream() -> None:
            while data := await ami_r.read(65536):
                end = data.find(EOM)
                if self._cut.is_set() and end > 8:
                    # Half of the message: serve is left with a frame that never ends.
                    client_w.write(data[: end // 2])
                    await client_w.drain()
                    self._cut.clear()
                    self.cuts += 1
                    # Killed, not closed: a reset, as when the peer's process dies.
                    client_w.transport.abort()
                    ami_w.transport.abort()
                    return
                if self._inject and end >= 0:
                    # Between two of Asterisk's messages, so theirs stay whole.
                    client_w.write(data[: end + 4] + b"".join(self._inject) + data[end + 4 :])
                    self._inject = []
                else:
                    client_w.write(data)
                await client_w.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except (ConnectionError, OSError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in (client_w, ami_w):
                writer.close()
