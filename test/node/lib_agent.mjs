// One ResumableClient (clients/js/client.js) driven by JSON commands on stdin,
// one per line; it answers with JSON lines on stdout. Driven by
// test/e2e/test_client_library.py, which checks what it reports against the log.
// Usage: node lib_agent.mjs '<json config>'
//   config: {url, secret, user, tokenTtl?, storagePath?, sessionId?, lastEventId?, capMs?,
//            pingIntervalMs?, connectTimeoutMs?}
import { createHmac } from "node:crypto";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import WebSocket from "ws";
import { ResumableClient } from "../../clients/js/client.js";

const config = JSON.parse(process.argv[2]);
const out = (line) => process.stdout.write(JSON.stringify(line) + "\n");

const b64url = (s) => Buffer.from(s).toString("base64url");
let tokenCalls = 0;
function mint() {
  tokenCalls++;
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ sub: config.user, exp: now + (config.tokenTtl || 3600), aud: "authenticated", role: "authenticated" }));
  const sig = createHmac("sha256", config.secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

// A localStorage-like object kept in a JSON file: survives this process, like a reload.
function fileStorage(path) {
  const read = () => { try { return JSON.parse(readFileSync(path, "utf8")); } catch (e) { return {}; } };
  return {
    getItem: (k) => (k in read() ? read()[k] : null),
    setItem: (k, v) => {
      const all = read();
      all[k] = String(v);
      writeFileSync(path + ".tmp", JSON.stringify(all));
      renameSync(path + ".tmp", path);
    },
    removeItem: (k) => {
      const all = read();
      delete all[k];
      writeFileSync(path + ".tmp", JSON.stringify(all));
      renameSync(path + ".tmp", path);
    },
  };
}

const client = new ResumableClient({
  url: config.url,
  token: async () => mint(),
  sessionId: config.sessionId,
  lastEventId: config.lastEventId,
  storage: config.storagePath ? fileStorage(config.storagePath) : undefined,
  WebSocket,
  backoff: { baseMs: 100, capMs: config.capMs || 1000 },
  pingIntervalMs: config.pingIntervalMs,
  connectTimeoutMs: config.connectTimeoutMs,
});

const events = [];
const states = [];
const resets = [];
const errors = [];
const readies = [];
let replayedInfo = [];
let messageEvents = 0;
client.on("event", (e) => events.push(e));
client.on("message", () => messageEvents++);
client.on("state", (s) => { states.push(s); check(); });
client.on("session_reset", (r) => resets.push(r));
client.on("error", (e) => errors.push(e));
client.on("ready", (r) => { readies.push(r); check(); });
client.on("replayed", (r) => replayedInfo.push(r));
client.on("event", () => check());
client.on("message", () => check());

// Waits of the driver: resolved as soon as their condition holds.
const waits = [];
function check() {
  for (const w of waits.slice()) {
    if (w.cond()) {
      waits.splice(waits.indexOf(w), 1);
      w.done();
    }
  }
}
function waitFor(cond, done) { waits.push({ cond, done }); check(); }

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const cmd = JSON.parse(line);
  switch (cmd.op) {
    case "connect": {
      const t0 = performance.now();
      let liveAt = null;
      const onState = (s) => { if (s === "live" && liveAt === null) { liveAt = performance.now(); check(); } };
      client.on("state", onState);
      client.connect().then(
        (info) => waitFor(() => liveAt !== null, () => {
          client.off("state", onState);
          out({ op: "connected", info, ms_to_live: liveAt - t0, last_event_id: client.lastEventId });
        }),
        (e) => out({ op: "connect_failed", message: String(e.message) }));
      break;
    }
    case "send": {
      const ac = new AbortController();
      client.send(cmd.text, { signal: ac.signal }).then(
        (r) => out({ op: "acked", n: cmd.n, ...r }),
        (e) => out({ op: "send_failed", n: cmd.n, message: String(e.message) }));
      break;
    }
    case "cancel":
      client.cancel();
      break;
    case "wait_event":
      waitFor(() => client.lastEventId >= cmd.id, () => out({ op: "at_event", id: client.lastEventId }));
      break;
    case "wait_ready":
      waitFor(() => readies.length >= cmd.count, () => out({ op: "readies", count: readies.length }));
      break;
    case "wait_state":
      waitFor(() => client.state === cmd.state, () => out({ op: "state", state: cmd.state }));
      break;
    case "wait_streaming":
      // An answer with at least one delta.
      waitFor(() => client.messages.some((m) => m.role === "assistant" && m.status === "streaming" && m.content.length > 0),
        () => out({ op: "streaming" }));
      break;
    case "wait_status":
      waitFor(() => client.messages.some((m) => m.role === "assistant" && m.status === cmd.status),
        () => out({ op: "status", status: cmd.status }));
      break;
    case "flush":
      client.flush();
      out({ op: "flushed" });
      break;
    case "dump":
      out({ op: "dump", events, messages: client.messages, states, resets, errors, readies, replayed: replayedInfo,
        tokenCalls, sessionId: client.sessionId, lastEventId: client.lastEventId, messageEvents });
      break;
    case "close":
      client.close();
      out({ op: "closed" });
      process.exit(0);
  }
});
lines.on("close", () => { client.close(); process.exit(0); });
setTimeout(() => { out({ op: "timeout" }); process.exit(3); }, config.lifetimeMs || 90000).unref();
