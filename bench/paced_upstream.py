"""A fake OpenAI-compatible upstream for the benchmarks that keeps its pace
with thousands of concurrent answers: one timer for all streams instead of a
sleep per piece per stream (test/e2e/fake_openai.py's way, ~25 µs of Python
per piece, cannot send 1,000 streams x 50 pieces/s on one core).

    /usr/bin/python3 bench/paced_upstream.py PORT PIECES DELAY

Every POST gets a 200 text/event-stream answer of PIECES pieces "tok ", each
its own HTTP chunk: the first at once, the next ones on a common tick every
DELAY seconds (absolute times, so the pace does not drift); DELAY 0 writes the
whole answer in one write. The connection closes after the answer. The port
is opened with SO_REUSEPORT, so several processes can share the streams.
SIGUSR1 prints one line of counters to stdout:
`pieces P streams_started S streams_done D ticks T active A late_ticks L max_lag_ms M`
(a tick is late when it runs more than DELAY after its time; it is then
caught up, not skipped)."""
import asyncio
import json
import signal
import sys


def http_chunk(data):
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def sse(obj):
    return f"data: {json.dumps(obj)}\n\n".encode()


def piece_chunk(first):
    delta = {"role": "assistant", "content": "tok "} if first else {"content": "tok "}
    return http_chunk(sse({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))


HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
FIRST = piece_chunk(True)
PIECE = piece_chunk(False)
END = (http_chunk(sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
       + http_chunk(b"data: [DONE]\n\n") + http_chunk(b""))


class Upstream:
    def __init__(self, pieces, delay):
        self.pieces = pieces
        self.delay = delay
        self.active = {}  # transport -> pieces still to send
        self.sent = 0
        self.started = 0
        self.done = 0
        self.late = 0
        self.ticks = 0
        self.max_lag = 0.0

    def start_stream(self, transport):
        self.started += 1
        if self.delay <= 0:
            transport.write(HEAD + FIRST + PIECE * (self.pieces - 1) + END)
            self.sent += self.pieces
            self.finish(transport)
            return
        transport.write(HEAD + FIRST)
        self.sent += 1
        if self.pieces == 1:
            transport.write(END)
            self.finish(transport)
        else:
            self.active[transport] = self.pieces - 1

    def finish(self, transport):
        self.done += 1
        transport.close()

    def tick(self, loop, when):
        self.ticks += 1
        lag = loop.time() - when
        self.max_lag = max(self.max_lag, lag)
        if lag > self.delay:
            self.late += 1
        finished = []
        for transport, left in self.active.items():
            if transport.is_closing():  # the client went away
                finished.append(transport)
                continue
            if left > 1:
                transport.write(PIECE)
                self.active[transport] = left - 1
            else:
                transport.write(PIECE + END)
                finished.append(transport)
            self.sent += 1
        for transport in finished:
            del self.active[transport]
            if not transport.is_closing():
                self.finish(transport)
        # The next tick at its absolute time, even when that has passed: a late
        # tick is caught up, so the pace holds on average while the CPU allows.
        loop.call_at(when + self.delay, self.tick, loop, when + self.delay)

    def report(self):
        print(f"pieces {self.sent} streams_started {self.started} streams_done {self.done} "
              f"ticks {self.ticks} active {len(self.active)} late_ticks {self.late} "
              f"max_lag_ms {self.max_lag * 1000:.1f}", flush=True)


class Request(asyncio.Protocol):
    def __init__(self, upstream):
        self.upstream = upstream
        self.buffer = b""
        self.transport = None
        self.answered = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self.answered:
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].decode("latin-1").lower()
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip() == "content-length":
                length = int(value)
            elif name.strip() == "expect" and "100-continue" in value and len(self.buffer) == end + 4:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if len(self.buffer) < end + 4 + length:
            return
        self.answered = True
        self.upstream.start_stream(self.transport)

    def connection_lost(self, exc):
        self.upstream.active.pop(self.transport, None)


async def main(port, pieces, delay):
    loop = asyncio.get_running_loop()
    upstream = Upstream(pieces, delay)
    server = await loop.create_server(lambda: Request(upstream), "127.0.0.1", port, backlog=4096,
                                      reuse_port=True)
    loop.add_signal_handler(signal.SIGUSR1, upstream.report)
    if delay > 0:
        loop.call_at(loop.time() + delay, upstream.tick, loop, loop.time() + delay)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
