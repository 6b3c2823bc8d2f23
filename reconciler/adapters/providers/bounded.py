"""Reading an answer whose size is bounded before it is inflated, not after.

    TooLarge       the answer, compressed or inflated, passed its cap
    BadEncoding    an encoding this reader does not take, too many of them, or corrupt data

httpx inflates a whole chunk before a caller can count it, so a few kilobytes of gzip can become
gigabytes in one step. `Inflater` counts instead as it inflates: each stage of a stacked
`Content-Encoding` is asked for at most what is left of the cap, so memory stays within the cap
whatever the server sends.
"""

from __future__ import annotations

import zlib

ACCEPT_ENCODING = "gzip, deflate"
MAX_ENCODINGS = 2


class TooLarge(Exception):
    """The answer grew past its cap."""


class BadEncoding(Exception):
    """The answer's encoding is not one this reader takes, or its data is corrupt."""


class _Stage:
    """One decoding step: gzip, or deflate in either its zlib or its raw form."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        wbits = 16 + zlib.MAX_WBITS if coding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._inflate = zlib.decompressobj(wbits)
        self._started = False

    def feed(self, data: bytes, room: int) -> list[bytes]:
        """Inflate `data`, never producing more than `room + 1` bytes in all."""
        out: list[bytes] = []
        produced = 0
        while data and produced <= room:
            try:
                piece = self._inflate.decompress(data, room + 1 - produced)
            except zlib.error:
                if self.coding == "deflate" and not self._started:
                    # Some servers send raw deflate without the zlib header.
                    self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._started = True
                    continue
                raise BadEncoding(f"the {self.coding} data is corrupt") from None
            self._started = True
            out.append(piece)
            produced += len(piece)
            data = self._inflate.unconsumed_tail
        return out


class Inflater:
    """Decodes a `Content-Encoding` chain, keeping every stage's output within `cap` bytes."""

    def __init__(self, content_encoding: str | None, cap: int) -> None:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        unknown = [c for c in codings if c not in ("gzip", "x-gzip", "deflate")]
        if unknown:
            raise BadEncoding(f"the answer is encoded as {unknown[0]!r}, which was not asked for")
        if len(codings) > MAX_ENCODINGS:
            raise BadEncoding(f"the answer is encoded {len(codings)} times over")
        self._stages = [_Stage(c) for c in reversed(codings)]
        self._produced = [0] * len(self._stages)
        self._cap = cap
        self.raw_bytes = 0
        self.body = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Take the next raw chunk; raises `TooLarge` once anything passes the cap."""
        self.raw_bytes += len(chunk)
        if self.raw_bytes > self._cap:
            raise TooLarge(f"more than {self._cap // 1024} KiB")
        pieces = [chunk]
        for index, stage in enumerate(self._stages):
            inflated: list[bytes] = []
            for piece in pieces:
                room = self._cap - self._produced[index]
                for part in stage.feed(piece, room):
                    inflated.append(part)
                    self._produced[index] += len(part)
                if self._produced[index] > self._cap:
                    raise TooLarge(f"more than {self._cap // 1024} KiB once inflated")
            pieces = inflated
        for piece in pieces:
            self.body += piece
