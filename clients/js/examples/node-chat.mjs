// A resumable chat from the terminal: node node-chat.mjs "question" ...
// Env: RWS_URL (ws://127.0.0.1:8787), RWS_TOKEN (a JWT), RWS_STATE (file keeping the session).
import { readFileSync, writeFileSync } from "node:fs";
import WebSocket from "ws";
import { ResumableClient } from "../client.js";

const file = process.env.RWS_STATE || "chat-state.json";
const load = () => { try { return JSON.parse(readFileSync(file, "utf8")); } catch { return {}; } };
const storage = {  // localStorage-like, in a file: the next run resumes the same session
  getItem: (k) => load()[k] ?? null,
  setItem: (k, v) => writeFileSync(file, JSON.stringify({ ...load(), [k]: v })),
  removeItem: (k) => { const all = load(); delete all[k]; writeFileSync(file, JSON.stringify(all)); },
};
const client = new ResumableClient({ url: process.env.RWS_URL || "ws://127.0.0.1:8787",
  token: async () => process.env.RWS_TOKEN, storage, WebSocket });
client.on("state", (s) => console.error(`[${s}]`));
client.on("message", (m) => { if (m.role === "assistant" && m.status !== "streaming") console.log(`${m.status}: ${m.content}`); });
await client.connect();
for (const question of process.argv.slice(2)) {
  const { event_id } = await client.send(question);  // survives reconnects and server restarts
  await new Promise((done) => client.on("message", (m) => { if (m.reply_to === event_id && m.status !== "streaming") done(); }));
}
client.close();
