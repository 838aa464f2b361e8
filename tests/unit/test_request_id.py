"""sidecar/request_id.py: keep a sane client ID, else a new 128-bit hex one."""

from __future__ import annotations

import os
import re

import pytest

from sidecar.request_id import MAX_LENGTH, RequestIds, is_sane

HEX_128 = re.compile(rb"[0-9a-f]{32}")


@pytest.mark.parametrize(
    "value",
    [
        b"9f86d081884c7d659a2feaa0c55ad015",
        b"a",
        b"req-123_ABC.~!$%&'()*+,/:;<=>?@[]^`{|}",  # every visible punctuation is fine
        b"x" * MAX_LENGTH,
    ],
)
def test_sane_ids_are_kept(value: bytes) -> None:
    assert is_sane(value)
    assert RequestIds().keep_or_new(value) is value


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"x" * (MAX_LENGTH + 1),
        b"abc\x00def",  # NUL
        b"abc\rdef",  # CR: would split a log line
        b"abc\ndef",
        b"abc\x1b[31mred",  # a terminal escape
        b"abc\x7f",  # DEL
        b"with space",
        b"caf\xc3\xa9",  # non-ASCII UTF-8
        b"\xff\xfe",
    ],
)
def test_ids_with_control_or_non_ascii_bytes_are_replaced(value: bytes) -> None:
    assert not is_sane(value)
    replaced = RequestIds().keep_or_new(value)
    assert replaced != value
    assert HEX_128.fullmatch(replaced)


def test_missing_id_gets_a_new_one() -> None:
    assert HEX_128.fullmatch(RequestIds().keep_or_new(None))


def test_new_ids_are_128_bit_hex_and_unique_across_buffer_refills() -> None:
    ids = RequestIds()
    seen = [ids.new() for _ in range(2000)]  # ~8 refills of the 256-ID buffer
    assert all(HEX_128.fullmatch(value) for value in seen)
    assert len(set(seen)) == len(seen)


def test_two_generators_do_not_share_randomness() -> None:
    assert RequestIds().new() != RequestIds().new()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    ids = RequestIds()
    ids.new()  # fill the buffer before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.write(write, ids.new())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    assert HEX_128.fullmatch(child)
    assert child != ids.new()
