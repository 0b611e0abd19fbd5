"""A real PostgreSQL cluster with resumable_ws preloaded, and a WebSocket
client wrapper, for the end-to-end suites.

The cluster is initdb'd into a fresh directory and runs as the `postgres`
user when the tests run as root (Postgres refuses root). Tokens are minted with
PyJWT, independently of the extension's own signing code.
"""
import asyncio
import collections
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid

import jwt
import psycopg2
import websockets

PG_BIN = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                        check=True).stdout.strip()
PG_SHAREDIR = subprocess.run(["pg_config", "--sharedir"], capture_output=True, text=True,
                             check=True).stdout.strip()
JWT_SECRET = "e2e-secret-that-is-long-enough-for-hs256-0123456789"
TIMEOUT = 10  # seconds: the bound on any single wait in these tests
# Worker processes of every cluster a test starts (resumable_ws.workers),
# unless the test sets its own: test/run.sh runs the suites with 1 and 2.
WORKERS = int(os.environ.get("RWS_TEST_WORKERS", "1"))

# Lines that mean a process of the cluster crashed (a crash restarts the
# whole cluster) or an assertion failed inside the server.
CRASH_MARKERS = ("terminated by signal", "TRAP:", "PANIC:", "was terminated by")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, client_ssl=None, **settings):
        # An ssl.SSLContext when the server speaks HTTPS/WSS (test_tls.py):
        # every client of the harness then uses it.
        self.client_ssl = client_ssl
        self.dir = tempfile.mkdtemp(prefix="rws-e2e-")
        self.data = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "server.log")
        self.pg_port = free_port()
        self.ws_port = free_port()
        self.run_as = "postgres" if os.geteuid() == 0 else None
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._pg(["initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync",
                  "-E", "UTF8", "--locale=C"])
        conf = {
            "shared_preload_libraries": "'resumable_ws'",
            "listen_addresses": "''",
            "port": self.pg_port,
            "unix_socket_directories": f"'{self.dir}'",
            "max_connections": 50,
            "resumable_ws.port": self.ws_port,
            "resumable_ws.listen_addresses": "'127.0.0.1'",
            "resumable_ws.jwt_secret": f"'{JWT_SECRET}'",
            # Suites about the log and the protocol want no generations;
            # the generation suites set a provider.
            "resumable_ws.llm_provider": "none",
            "resumable_ws.workers": WORKERS,
        }
        conf.update(settings)
        self.workers = int(conf["resumable_ws.workers"])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            for key, value in conf.items():
                f.write(f"{key} = {value}\n")
        self._conn = None

    @classmethod
    def standby_of(cls, primary, **settings):
        """A hot standby of primary (pg_basebackup -R: streaming replication
        from it), with ports of its own; settings are added to what it copied
        from the primary's configuration."""
        self = cls.__new__(cls)
        self.client_ssl = primary.client_ssl
        self.workers = int(settings.get("resumable_ws.workers", primary.workers))
        self.dir = tempfile.mkdtemp(prefix="rws-e2e-standby-")
        self.data = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "server.log")
        self.pg_port = free_port()
        self.ws_port = free_port()
        self.run_as = primary.run_as
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._pg(["pg_basebackup", "-h", primary.dir, "-p", str(primary.pg_port), "-U", "postgres",
                  "-D", self.data, "-R", "-X", "stream", "--no-sync"])
        conf = {"port": self.pg_port, "unix_socket_directories": f"'{self.dir}'",
                "resumable_ws.port": self.ws_port, **settings}
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            for key, value in conf.items():
                f.write(f"{key} = {value}\n")
        self._conn = None
        return self

    # --- process control ---------------------------------------------------

    def _pg(self, args, check=True):
        cmd = [os.path.join(PG_BIN, args[0])] + args[1:]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--"] + cmd
        # From /: the checkout (e.g. under /root, mode 0700) may be where the
        # postgres user cannot go, and Postgres' programs chdir back to their
        # working directory.
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60, cwd="/")

    def start(self, wait_healthy=True):
        self._pg(["pg_ctl", "-D", self.data, "-l", self.logfile, "-w", "-t", "30", "start"])
        if wait_healthy:
            self.wait_healthy()

    def stop(self, mode="fast"):
        self.close_sql()
        self._pg(["pg_ctl", "-D", self.data, "-w", "-t", "30", "-m", mode, "stop"])

    def restart(self, mode="fast"):
        self.close_sql()
        self._pg(["pg_ctl", "-D", self.data, "-l", self.logfile, "-w", "-t", "30", "-m", mode,
                  "restart"])
        self.wait_healthy()

    def promote(self):
        """pg_ctl promote: a standby becomes a primary, without a restart."""
        self.close_sql()
        self._pg(["pg_ctl", "-D", self.data, "-w", "-t", "30", "promote"])

    def kill_hard(self):
        """SIGKILL to the postmaster and every process of it at once, as a
        machine that dies: nothing is flushed, no backend says goodbye."""
        self.close_sql()
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            postmaster = int(f.readline())
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        for pid in [postmaster] + [int(c) for c in children]:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass

    def destroy(self):
        self.close_sql()
        self._pg(["pg_ctl", "-D", self.data, "-w", "-t", "30", "-m", "immediate", "stop"],
                 check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        with open(self.logfile, errors="replace") as f:
            return f.read()

    def crash_lines(self):
        return [line for line in self.log().splitlines()
                if any(marker in line for marker in CRASH_MARKERS)]

    # --- SQL ---------------------------------------------------------------

    def connect_sql(self):
        return psycopg2.connect(host=self.dir, port=self.pg_port, user="postgres",
                                dbname="postgres", connect_timeout=TIMEOUT)

    def sql(self, query, params=None):
        if self._conn is None or self._conn.closed:
            self._conn = self.connect_sql()
            self._conn.autocommit = True
        with self._conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else None

    def close_sql(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def reload(self, **settings):
        for key, value in settings.items():
            self.sql(f"ALTER SYSTEM SET {key} = %s", (str(value),))
        self.sql("SELECT pg_reload_conf()")

    # --- workers -------------------------------------------------------------

    def running_worker_pids(self):
        """The pids of the workers running now, sorted (no wait)."""
        rows = self.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'resumable_ws worker' "
                        "ORDER BY pid")
        return [r[0] for r in rows]

    def worker_pid(self):
        """The pid of a worker now running, or None. With several workers it
        is one of them (the lowest pid): a test about "the" worker of a
        connection uses workers_serving(), one about all of them
        worker_pids()."""
        pids = self.running_worker_pids()
        return pids[0] if pids else None

    def worker_pids(self, timeout=TIMEOUT):
        """Every worker's pid, sorted, once all self.workers of them run."""
        return self.wait_for(lambda: (lambda pids: len(pids) == self.workers and pids)(self.running_worker_pids()),
                             timeout, f"{self.workers} worker(s) in pg_stat_activity")

    def connection_workers(self, session_id):
        """The worker pid of each open connection of the session
        (resumable_ws.connections()), as a Counter."""
        rows = self.sql("SELECT worker_pid FROM resumable_ws.connections() WHERE session_id = %s",
                        (str(session_id),))
        return collections.Counter(r[0] for r in rows)

    def workers_serving(self, session_id, timeout=TIMEOUT):
        """The pids of the workers serving the session's open connections,
        once it has one."""
        return set(self.wait_for(lambda: self.connection_workers(session_id), timeout,
                                 f"a connection of session {session_id} in connections()"))

    def terminate_workers(self, pids):
        """pg_terminate_backend (SIGTERM) to each worker; returns the pids."""
        pids = sorted(pids)
        for pid in pids:
            self.sql("SELECT pg_terminate_backend(%s)", (pid,))
        return pids

    def wait_workers_replaced(self, old_pids, timeout=30):
        """Waits until every worker runs again and none of old_pids is among
        them (the postmaster restarts a worker alone); returns the pids."""
        old = set(old_pids)
        return self.wait_for(lambda: (lambda pids: len(pids) == self.workers and not old & set(pids) and pids)(
            self.running_worker_pids()), timeout, f"workers {sorted(old)} replaced")

    @contextlib.contextmanager
    def frozen_workers(self):
        """SIGSTOP to every worker for the block, SIGCONT after: the port
        accepts TCP connections but nothing answers, on any worker."""
        pids = self.worker_pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield pids
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

    def session_owner(self, session_id):
        """The pid holding the session's owner lock (the worker that runs its
        generations; held while one is queued or running), or None. The
        lock's classid/objid fold the 128-bit id into 64 bits
        (src/session_owner.cpp)."""
        b = uuid.UUID(str(session_id)).bytes
        w = [int.from_bytes(b[i:i + 4], "big") for i in (0, 4, 8, 12)]
        rows = self.sql("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 21079 AND granted "
                        "AND classid::bigint = %s AND objid::bigint = %s", (w[0] ^ w[2], w[1] ^ w[3]))
        return rows[0][0] if rows else None

    def metric(self, name):
        """One unlabelled sample of GET /metrics, as a float."""
        status, body = self.http("/metrics")
        assert status == 200, (status, body)
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.split(" ")[1])
        raise AssertionError(f"{name} not in /metrics")

    # --- HTTP ---------------------------------------------------------------

    def http(self, path, method="GET"):
        scheme = "https" if self.client_ssl else "http"
        request = urllib.request.Request(f"{scheme}://127.0.0.1:{self.ws_port}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=self.client_ssl) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def wait_healthy(self, timeout=30):
        """Creates the extension if needed, then waits until /healthz says ok."""
        deadline = time.monotonic() + timeout
        self.sql("CREATE EXTENSION IF NOT EXISTS resumable_ws")
        last = None
        while time.monotonic() < deadline:
            try:
                status, body = self.http("/healthz")
                if status == 200:
                    return json.loads(body)
                last = (status, body)
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise AssertionError(f"worker not healthy after {timeout}s: {last}\n{self.log()[-3000:]}")

    def wait_for(self, predicate, timeout=TIMEOUT, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    # --- clients ----------------------------------------------------------------

    def ws_url(self, token=None, **params):
        query = []
        if token is not None:
            query.append(f"token={token}")
        query += [f"{k}={v}" for k, v in params.items()]
        scheme = "wss" if self.client_ssl else "ws"
        return f"{scheme}://127.0.0.1:{self.ws_port}/ws" + ("?" + "&".join(query) if query else "")

    async def connect(self, user=None, token=None, **params):
        user = user or str(uuid.uuid4())
        token = token if token is not None else make_token(user)
        tls = {"ssl": self.client_ssl} if self.client_ssl else {}
        ws = await websockets.connect(self.ws_url(token, **params), open_timeout=TIMEOUT,
                                      close_timeout=2, ping_interval=None, max_size=None, **tls)
        return Client(ws, user)

    async def new_session(self, **kwargs):
        """A connection to a new session, past its ready frame."""
        client = await self.connect(**kwargs)
        await client.ready()
        return client

    async def connect_placed(self, **kwargs):
        """A connection past its ready frame, and the pid of the worker that
        serves it (from connections(): the session's one new record)."""
        session = kwargs.get("session_id")
        before = self.connection_workers(session) if session else collections.Counter()
        client = await self.connect(**kwargs)
        await client.ready()
        after = self.wait_for(
            lambda: (lambda now: sum(now.values()) == sum(before.values()) + 1 and now)(
                self.connection_workers(client.session_id)),
            what="the new connection in connections()")
        (pid,) = (after - before).elements()
        return client, pid

    async def connect_on(self, pid, attempts=64, **kwargs):
        """A connection (past ready) served by worker pid: connects until the
        kernel hands one to it. Those that went elsewhere stay open until
        then, so the session's records count only up."""
        misplaced = []
        try:
            for _ in range(attempts):
                client, served_by = await self.connect_placed(**kwargs)
                if served_by == pid:
                    return client
                misplaced.append(client)
            raise AssertionError(f"no connection reached worker {pid} in {attempts} attempts")
        finally:
            for client in misplaced:
                await client.close()


def make_token(sub, secret=JWT_SECRET, algorithm="HS256", ttl=3600, headers=None, **claims):
    payload = {"sub": sub, "exp": int(time.time()) + ttl, "aud": "authenticated", "role": "authenticated"}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret, algorithm=algorithm, headers=headers)


class Closed(Exception):
    pass


class Client:
    """A connection with bounded waits and protocol-level helpers."""

    def __init__(self, ws, user):
        self.ws = ws
        self.user = user
        self.session_id = None

    async def send(self, frame):
        await self.ws.send(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))

    async def recv(self, timeout=TIMEOUT):
        try:
            text = await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.ConnectionClosed as e:
            raise Closed(e.code) from e
        return json.loads(text)

    async def expect(self, frame_type, timeout=TIMEOUT):
        frame = await self.recv(timeout)
        assert frame["type"] == frame_type, f"expected {frame_type}, got {frame}"
        return frame

    async def ready(self):
        frame = await self.expect("ready")
        self.session_id = frame["session_id"]
        return frame

    async def events(self, after, upto, timeout=TIMEOUT, allow=()):
        """Receives events after..upto and asserts they come exactly as
        after+1, after+2, …; frames whose type is in allow are skipped."""
        got = []
        expected = after + 1
        deadline = time.monotonic() + timeout
        while expected <= upto:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            if frame["type"] in allow:
                continue
            assert frame["type"] == "event", f"expected event {expected}, got {frame}"
            assert frame["id"] == expected, f"expected event {expected}, got {frame['id']}"
            got.append(frame)
            expected += 1
        return got

    async def close_code(self, timeout=TIMEOUT):
        """Reads until the server closes; returns (code, frames before it)."""
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = await asyncio.wait_for(self.ws.recv(), max(0.01, deadline - time.monotonic()))
                frames.append(json.loads(text))
            except websockets.ConnectionClosed as e:
                return e.code, frames

    async def user_message(self, content, key=None):
        key = key or str(uuid.uuid4())
        await self.send({"type": "user_message", "content": content, "idempotency_key": key})
        return key

    async def close(self):
        await self.ws.close()


async def connect_when_back(cluster, timeout=30, **kwargs):
    """Reconnects until the worker accepts again (after a restart)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client = await cluster.connect(**kwargs)
            await client.ready()
            return client
        except (OSError, websockets.InvalidHandshake, websockets.ConnectionClosed, Closed,
                asyncio.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


class RawClient:
    """A WebSocket client that does only what a test tells it: it never
    answers pings and reads only when asked, like a stalled or vanished
    peer. Frames from the server are unmasked, as RFC 6455 requires."""

    def __init__(self, cluster, token, receive_buffer=None):
        import base64
        import os as _os
        self.sock = socket.socket()
        if receive_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", cluster.ws_port))
        if cluster.client_ssl:
            self.sock = cluster.client_ssl.wrap_socket(self.sock, server_hostname="127.0.0.1")
        key = base64.b64encode(_os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /ws?token={token} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            .encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    @classmethod
    def ready(cls, cluster):
        """A raw client of a new session, past its ready frame."""
        client = cls(cluster, make_token(str(uuid.uuid4())))
        opcode, payload = next(client.frames())
        assert opcode == 1 and json.loads(payload)["type"] == "ready"
        return client

    def send_frame(self, opcode, payload, masked=True, fin=True):
        """Sends one frame as given (clients must mask; tests may not)."""
        import os as _os
        header = bytes([(0x80 if fin else 0) | opcode])
        length = len(payload)
        mask_bit = 0x80 if masked else 0
        if length < 126:
            header += bytes([mask_bit | length])
        elif length < 65536:
            header += bytes([mask_bit | 126]) + length.to_bytes(2, "big")
        else:
            header += bytes([mask_bit | 127]) + length.to_bytes(8, "big")
        if masked:
            key = _os.urandom(4)
            header += key
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + payload)

    def _read(self, n, deadline):
        while len(self.buffer) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def frames(self, timeout=TIMEOUT):
        """Yields (opcode, payload) until the server closes or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            header = self._read(2, deadline)
            opcode, length = header[0] & 0x0F, header[1] & 0x7F
            if length == 126:
                length = int.from_bytes(self._read(2, deadline), "big")
            elif length == 127:
                length = int.from_bytes(self._read(8, deadline), "big")
            yield opcode, self._read(length, deadline)

    def close_code(self, timeout=TIMEOUT):
        """Reads everything; returns the close code, or None on EOF without one."""
        try:
            for opcode, payload in self.frames(timeout):
                if opcode == 8:
                    return int.from_bytes(payload[:2], "big")
        except EOFError:
            return None

    def wait_eof(self, timeout=TIMEOUT):
        """Returns seconds until the server dropped the connection."""
        started = time.monotonic()
        try:
            for _ in self.frames(timeout):
                pass
        except EOFError:
            return time.monotonic() - started
        except (ConnectionResetError, socket.timeout):
            raise

    def close(self):
        self.sock.close()
