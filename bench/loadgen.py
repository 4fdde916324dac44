"""trio + h11 load generator: latency distributions, SSE streams, idle connections.

``python -m bench.loadgen MODE --port P [--path /v1/chat/completions] [--header 'K: V'] ...``
prints one JSON object on its last stdout line. Every mode is bounded in work and
in seconds (``--seconds``); the parent pins this process to its own core.

- ``latency``: N requests over C keep-alive connections, per-request latency.
  ``--timeline`` adds [start offset ns, latency ns] pairs (the reload scenario);
  ``--stop-on-stdin`` ends the run early when stdin gets a line or EOF.
- ``sse``: S streams connect, then send at random offsets within ``--stagger-ms``;
  per event the delay
  (receive time minus the upstream's embedded ``t_ns``), per stream the time to
  first byte (response head) and to the first event.
- ``idle``: N connections, one request each (keep-alive), then ``READY {json}``
  on stdout and wait for stdin (the parent measures the server's RSS), then close.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import h11
import trio

from bench.stats import quantiles, summary_us
from bench.upstream import REQUEST_BODY, SSE_REQUEST_BODY

__all__ = ["main"]

REQUEST_TIMEOUT_S = 10.0
_T_NS = re.compile(rb'"t_ns":(\d+)')
_BODIES = {"chat": REQUEST_BODY, "sse": SSE_REQUEST_BODY, "none": b""}


@dataclass(kw_only=True)
class _Target:
    port: int
    method: bytes
    path: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def request(self) -> list[h11.Event]:
        headers = [(b"host", b"127.0.0.1:%d" % self.port), *self.headers]
        if self.method != b"GET" or self.body:
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(self.body)),
            ]
        events: list[h11.Event] = [
            h11.Request(method=self.method, target=self.path, headers=headers)
        ]
        if self.body:
            events.append(h11.Data(data=self.body))
        events.append(h11.EndOfMessage())
        return events


@dataclass(kw_only=True)
class _Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


class _Client:
    """One keep-alive client connection (reconnects after an error)."""

    def __init__(self, target: _Target) -> None:
        self.target = target
        self.stream: trio.SocketStream | None = None
        self.conn = h11.Connection(h11.CLIENT)

    async def connect(self) -> None:
        self.stream = await trio.open_tcp_stream("127.0.0.1", self.target.port)
        self.conn = h11.Connection(h11.CLIENT)

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
            self.stream = None

    async def _next(self) -> Any:
        assert self.stream is not None
        while (event := self.conn.next_event()) is h11.NEED_DATA:
            self.conn.receive_data(await self.stream.receive_some(65536))
        return event

    async def send_request(self) -> None:
        if self.stream is None:
            await self.connect()
        assert self.stream is not None
        await self.stream.send_all(
            b"".join(self.conn.send(e) or b"" for e in self.target.request())
        )

    async def response_head(self) -> h11.Response:
        event = await self._next()
        if not isinstance(event, h11.Response):
            raise h11.RemoteProtocolError(f"expected a response, got {type(event).__name__}")
        return event

    async def body_chunks(self) -> Any:
        """Yield each body chunk as it arrives; afterwards the connection is ready again."""
        while isinstance(event := await self._next(), h11.Data):
            yield event.data
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        else:
            await self.close()

    async def exchange(self) -> int:
        await self.send_request()
        head = await self.response_head()
        async for _ in self.body_chunks():
            pass
        return head.status_code


async def _one(client: _Client, tally: _Tally) -> bool:
    try:
        with trio.fail_after(REQUEST_TIMEOUT_S):
            tally.statuses[await client.exchange()] += 1
        return True
    except trio.TooSlowError:
        tally.errors["timeout"] += 1
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError) as exc:
        tally.errors[type(exc).__name__] += 1
    await client.close()
    return False


async def _stop_on_stdin(cancel: trio.CancelScope) -> None:
    stdin = trio.lowlevel.FdStream(0)
    await stdin.receive_some(1)
    cancel.cancel()


async def run_latency(target: _Target, args: argparse.Namespace) -> dict[str, Any]:
    tally, latencies, timeline = _Tally(), [], []
    remaining = [args.warmup, args.n]
    start_ns, end_ns = 2**63, 0

    async def worker() -> None:
        nonlocal start_ns, end_ns
        client = _Client(target)
        try:
            while remaining[0] > 0:
                remaining[0] -= 1
                await _one(client, _Tally())
            while remaining[1] > 0:
                remaining[1] -= 1
                t0 = time.monotonic_ns()
                start_ns = min(start_ns, t0)
                ok = await _one(client, tally)
                end_ns = time.monotonic_ns()
                if ok:
                    latencies.append(end_ns - t0)
                    if args.timeline:
                        timeline.append((t0, end_ns - t0))
        finally:
            await client.close()

    with trio.move_on_after(args.seconds) as scope:
        async with trio.open_nursery() as nursery:
            if args.stop_on_stdin:
                nursery.start_soon(_stop_on_stdin, scope)
            async with trio.open_nursery() as workers:
                for _ in range(args.concurrency):
                    workers.start_soon(worker)
            nursery.cancel_scope.cancel()
    elapsed_s = max(1e-9, (end_ns - start_ns) / 1e9) if latencies else 1e-9
    result: dict[str, Any] = {
        "mode": "latency",
        "concurrency": args.concurrency,
        "count": len(latencies),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": dict(tally.errors),
        "elapsed_s": round(elapsed_s, 3),
        "rps": round(len(latencies) / elapsed_s, 1),
        "timed_out": scope.cancelled_caught,
        "latency_us": summary_us(latencies),
        "quantiles_us": [round(q, 1) for q in quantiles(sorted(x / 1000 for x in latencies))],
    }
    if args.timeline:
        result["timeline"] = timeline
    return result


async def run_sse(target: _Target, args: argparse.Namespace) -> dict[str, Any]:
    tally, delays, ttfb, first_event, counts = _Tally(), [], [], [], []
    connected = [0]
    go = trio.Event()

    async def stream_task() -> None:
        client = _Client(target)
        try:
            await client.connect()
            connected[0] += 1
            if connected[0] == args.streams:
                go.set()
            await go.wait()
            # Spread the starts over one event interval: synchronized streams would turn
            # every event into a burst of S events at once (a queueing test, not a relay one).
            await trio.sleep(random.uniform(0, args.stagger_ms / 1000))
            t0 = time.monotonic_ns()
            await client.send_request()
            head = await client.response_head()
            ttfb.append(time.monotonic_ns() - t0)
            tally.statuses[head.status_code] += 1
            events, pending = 0, b""
            async for chunk in client.body_chunks():
                now = time.monotonic_ns()
                pending += chunk
                complete, _, pending = pending.rpartition(b"\n\n")
                for match in _T_NS.finditer(complete):
                    if events == 0:
                        first_event.append(now - t0)
                    delays.append(now - int(match.group(1)))
                    events += 1
            counts.append(events)
        except (
            OSError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            h11.ProtocolError,
        ) as exc:
            tally.errors[type(exc).__name__] += 1
            connected[0] += 1
            if connected[0] >= args.streams:
                go.set()
        finally:
            await client.close()

    start = time.monotonic()
    with trio.move_on_after(args.seconds) as scope:
        async with trio.open_nursery() as nursery:
            for _ in range(args.streams):
                nursery.start_soon(stream_task)
    return {
        "mode": "sse",
        "streams": args.streams,
        "streams_complete": len(counts),
        "events": len(delays),
        "events_per_stream_min": min(counts, default=0),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": dict(tally.errors),
        "elapsed_s": round(time.monotonic() - start, 3),
        "timed_out": scope.cancelled_caught,
        "event_delay_us": summary_us(delays),
        "ttfb_us": summary_us(ttfb),
        "first_event_us": summary_us(first_event),
    }


async def run_idle(target: _Target, args: argparse.Namespace) -> dict[str, Any]:
    tally, clients = _Tally(), [_Client(target) for _ in range(args.connections)]
    limiter = trio.CapacityLimiter(args.concurrency)
    start, open_now = time.monotonic(), 0

    async def setup(client: _Client) -> None:
        async with limiter:
            await _one(client, tally)

    with trio.move_on_after(args.seconds) as scope:
        async with trio.open_nursery() as nursery:
            for client in clients:
                nursery.start_soon(setup, client)
        open_now = sum(1 for c in clients if c.stream is not None)
        ready = {"open": open_now, "setup_s": round(time.monotonic() - start, 3)}
        print("READY " + json.dumps(ready), flush=True)
        await trio.lowlevel.FdStream(0).receive_some(1)
    for client in clients:
        await client.close()
    return {
        "mode": "idle",
        "connections": args.connections,
        "open": open_now if not scope.cancelled_caught else 0,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": dict(tally.errors),
        "timed_out": scope.cancelled_caught,
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("mode", choices=["latency", "sse", "idle"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--method", default="POST")
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--body", choices=sorted(_BODIES), default="chat")
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--seconds", type=float, default=10.0, help="hard bound on the run")
    parser.add_argument("--n", type=int, default=1000, help="latency: measured requests")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--timeline", action="store_true")
    parser.add_argument("--stop-on-stdin", action="store_true")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--stagger-ms", type=float, default=0.0, help="sse: spread the starts")
    parser.add_argument("--connections", type=int, default=1000)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    headers = []
    for item in args.header:
        name, _, value = item.partition(":")
        headers.append((name.strip().lower().encode(), value.strip().encode()))
    target = _Target(
        port=args.port,
        method=args.method.encode(),
        path=args.path.encode(),
        headers=headers,
        body=_BODIES[args.body] if args.method != "GET" else b"",
    )
    runner = {"latency": run_latency, "sse": run_sse, "idle": run_idle}[args.mode]
    result = trio.run(runner, target, args)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
