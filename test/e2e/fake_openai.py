"""A fake OpenAI-compatible chat-completions server on loopback, for the
generation tests. It runs its own asyncio loop in a thread, records every
request, and answers each one with the next scripted reply (or a default
stream), so a test can shape exactly what the worker's LLM thread reads:
chunking, delays, stalls, error statuses and garbage.
"""
import asyncio
import json
import threading

from harness import TIMEOUT, free_port


class Stream:
    """A 200 text/event-stream answer made of `pieces` of text."""

    def __init__(self, pieces, finish_reason="stop", chunking="event", delay=0.0,
                 stall_after=None, done=True, crlf=False, keepalives=False, garbage_lines=False,
                 drop_after=None):
        self.pieces = list(pieces)
        self.finish_reason = finish_reason
        self.chunking = chunking      # event: one write per event; split: 3-byte writes; batch: one write
        self.delay = delay            # seconds between events
        self.stall_after = stall_after  # stop sending (but stay connected) after this many pieces
        self.done = done              # send data: [DONE]
        self.crlf = crlf              # \r\n line endings
        self.keepalives = keepalives  # SSE comments between events
        self.garbage_lines = garbage_lines  # malformed data lines between events
        self.drop_after = drop_after  # close the connection abruptly after this many pieces

    @property
    def text(self):
        return "".join(self.pieces)

    def events(self):
        nl = "\r\n" if self.crlf else "\n"
        out = []
        for n, piece in enumerate(self.pieces):
            chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            if n == 0:
                chunk["choices"][0]["delta"]["role"] = "assistant"
            event = f"data: {json.dumps(chunk)}{nl}{nl}"
            if self.keepalives:
                event = f": keep-alive{nl}{nl}" + event
            if self.garbage_lines:
                event = f"data: {{not json{nl}{nl}" + event
            out.append(event)
        if self.finish_reason is not None:
            final = {"choices": [{"index": 0, "delta": {}, "finish_reason": self.finish_reason}]}
            out.append(f"data: {json.dumps(final)}{nl}{nl}")
        if self.done:
            out.append(f"data: [DONE]{nl}{nl}")
        return out


class Status:
    """A non-2xx answer with a JSON error body."""

    def __init__(self, code, body=None, retry_after=None):
        self.code = code
        self.body = body if body is not None else json.dumps(
            {"error": {"message": "Incorrect API key provided: sk-***", "type": "fake_error"}})
        self.retry_after = retry_after


class Raw:
    """A 200 answer whose body is these bytes, as they are."""

    def __init__(self, body):
        self.body = body


class Request:
    def __init__(self, path, headers, body):
        self.path = path
        self.headers = headers
        self.body = body
        self.disconnected = threading.Event()  # the client went away before the end


class FakeOpenAI:
    def __init__(self):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.requests = []
        self.sent = []          # the text each stream answer carried, by request
        self.active = 0         # requests being answered now
        self.max_active = 0
        self._scripts = []
        self._cond = threading.Condition()
        self._loop = None
        self._thread = None
        self._stopping = None

    # --- control, from the test's thread ------------------------------------

    def start(self):
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(TIMEOUT), "fake upstream did not start"

    def stop(self):
        if self._loop:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(TIMEOUT)

    def script(self, *replies):
        """The next requests get these replies, in order."""
        with self._cond:
            self._scripts.extend(replies)

    def reset(self):
        with self._cond:
            self._scripts.clear()
            self.requests.clear()
            self.sent.clear()
            self.max_active = self.active

    def wait_requests(self, count, timeout=TIMEOUT):
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.requests) >= count, timeout), \
                f"expected {count} upstream requests, got {len(self.requests)}"
            return list(self.requests)

    @staticmethod
    def default_reply(body):
        """An answer derived from the request: deterministic and distinct per message."""
        last = body["messages"][-1]["content"]
        words = f"Answer to «{last}» in {len(body['messages'])} messages, with a tail.".split(" ")
        return Stream([w + " " for w in words[:-1]] + [words[-1]])

    # --- the server, on its own thread ---------------------------------------

    def _run(self, ready):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._stopping = asyncio.Event()

        async def main():
            server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            ready.set()
            await self._stopping.wait()
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            await server.wait_closed()

        try:
            self._loop.run_until_complete(main())
        finally:
            self._loop.close()

    async def _handle(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            parsed = json.loads(body)
            request = Request(path, headers, parsed)
            with self._cond:
                reply = self._scripts.pop(0) if self._scripts else self.default_reply(parsed)
                self.requests.append(request)
                self.sent.append(reply.text if isinstance(reply, Stream) else None)
                self.active += 1
                self.max_active = max(self.max_active, self.active)
                self._cond.notify_all()
            released = []

            def release():
                # An answer stops counting as active before its last words
                # go out: the worker may start the next one once it reads them.
                if not released:
                    released.append(True)
                    with self._cond:
                        self.active -= 1

            try:
                await self._answer(reply, reader, writer, request, release)
            except ConnectionError:
                request.disconnected.set()
                raise
            finally:
                release()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _answer(self, reply, reader, writer, request, release):
        if isinstance(reply, Status):
            extra = f"Retry-After: {reply.retry_after}\r\n" if reply.retry_after is not None else ""
            body = reply.body.encode()
            writer.write(f"HTTP/1.1 {reply.code} Error\r\nContent-Type: application/json\r\n{extra}"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")

        async def send(data):
            # One HTTP chunk per write, so the worker sees these boundaries.
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()

        if isinstance(reply, Raw):
            await send(reply.body)
            await send(b"")
            return
        events = [e.encode() for e in reply.events()]
        if reply.chunking == "batch":
            release()
            await send(b"".join(events))
        else:
            for n, event in enumerate(events):
                if n == len(reply.pieces) - 1:
                    release()
                if reply.drop_after is not None and n == reply.drop_after:
                    writer.transport.abort()
                    return
                if reply.stall_after is not None and n == reply.stall_after:
                    # Connected but silent until the client gives up.
                    await reader.read()
                    request.disconnected.set()
                    return
                if reply.chunking == "split":
                    for i in range(0, len(event), 3):
                        await send(event[i:i + 3])
                else:
                    await send(event)
                if reply.delay:
                    await asyncio.sleep(reply.delay)
        await send(b"")


def serve_forever(port, pieces, delay):
    """A fast upstream for the benchmark: every request gets `pieces` pieces,
    `delay` seconds apart. Runs until killed."""
    fake = FakeOpenAI()
    fake.port = port
    fake.default_reply = lambda body: Stream(["tok "] * pieces, delay=delay)
    fake.start()
    threading.Event().wait()


if __name__ == "__main__":
    import sys
    serve_forever(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
