"""Request IDs: keep the client's `X-Request-Id` when it is sane, else make a new one.

Sane means 1 to 200 bytes of visible ASCII (0x21-0x7E): nothing that could split a log line,
smuggle a control character into the app's logs, or grow without bound. A new ID is 128 random
bits as 32 lowercase hex digits, from the operating system's CSPRNG (`os.urandom`, like Envoy's
BoringSSL-backed UUIDs), read 4 KiB at a time so the syscall is paid once per 256 IDs. Mersenne
Twister (`random`) would be as fast but its output can be predicted from 624 observed values;
an ID that a client can guess is one it can collide with in another tenant's logs.

How the protocol calls it, per request, only when `settings.request_id` is on:

    # startup
    request_ids = RequestIds()
    # on_headers_complete, with the client's X-Request-Id raw value (bytes) or None
    request_id = request_ids.keep_or_new(client_value)   # -> bytes, ready for the wire
    # write b"x-request-id: " + request_id to the app (the client's header replaced);
    # with settings.request_id_response, add the same header to the response head;
    # pass request_id.decode("ascii") to the access log line.
"""

from __future__ import annotations

import binascii
import os
import weakref

MAX_LENGTH = 200
HEADER = b"x-request-id"
# Bytes a sane ID may hold; `value.translate(_IDENTITY, _VISIBLE)` deletes them, in C (an
# explicit identity table is ~30% faster than `None`, which builds one per call).
_VISIBLE = bytes(range(0x21, 0x7F))
_IDENTITY = bytes.maketrans(b"", b"")
_ID_BYTES = 16
_BUFFER_IDS = 256
# Every generator of this process: a forked child must not hand out the IDs its parent will.
_GENERATORS: weakref.WeakSet[RequestIds] = weakref.WeakSet()


def _discard_after_fork() -> None:
    for generator in list(_GENERATORS):
        generator.discard()


os.register_at_fork(after_in_child=_discard_after_fork)


def is_sane(value: bytes) -> bool:
    """1 to 200 bytes of visible ASCII (no space, no control character, nothing above 0x7E)."""
    return 0 < len(value) <= MAX_LENGTH and not value.translate(_IDENTITY, _VISIBLE)


class RequestIds:
    """New IDs from a buffer of OS randomness; one instance per process."""

    def __init__(self) -> None:
        self._buffer = memoryview(b"")
        self._offset = 0
        _GENERATORS.add(self)

    def discard(self) -> None:
        """Forget the buffered randomness (done in a forked child)."""
        self._buffer = memoryview(b"")
        self._offset = 0

    def new(self) -> bytes:
        """32 lowercase hex digits of fresh randomness, as bytes."""
        offset = self._offset
        if offset == len(self._buffer):
            self._buffer = memoryview(os.urandom(_ID_BYTES * _BUFFER_IDS))
            offset = 0
        self._offset = offset + _ID_BYTES
        return binascii.hexlify(self._buffer[offset : offset + _ID_BYTES])  # one copy, not two

    def keep_or_new(self, client_value: bytes | None) -> bytes:
        """The client's ID when sane, else a new one."""
        if client_value is not None and is_sane(client_value):
            return client_value
        return self.new()
