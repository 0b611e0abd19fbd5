"""Headless Chromium, driven through test/browser/driver.mjs (playwright-core),
for the chat page suite. Each call is one JSON line each way, bounded by a
timeout so that a hang fails the test instead of the run."""
import contextlib
import functools
import http.server
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading

BROWSER_DIR = os.path.join(os.path.dirname(__file__), "..", "browser")
ARTIFACTS = os.path.join(os.path.dirname(__file__), "..", "artifacts", "browser")


class BrowserError(AssertionError):
    pass


class Browser:
    def __init__(self, extra_args=()):
        """extra_args: more Chromium command-line switches."""
        env = dict(os.environ, RWS_BROWSER_ARGS=json.dumps(list(extra_args)))
        self.proc = subprocess.Popen(["node", "driver.mjs"], cwd=BROWSER_DIR, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.answers = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.answers.put, True),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append, False),
                         daemon=True).start()
        self.next_id = 0

    @staticmethod
    def _pump(stream, sink, mark_end):
        for line in stream:
            sink(line)
        if mark_end:
            sink(None)  # the driver exited

    def call(self, op, timeout=20, **args):
        self.next_id += 1
        self.proc.stdin.write(json.dumps({"id": self.next_id, "op": op, **args}) + "\n")
        self.proc.stdin.flush()
        try:
            line = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise BrowserError(f"browser did not answer {op} within {timeout} s") from None
        if line is None:
            raise BrowserError("browser driver exited: " + "".join(self.stderr)[-2000:])
        answer = json.loads(line)
        if not answer["ok"]:
            raise BrowserError(f"{op} failed: {answer['error']}")
        return answer["result"]

    # --- conveniences ---------------------------------------------------------

    def open(self, url, width=1280, height=800, mobile=False, dark=False, init_script=None):
        """init_script: JavaScript source run in each new document before the page's own."""
        self.call("open", width=width, height=height, mobile=mobile, dark=dark, init_script=init_script)
        return self.call("goto", url=url)

    def eval(self, expression):
        return self.call("eval", expression=expression)

    def wait(self, expression, timeout=10):
        """Waits until the page expression is truthy; returns its value."""
        return self.call("wait", timeout=timeout + 5, expression=expression, timeout_ms=int(timeout * 1000))

    def screenshot(self, name, full_page=False):
        os.makedirs(ARTIFACTS, exist_ok=True)
        return self.call("screenshot", path=os.path.abspath(os.path.join(ARTIFACTS, name + ".png")),
                         full_page=full_page)

    def problems(self):
        return self.call("problems")

    def close(self):
        try:
            self.call("quit", timeout=10)
        except BrowserError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_files(*paths):
    """Serves copies of these files from a loopback HTTP server, for pages of
    another origin than the worker's; yields its base URL (no trailing /)."""
    from harness import free_port
    with tempfile.TemporaryDirectory() as root:
        for path in paths:
            shutil.copy(path, root)
        handler = functools.partial(_QuietHandler, directory=root)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            server.server_close()
