"""A lean asyncio WebSocket client for the benchmarks, so that thousands of
connections and tens of thousands of frames a second cost the Python side
little: an asyncio.BufferedProtocol (no task per connection, no
allocation per read), server frames cut out
of one buffer, nothing decoded that the caller does not look at, pings
answered, and client frames masked with a zero key (a valid mask that leaves
the payload as it is).

    client = await connect(port, token, on_text, session_id=None)
    ready = await client.ready          # the ready frame, as a dict
    client.send_json({...})

on_text(client, payload) gets every text frame after ready as bytes."""
import asyncio
import json

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ZERO_MASK = b"\0\0\0\0"


class Closed(Exception):
    pass


# One receive buffer for every connection: asyncio calls get_buffer(), recv_into()
# and buffer_updated() in one go, and a fresh 256 KiB bytes object per recv()
# (asyncio.Protocol's way) costs an mmap/munmap each, more than the rest.
SHARED = memoryview(bytearray(256 * 1024))


class WsClient(asyncio.BufferedProtocol):
    def __init__(self, request, on_text):
        self.request = request
        self.on_text = on_text
        self.transport = None
        self.buffer = bytearray()
        self.upgraded = False
        self.fragments = None
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        self.closed = loop.create_future()
        self.session_id = None

    # --- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc):
        if not self.ready.done():
            self.ready.set_exception(Closed(exc or "closed by the server"))
        if not self.closed.done():
            self.closed.set_result(None)

    def get_buffer(self, sizehint):
        return SHARED

    def buffer_updated(self, nbytes):
        buf = self.buffer
        buf += SHARED[:nbytes]
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.fail(Closed(bytes(buf[:end]).decode("latin-1")))
                return
            del buf[:end + 4]
            self.upgraded = True
        pos, size = 0, len(buf)
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2:pos + 10], "big")
                head = 10
            end = pos + head + length
            if end > size:
                break
            first = buf[pos]
            payload = bytes(buf[pos + head:end])
            pos = end
            self.frame(first & 0x80, first & 0x0F, payload)
        if pos:
            del buf[:pos]

    # --- frames ---------------------------------------------------------------

    def frame(self, fin, opcode, payload):
        if opcode == 0 and self.fragments is not None:
            self.fragments.append(payload)
            if fin:
                payload, self.fragments = b"".join(self.fragments), None
                self.text(payload)
        elif opcode == 1:
            if fin:
                self.text(payload)
            else:
                self.fragments = [payload]
        elif opcode == 9:
            self.send_frame(0x8A, payload)  # pong
        elif opcode == 8:
            self.transport.close()

    def text(self, payload):
        if not self.ready.done():
            frame = json.loads(payload)
            if frame.get("type") != "ready":
                self.fail(Closed(f"expected ready, got {frame}"))
                return
            self.session_id = frame["session_id"]
            self.ready.set_result(frame)
            return
        self.on_text(self, payload)

    def send_frame(self, first, payload):
        length = len(payload)
        if length < 126:
            header = bytes((first, 0x80 | length))
        elif length < 65536:
            header = bytes((first, 0x80 | 126)) + length.to_bytes(2, "big")
        else:
            header = bytes((first, 0x80 | 127)) + length.to_bytes(8, "big")
        self.transport.write(header + ZERO_MASK + payload)

    def send_json(self, obj):
        self.send_frame(0x81, json.dumps(obj).encode())

    def fail(self, error):
        if not self.ready.done():
            self.ready.set_exception(error)
        self.transport.abort()

    def close(self):
        if self.transport and not self.transport.is_closing():
            self.transport.abort()


async def connect(port, token, on_text, session_id=None):
    """Opens a connection and returns its client at once (await client.ready)."""
    query = f"token={token}" + (f"&session_id={session_id}" if session_id else "")
    request = (f"GET /ws?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: WsClient(request, on_text), "127.0.0.1", port)
    return client
