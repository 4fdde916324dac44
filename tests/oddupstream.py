"""A raw-socket upstream that answers each request with scripted bytes: aroutd's hostile upstream.

``OddUpstream`` listens on 127.0.0.1 (port 0, reported through ``task_status``),
reads one request head per request (and its body, by ``Content-Length``) and
answers with the exact bytes of a :class:`Script`, never through an HTTP
library, so an answer can be as broken as a test likes. The script of a request
is chosen, in this order:

1. by the last segment of its path, from ``scripts`` (``/v1/odd/NAME`` plays
   ``scripts["NAME"]``);
2. else the next one of the ``queue``;
3. else a clean keep-alive ``200`` whose body is ``b"own:" + target``, so a
   request can tell its own answer from one meant for another.

A script can send its answer in pieces with a pause between them, close the
socket (FIN, or RST with ``reset``) after exactly K bytes, keep the connection
for the next request or close it, and follow the answer with stray bytes, at
once or later (``played`` waits until all of it was sent). Every accepted
connection is numbered from 1 and every request is recorded with the number of
the connection it came on, so a test can tell whether aroutd reused an
upstream connection.

The helpers at the bottom build raw answers (``answer``, ``chunked``).
"""

from __future__ import annotations

import socket
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

__all__ = ["OddUpstream", "Script", "Seen", "answer", "chunked", "own_body"]

MAX_HEAD_BYTES = 65536  # a request head larger than this closes the connection
RECEIVE_BYTES = 65536
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Script:
    """The bytes one request gets back, and how they travel."""

    answer: bytes
    piece_bytes: int = 0  # > 0: send in pieces of this many bytes ...
    pause_s: float = 0.001  # ... with this pause between pieces
    close_after_bytes: int | None = None  # close after exactly this many bytes of answer + stray
    stray: bytes = b""  # extra bytes after the answer (in the same write unless split)
    stray_after_s: float = 0.0  # > 0: send the stray bytes this much later, on their own
    keep_alive: bool = True  # read the next request on this connection; False: close after
    reset: bool = False  # close with a TCP RST (SO_LINGER 0) instead of a FIN


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the upstream received it."""

    connection: int  # number of the accepted connection it came on, from 1
    method: bytes
    target: bytes
    headers: Headers
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lowercase), or None."""
        return next((v for n, v in self.headers if n.lower() == name), None)

    @property
    def segment(self) -> str:
        """The last segment of the path: the script's name."""
        path = self.target.partition(b"?")[0]
        return path.rpartition(b"/")[2].decode("latin-1")


def own_body(target: bytes) -> bytes:
    """The body of the default answer to ``target``."""
    return b"own:" + target


@dataclass
class OddUpstream:
    """The scripted upstream; run ``serve`` in a nursery with ``nursery.start``."""

    scripts: dict[str, Script] = field(default_factory=dict)
    queue: deque[Script] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    _played: dict[str, trio.Event] = field(default_factory=dict)

    def requests_for(self, segment: str) -> list[Seen]:
        """The requests whose path ended in ``segment``, in arrival order."""
        return [s for s in self.seen if s.segment == segment]

    async def played(self, segment: str) -> None:
        """Wait until the answer to ``segment`` was sent in full, late stray bytes included
        (or its sending failed): only then is what aroutd did with it final."""
        await self._played_event(segment).wait()

    def _played_event(self, segment: str) -> trio.Event:
        return self._played.setdefault(segment, trio.Event())

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = int(listeners[0].socket.getsockname()[1])
        task_status.started(self.port)
        try:
            await trio.serve_listeners(self._handle, listeners)
        finally:
            for listener in listeners:
                await trio.aclose_forcefully(listener)

    def _pick(self, seen: Seen) -> Script:
        script = self.scripts.get(seen.segment)
        if script is not None:
            return script
        if self.queue:
            return self.queue.popleft()
        return Script(answer=answer(own_body(seen.target)))

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        number = self.connections
        buf = bytearray()
        reset = False
        try:
            while True:
                request = await _read_request(stream, buf)
                if request is None:
                    return
                seen = Seen(number, *request)
                self.seen.append(seen)
                script = self._pick(seen)
                reset = script.reset
                try:
                    keep = await _play(stream, script)
                finally:
                    self._played_event(seen.segment).set()
                if not keep:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
        finally:
            if reset:
                # RST on close: SO_LINGER on, zero seconds
                stream.socket.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            await trio.aclose_forcefully(stream)


async def _play(stream: trio.SocketStream, script: Script) -> bool:
    """Send the script's bytes; True when the connection stays open for another request."""
    late = script.stray if script.stray_after_s > 0 else b""
    wire = script.answer + (b"" if late else script.stray)
    if script.close_after_bytes is not None:
        wire = (wire + late)[: script.close_after_bytes]
        late = b""
    step = script.piece_bytes if script.piece_bytes > 0 else max(len(wire), 1)
    for start in range(0, len(wire), step):
        if start:
            await trio.sleep(script.pause_s)
        await stream.send_all(wire[start : start + step])
    if late:
        await trio.sleep(script.stray_after_s)
        await stream.send_all(late)
    return script.keep_alive and script.close_after_bytes is None


async def _read_request(
    stream: trio.SocketStream, buf: bytearray
) -> tuple[bytes, bytes, Headers, bytes] | None:
    """The next (method, target, headers, body) from ``stream``; None at EOF or on a bad head.

    ``buf`` holds bytes read past the previous request (pipelining).
    """
    while (end := buf.find(b"\r\n\r\n")) < 0:
        if len(buf) > MAX_HEAD_BYTES:
            return None
        data = await stream.receive_some(RECEIVE_BYTES)
        if not data:
            return None
        buf += data
    head = bytes(buf[:end])
    del buf[: end + 4]
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        return None
    headers: Headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            return None
        headers.append((name.strip().lower(), value.strip(b" \t")))
    length = next((v for n, v in headers if n == b"content-length"), b"0")
    if not length.isdigit() or any(n == b"transfer-encoding" for n, _ in headers):
        return None  # aroutd always sends a Content-Length body; anything else ends here
    while len(buf) < int(length):
        data = await stream.receive_some(RECEIVE_BYTES)
        if not data:
            return None
        buf += data
    body = bytes(buf[: int(length)])
    del buf[: int(length)]
    return parts[0], parts[1], headers, body


def answer(
    body: bytes = b"",
    *,
    status: bytes = b"200 OK",
    headers: Sequence[bytes] = (b"Content-Type: text/plain",),
    length: bool = True,
    version: bytes = b"HTTP/1.1",
) -> bytes:
    """A raw answer: status line, ``headers`` (and a Content-Length when ``length``), ``body``."""
    lines = [version + b" " + status, *headers]
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(*parts: bytes, trailers: Sequence[bytes] = ()) -> bytes:
    """``parts`` as a chunked body (RFC 9112 §7.1), with its last chunk and ``trailers``."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)
    return out + b"0\r\n" + b"".join(t + b"\r\n" for t in trailers) + b"\r\n"
