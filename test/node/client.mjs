// One client session with Node's `ws`, an implementation independent of the
// Python suites. Usage: node client.mjs <ws base url> <token> <other-user token>
// Prints one JSON line with what it saw; the Python test asserts on it.
import { randomUUID } from "node:crypto";
import WebSocket from "ws";

const [base, token, otherToken] = process.argv.slice(2);
const deadline = setTimeout(() => { console.error("timed out"); process.exit(2); }, 20000);

function open(url) {
  const ws = new WebSocket(url);
  const frames = [];
  const waiters = [];
  ws.on("message", (data, isBinary) => {
    const frame = { binary: isBinary, ...JSON.parse(data.toString()) };
    const waiter = waiters.shift();
    waiter ? waiter(frame) : frames.push(frame);
  });
  const closed = new Promise((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  const next = () => (frames.length ? Promise.resolve(frames.shift()) : new Promise((r) => waiters.push(r)));
  const ready = new Promise((resolve, reject) => { ws.on("open", resolve); ws.on("error", reject); });
  return { ws, next, closed, ready };
}

const out = {};
// 1. New session, a user message, its ack and its event.
let c = open(`${base}?token=${token}`);
await c.ready;
out.ready = await c.next();
const key = randomUUID();
c.ws.send(JSON.stringify({ type: "user_message", content: "hello from node", idempotency_key: key }));
out.first = [await c.next(), await c.next()];
c.ws.send(JSON.stringify({ type: "ping", from: "node" }));
out.pong = await c.next();
c.ws.close(1000);
out.closed_by_client = await c.closed;

// 2. Resume from 0: replay, replay_done, then the duplicate ack.
c = open(`${base}?token=${token}&session_id=${out.ready.session_id}&last_event_id=0`);
await c.ready;
out.resumed = [await c.next(), await c.next(), await c.next()];
c.ws.send(JSON.stringify({ type: "user_message", content: "hello from node", idempotency_key: key }));
out.duplicate = await c.next();
c.ws.close(1000);
await c.closed;

// 3. The server's close codes as Node sees them.
c = open(`${base}?token=${otherToken}&session_id=${out.ready.session_id}`);
out.forbidden = [await c.next(), await c.closed];
c = open(`${base}?token=not-a-token`);
out.unauthorized = [await c.next(), await c.closed];

clearTimeout(deadline);
console.log(JSON.stringify(out));
