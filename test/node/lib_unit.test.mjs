// Unit tests of clients/js/client.js against a scripted fake WebSocket (no server):
// the edges the cluster tests do not reach. Run: node --test lib_unit.test.mjs
import assert from "node:assert/strict";
import { test } from "node:test";
import { ResumableClient } from "../../clients/js/client.js";

// A fake socket: records what the client sends; the test plays the server.
function fakeSockets() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = new URL(url);
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
      const waiter = sockets.waiter;
      sockets.waiter = null;
      if (waiter) waiter(this);
    }
    send(text) { this.sent.push(JSON.parse(text)); }
    close() { this.readyState = 3; }
    // the server's side
    open() { this.readyState = 1; }
    frame(f) { this.onmessage({ data: JSON.stringify(f) }); }
    ready(sessionId = "s1", lastEventId = 0, resumed = false) {
      this.open();
      this.frame({ type: "ready", session_id: sessionId, last_event_id: lastEventId, resumed, heartbeat_interval_ms: 10000 });
    }
    event(id, event_type, payload = {}) { this.frame({ type: "event", id, event_type, payload, created_at: "now" }); }
    serverClose(code) { this.readyState = 3; this.onclose({ code }); }
  }
  // The next socket the client opens.
  const next = () => new Promise((resolve) => { sockets.waiter = resolve; });
  return { FakeWebSocket, sockets, next };
}

function make(extra = {}) {
  const f = fakeSockets();
  const client = new ResumableClient({ url: "ws://h:1/", token: "t", WebSocket: f.FakeWebSocket,
    backoff: { baseMs: 1, capMs: 5 }, ...extra });
  return { client, ...f };
}

test("URL, dedupe by id, a gap asks for a resume, messages rebuilt", async () => {
  const { client, sockets } = make();
  const events = [];
  client.on("event", (e) => events.push(e.id));
  const connected = client.connect();
  await Promise.resolve();
  await new Promise((r) => setImmediate(r));
  const ws = sockets[0];
  assert.equal(ws.url.pathname, "/ws");
  assert.equal(ws.url.searchParams.get("token"), "t");
  assert.equal(ws.url.searchParams.get("session_id"), null);
  ws.ready();
  assert.equal((await connected).sessionId, "s1");
  assert.equal(client.state, "live");
  ws.event(1, "user_message", { content: "hi", idempotency_key: "k1" });
  ws.event(1, "user_message", { content: "hi", idempotency_key: "k1" });
  ws.event(3, "x");
  assert.deepEqual(ws.sent.at(-1), { type: "resume", last_event_id: 1 });
  ws.event(2, "assistant_started", { message_id: "m", reply_to: 1 });
  ws.event(3, "assistant_delta", { message_id: "m", delta: "He" });
  ws.event(4, "assistant_delta", { message_id: "m", delta: "llo" });
  assert.equal(client.messages[1].content, "Hello");
  ws.event(5, "assistant_done", { message_id: "m", content: "Hello", finish_reason: "length" });
  assert.deepEqual(events, [1, 2, 3, 4, 5]);
  assert.deepEqual(client.messages.map((m) => [m.role, m.status]), [["user", "sent"], ["assistant", "done"]]);
  assert.equal(client.messages[1].finish_reason, "length");
  assert.equal(await client.connect(), await connected); // already ready: at once
  client.close();
  assert.equal(client.state, "closed");
});

test("send(): resolves once on ack, re-sent with the same key after a reconnect, abort stops it", async () => {
  const { client, sockets, next } = make();
  client.connect();
  (await next()).ready();
  const ws = sockets[0];
  const ac = new AbortController();
  const first = client.send("one");
  const aborted = client.send("two", { signal: ac.signal });
  const keys = ws.sent.filter((f) => f.type === "user_message").map((f) => f.idempotency_key);
  assert.equal(keys.length, 2);
  ac.abort();
  await assert.rejects(aborted, { name: "AbortError" });
  assert.deepEqual(client.messages.map((m) => [m.content, m.status]), [["one", "pending"]]);
  ws.serverClose(1006);
  const ws2 = await next();
  assert.equal(ws2.url.searchParams.get("session_id"), "s1");
  assert.equal(ws2.url.searchParams.get("last_event_id"), "0");
  ws2.ready("s1", 0, true);
  assert.equal(client.state, "replaying");
  const resent = ws2.sent.filter((f) => f.type === "user_message");
  assert.deepEqual(resent.map((f) => [f.content, f.idempotency_key]), [["one", keys[0]]]);
  ws2.frame({ type: "replay_done", last_event_id: 0 });
  assert.equal(client.state, "live");
  ws2.frame({ type: "ack", idempotency_key: keys[0], event_id: 1, duplicate: true });
  ws2.frame({ type: "ack", idempotency_key: keys[0], event_id: 1, duplicate: true });
  assert.deepEqual(await first, { event_id: 1, duplicate: true });
  assert.equal(client.messages[0].status, "sent");
  await assert.rejects(client.send(""), TypeError);
  client.close();
});

test("a string token refused with 4001 closes the client; a function is asked again", async () => {
  let { client, next } = make();
  const errors = [];
  client.on("error", (e) => errors.push(e.code));
  const connected = client.connect();
  (await next()).serverClose(4001);
  await assert.rejects(connected, /unauthorized/);
  assert.equal(client.state, "closed");
  assert.deepEqual(errors, ["unauthorized"]);

  let calls = 0;
  ({ client, next } = make({ token: async () => `tok${++calls}` }));
  client.connect();
  const a = await next();
  assert.equal(a.url.searchParams.get("token"), "tok1");
  a.ready();
  a.serverClose(4001);
  const b = await next();
  assert.equal(b.url.searchParams.get("token"), "tok2");
  b.serverClose(1006);
  assert.equal((await next()).url.searchParams.get("token"), "tok2"); // kept when not refused
  client.close();
});

test("4004 and 4003 start a new session and say so; unsent messages go to it", async () => {
  const { client, next } = make({ sessionId: "old", lastEventId: 3 });
  const resets = [];
  client.on("session_reset", (r) => resets.push(r));
  client.connect();
  const a = await next();
  assert.equal(a.url.searchParams.get("session_id"), "old");
  assert.equal(a.url.searchParams.get("last_event_id"), "3");
  const sent = client.send("keep me");
  a.frame({ type: "error", code: "session_not_found", message: "gone" });
  a.serverClose(4004);
  const b = await next();
  assert.equal(b.url.searchParams.get("session_id"), null);
  assert.deepEqual(resets, [{ reason: "session_not_found", sessionId: null, previousSessionId: "old" }]);
  b.ready("new");
  assert.equal(client.sessionId, "new");
  const m = b.sent.find((f) => f.type === "user_message");
  assert.equal(m.content, "keep me");
  b.frame({ type: "ack", idempotency_key: m.idempotency_key, event_id: 1, duplicate: false });
  assert.deepEqual(await sent, { event_id: 1, duplicate: false });
  b.serverClose(4003); // acked, its event not seen yet: it stays in the old session
  const c = await next();
  assert.equal(resets[1].reason, "forbidden");
  c.ready("newer");
  assert.deepEqual(c.sent.filter((f) => f.type === "user_message"), []);
  assert.deepEqual(client.messages, []);
  client.close();
});

test("1009 rejects and drops the largest unsent message; invalid_cursor rebuilds from 1", async () => {
  const { client, next } = make();
  client.connect();
  const a = await next();
  a.ready();
  const small = client.send("s");
  const big = client.send("b".repeat(100));
  a.serverClose(1009);
  await assert.rejects(big, { code: "too_big" });
  const b = await next();
  b.ready("s1", 0, true);
  assert.deepEqual(b.sent.filter((f) => f.type === "user_message").map((f) => f.content), ["s"]);
  b.event(1, "user_message", { content: "s", idempotency_key: b.sent[0].idempotency_key });
  assert.deepEqual(await small, { event_id: 1, duplicate: false }); // seen in the log before its ack
  const resets = [];
  client.on("session_reset", (r) => resets.push(r.reason));
  b.frame({ type: "error", code: "invalid_cursor", message: "beyond" });
  assert.deepEqual(resets, ["invalid_cursor"]);
  assert.equal(client.lastEventId, 0);
  assert.deepEqual(client.messages, []);
  assert.deepEqual(b.sent.at(-1), { type: "resume", last_event_id: 0 });
  client.close();
});

test("server_restarting: reconnects after retry_after_ms; storage round trip", async () => {
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v), removeItem: (k) => store.delete(k) };
  const { client, next } = make({ storage });
  client.connect();
  const a = await next();
  a.ready("s9");
  a.event(1, "assistant_started", { message_id: "m", reply_to: 0 });
  client.send("unsent").catch(() => {});
  a.frame({ type: "server_restarting", retry_after_ms: 150 });
  const t0 = Date.now();
  a.serverClose(1012);
  assert.equal(client.state, "reconnecting");
  await next();
  assert.ok(Date.now() - t0 >= 140, "reconnected before retry_after_ms");
  client.close();
  const saved = JSON.parse(store.get("resumable_ws"));
  assert.equal(saved.session_id, "s9");
  assert.equal(saved.last_event_id, 1);
  assert.deepEqual(saved.pending.map((p) => p.content), ["unsent"]);
  const again = make({ storage });
  assert.equal(again.client.sessionId, "s9");
  assert.equal(again.client.lastEventId, 1);
  assert.deepEqual(again.client.messages.map((m) => [m.role, m.status]), [["assistant", "streaming"], ["user", "pending"]]);
  again.client.close();
});

test("newSession(): clears the conversation, rejects unsent messages, connects without the old session", async () => {
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v), removeItem: (k) => store.delete(k) };
  const { client, sockets, next } = make({ storage });
  const resets = [];
  client.on("session_reset", (r) => resets.push(r));
  client.connect();
  (await next()).ready("s1");
  const ws = sockets[0];
  ws.event(1, "user_message", { content: "old", idempotency_key: "k1" });
  const unsent = client.send("never acknowledged");
  const nextSocket = next();
  client.newSession();
  await assert.rejects(unsent, (e) => e.code === "session_left");
  assert.equal(ws.readyState, 3, "the old connection is closed");
  assert.deepEqual(client.messages, []);
  assert.equal(client.sessionId, null);
  assert.deepEqual(resets, [{ reason: "new_session", sessionId: null, previousSessionId: "s1" }]);
  assert.deepEqual(JSON.parse(store.get("resumable_ws")), { session_id: null, last_event_id: 0, messages: [], pending: [] });
  const ws2 = await nextSocket;
  assert.equal(ws2.url.searchParams.get("session_id"), null);
  ws2.ready("s2");
  assert.equal(client.sessionId, "s2");
  assert.equal(client.state, "live");
  client.close();
});

test("reconnect(): dials at once while waiting out a backoff; nextAttemptAt says when", async () => {
  const { client, sockets, next } = make({ backoff: { baseMs: 60000, capMs: 60000 } });
  client.connect();
  (await next()).ready();
  assert.equal(client.nextAttemptAt, null);
  client.reconnect(); // connected: nothing to do
  assert.equal(sockets.length, 1);
  const before = Date.now();
  sockets[0].serverClose(1006);
  assert.equal(client.state, "reconnecting");
  assert.ok(client.nextAttemptAt >= before && client.nextAttemptAt <= Date.now() + 60000);
  const nextSocket = next();
  client.reconnect();
  const ws2 = await nextSocket; // long before the backoff would have ended
  assert.equal(client.nextAttemptAt, null);
  ws2.ready("s1", 0, true);
  assert.equal(client.state, "replaying");
  client.close();
});
