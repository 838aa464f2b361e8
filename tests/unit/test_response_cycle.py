"""The proxy's response serialisation (`ProxyCycle.send`) against a transport that records writes.

The connection-level behaviour (limits, deadlines, upgrades, disconnects) is tested through real
sockets in tests/integration; this is the pure framing logic.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl

from sidecar.response_cycle import CORK_KEY, ProxyCycle


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def make_cycle(method: str = "GET", cork: bool = False) -> tuple[ProxyCycle, RecordingTransport]:
    transport = RecordingTransport()
    scope: dict[str, Any] = {"type": "http", "method": method}
    if cork:
        scope[CORK_KEY] = True
    logger = logging.getLogger("test")
    cycle = ProxyCycle(
        scope=scope,  # type: ignore[arg-type]
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logger,
        access_logger=logger,
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )
    return cycle, transport


def start(headers: list[tuple[bytes, bytes]], status: int = 200) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": headers}


def body(data: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


async def test_a_corked_head_goes_out_with_the_first_body_chunk() -> None:
    cycle, transport = make_cycle(cork=True)
    await cycle.send(start([(b"content-length", b"5"), (b"x-app", b"1")]))
    assert transport.writes == []
    await cycle.send(body(b"hello"))
    assert transport.writes == [
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-app: 1\r\n\r\nhello",
    ]
    assert cycle.response_complete


async def test_an_uncorked_head_goes_out_at_once() -> None:
    cycle, transport = make_cycle()
    await cycle.send(start([(b"content-length", b"5")]))
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"]
    await cycle.send(body(b"hel", more=True))
    await cycle.send(body(b"lo"))
    assert transport.writes[1:] == [b"hel", b"lo"]


async def test_no_length_means_chunked_with_a_terminator() -> None:
    cycle, transport = make_cycle(cork=True)
    await cycle.send(start([(b"content-type", b"text/plain")]))
    await cycle.send(body(b"abc", more=True))
    await cycle.send(body(b""))
    assert b"".join(transport.writes) == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )


async def test_a_corked_head_response_writes_its_head_alone() -> None:
    cycle, transport = make_cycle(method="HEAD", cork=True)
    await cycle.send(start([(b"content-length", b"100")]))
    await cycle.send(body(b""))
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n"]
    assert cycle.response_complete


async def test_connection_close_closes_after_the_body() -> None:
    cycle, transport = make_cycle()
    await cycle.send(start([(b"Connection", b"keep-alive, Close"), (b"content-length", b"0")]))
    assert not cycle.keep_alive
    assert not transport.closed
    await cycle.send(body(b""))
    assert transport.closed


@pytest.mark.parametrize(
    "header",
    [
        (b"x-evil", b"a\r\nset-cookie: stolen=1"),
        (b"x-evil", b"a\nb"),
        (b"x-evil", b"a\rb"),
        (b"x-evil", b"a\x00b"),
        (b"x-evil\r\nset-cookie", b"1"),
    ],
)
async def test_a_header_that_could_split_the_response_is_refused(
    header: tuple[bytes, bytes],
) -> None:
    cycle, transport = make_cycle()
    with pytest.raises(RuntimeError, match="Invalid HTTP header"):
        await cycle.send(start([header, (b"content-length", b"0")]))
    assert transport.writes == []


async def test_a_body_longer_than_its_content_length_is_refused() -> None:
    cycle, _ = make_cycle()
    await cycle.send(start([(b"content-length", b"2")]))
    with pytest.raises(RuntimeError, match="longer than Content-Length"):
        await cycle.send(body(b"abc"))
