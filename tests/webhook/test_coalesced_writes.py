"""The server's answers go out as one write each (webhook/server.CoalescedWrites): uvicorn writes the status line and
headers, then the body; over TLS each write is a record and a system call. What one event-loop turn writes is joined,
close() sends what is pending first, abort() drops it, and a transport already closing is not written to.

The transport underneath is a recording one: the seam is ours, and what it must see (how many writes, with what
bytes) is exactly what a real socket hides. The served answers themselves are tested through `admission-cli serve`
over TLS (tests/webhook/test_serve.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from admission.webhook.server import CoalescedWrites, CoalescingHttpToolsProtocol, config_for
from admission.webhook.settings import Settings

pytestmark = pytest.mark.anyio


class Recording:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:  # noqa: ANN401
        return ("127.0.0.1", 4242) if name == "peername" else default


async def test_the_writes_of_one_loop_turn_are_one_write() -> None:
    under = Recording()
    transport = CoalescedWrites(under, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    assert under.writes == [] and transport.get_write_buffer_size() == 40
    await asyncio.sleep(0)
    assert under.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert under.writes[1:] == [b"next"]
    assert transport.get_extra_info("peername") == ("127.0.0.1", 4242)  # the rest is the transport's own


async def test_close_sends_what_is_pending_and_abort_drops_it() -> None:
    loop = asyncio.get_running_loop()
    under = Recording()
    transport = CoalescedWrites(under, loop)
    transport.write(b"last answer")
    transport.close()
    assert under.writes == [b"last answer"] and under.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert under.writes == [b"last answer"]
    aborted = Recording()
    transport = CoalescedWrites(aborted, loop)
    transport.write(b"never")
    transport.abort()
    await asyncio.sleep(0)
    assert aborted.writes == [] and aborted.aborted


async def test_a_transport_closing_underneath_is_not_written() -> None:
    under = Recording()
    transport = CoalescedWrites(under, asyncio.get_running_loop())
    transport.write(b"late")
    under.aborted = True  # the client went away within the turn
    await asyncio.sleep(0)
    assert under.writes == []


def test_serve_uses_the_coalescing_protocol() -> None:
    config = config_for(object(), Settings(policy=None))
    assert CoalescingHttpToolsProtocol is not None and config.http is CoalescingHttpToolsProtocol
