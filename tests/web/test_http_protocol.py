"""The coalescing transport under uvicorn's protocol: one write per response, nothing held back."""

from __future__ import annotations

from typing import Any

from iiifserver.web.http_protocol import CoalescingTransport

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"


class Recorder:
    """A transport that records the system calls it would make."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, chunks: Any) -> None:
        self.calls.append(("writelines", [bytes(c) for c in chunks]))

    def close(self) -> None:
        self.calls.append(("close", None))

    def write_eof(self) -> None:
        self.calls.append(("write_eof", None))

    def abort(self) -> None:
        self.calls.append(("abort", None))

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def make() -> tuple[CoalescingTransport, Recorder]:
    real = Recorder()
    return CoalescingTransport(real), real  # type: ignore[arg-type]


def test_head_and_body_leave_in_one_vectored_write() -> None:
    transport, real = make()
    transport.write(HEAD)
    assert real.calls == []
    transport.write(b"hello")
    assert real.calls == [("writelines", [HEAD, b"hello"])]
    transport.write(b"more")  # a later chunk of the same body goes straight through
    assert real.calls[-1] == ("write", b"more")


def test_a_head_without_body_goes_out_on_flush() -> None:
    transport, real = make()
    transport.write(b'HTTP/1.1 304 Not Modified\r\netag: "x"\r\n\r\n')
    transport.flush()
    transport.flush()  # nothing held: no second write
    assert real.calls == [("write", b'HTTP/1.1 304 Not Modified\r\netag: "x"\r\n\r\n')]


def test_interim_responses_are_not_held() -> None:
    transport, real = make()
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert real.calls == [("write", b"HTTP/1.1 100 Continue\r\n\r\n")]


def test_close_and_eof_flush_first_and_abort_drops() -> None:
    transport, real = make()
    transport.write(HEAD)
    transport.close()
    assert real.calls == [("write", HEAD), ("close", None)]
    transport, real = make()
    transport.write(HEAD)
    transport.write_eof()
    assert real.calls == [("write", HEAD), ("write_eof", None)]
    transport, real = make()
    transport.write(HEAD)
    transport.abort()
    assert real.calls == [("abort", None)]


def test_other_writes_and_attributes_pass_through() -> None:
    transport, real = make()
    transport.write(b"partial head without end")
    transport.write(bytearray(HEAD))  # not bytes: never held
    transport.writelines([HEAD, b"x"])
    assert real.calls == [
        ("write", b"partial head without end"),
        ("write", HEAD),
        ("writelines", [HEAD, b"x"]),
    ]
    assert transport.get_extra_info("peername") == "info:peername"


def test_writelines_flushes_a_held_head_first() -> None:
    transport, real = make()
    transport.write(HEAD)
    transport.writelines([b"a", b"b"])
    assert real.calls == [("write", HEAD), ("writelines", [b"a", b"b"])]
