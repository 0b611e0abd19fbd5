// resumable-ws-client: the client side of the resumable_ws protocol
// (PROTOCOL.md §3, §5) as one dependency-free ES module for browsers and
// Node >= 18. It keeps a session's event log in order across reconnects,
// server restarts and reloads, re-sends unacknowledged messages with their
// idempotency key, and rebuilds the conversation from the events.

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30000;
const CONNECT_TIMEOUT_MS = 10000;
const PING_MAX_MS = 10000;
const SAVE_DELAY_MS = 250;
const OPEN = 1; // WebSocket.OPEN, the same in browsers and `ws`

/**
 * @typedef {'connecting'|'replaying'|'live'|'reconnecting'|'closed'} State
 * @typedef {{id: number, event_type: string, payload: any, created_at: string}} ResumableEvent
 * @typedef {'pending'|'sent'|'streaming'|'done'|'cancelled'|'error'|'interrupted'} MessageStatus
 * @typedef {{id: string, role: 'user'|'assistant', content: string, status: MessageStatus,
 *   event_id?: number, reply_to?: number, finish_reason?: string,
 *   error?: {code: string, message: string}}} Message
 * @typedef {{getItem(key: string): string|null, setItem(key: string, value: string): void,
 *   removeItem(key: string): void}} StorageLike
 * @typedef {{url: string, token: string|(() => string|Promise<string>), sessionId?: string,
 *   lastEventId?: number, storage?: StorageLike, storageKey?: string, WebSocket?: any,
 *   backoff?: {baseMs?: number, capMs?: number}, pingIntervalMs?: number,
 *   connectTimeoutMs?: number}} ResumableClientOptions
 */

// Web Crypto for idempotency keys: global in browsers and Node >= 19; Node 18
// has it only in node:crypto (a computed specifier, so that bundlers for the
// browser leave the import alone).
const NODE_CRYPTO = "node:crypto";
const webCrypto = globalThis.crypto && globalThis.crypto.getRandomValues ? globalThis.crypto
  : typeof process === "object" && process.versions && process.versions.node
    ? (await import(NODE_CRYPTO)).webcrypto : null;

function uuid4() {
  const c = webCrypto;
  if (typeof c.randomUUID === "function") return c.randomUUID();
  const b = c.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function abortError(signal) {
  if (signal && signal.reason instanceof Error) return signal.reason;
  const e = new Error("send() was aborted");
  e.name = "AbortError";
  return e;
}

export class ResumableClient {
  /** @param {ResumableClientOptions} options */
  constructor(options) {
    if (!options || typeof options.url !== "string") throw new TypeError("options.url is required");
    if (typeof options.token !== "string" && typeof options.token !== "function") {
      throw new TypeError("options.token must be a string or a function");
    }
    if (!webCrypto) throw new TypeError("no Web Crypto (crypto.getRandomValues) for idempotency keys");
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError("no WebSocket: pass options.WebSocket (e.g. from the 'ws' package)");
    }
    this._url = options.url.replace(/\/+$/, "") + "/ws";
    this._tokenSource = options.token;
    this._token = null;
    this._storage = options.storage || null;
    this._storageKey = options.storageKey || "resumable_ws";
    this._backoffBase = (options.backoff && options.backoff.baseMs) || BACKOFF_BASE_MS;
    this._backoffCap = (options.backoff && options.backoff.capMs) || BACKOFF_CAP_MS;
    this._pingMaxMs = options.pingIntervalMs || PING_MAX_MS;
    this._connectTimeoutMs = options.connectTimeoutMs || CONNECT_TIMEOUT_MS;
    /** @type {Map<string, Function[]>} */
    this._listeners = new Map();

    // The conversation: log items in id order, then messages not yet in the log.
    this._sessionId = null;
    this._cursor = 0;
    /** @type {Message[]} */
    this._items = [];
    this._byId = new Map(); // message id -> item of _items
    /** @type {{key: string, content: string, acked: null|{event_id: number, duplicate: boolean}}[]} */
    this._pending = [];
    this._waiters = new Map(); // idempotency key -> {resolve, reject, cleanup}
    this._restore(options);

    this._state = "closed";
    this._started = false;
    this._closed = false;
    this._ws = null;
    this._ready = false;
    this._attempt = 0;
    this._timers = { reconnect: null, connect: null, ping: null, save: null };
    this._nextAttemptAt = 0;
    this._freshToken = false;
    this._retryAfterMs = null;
    this._lastReceived = 0;
    this._pingSentAt = 0;
    this._replayed = 0;
    this._cancelQueued = false;
    this._connectWaiters = [];
    this._readyInfo = null;
    this._onPageHide = () => this.flush();
  }

  /** The session's id (null until the first ready of a new session). */
  get sessionId() { return this._sessionId; }
  /** The id of the newest event applied (0 before any). */
  get lastEventId() { return this._cursor; }
  /** The current connection state. */
  get state() { return this._state; }
  /** @returns {Message[]} snapshots of the conversation, log order, unsent messages last */
  get messages() {
    return this._items.map((m) => ({ ...m })).concat(this._pending.map((p) => this._pendingMessage(p)));
  }

  /**
   * @param {string} name 'event'|'message'|'state'|'ready'|'replayed'|'session_reset'|'error'
   * @param {Function} fn
   */
  on(name, fn) {
    if (!this._listeners.has(name)) this._listeners.set(name, []);
    this._listeners.get(name).push(fn);
    return this;
  }

  off(name, fn) {
    const list = this._listeners.get(name);
    if (list) {
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    }
    return this;
  }

  _emit(name, value) {
    const list = this._listeners.get(name);
    if (!list) return;
    for (const fn of list.slice()) {
      try {
        fn(value);
      } catch (e) {
        // A faulty listener must not break the protocol state; report it as uncaught.
        queueMicrotask(() => { throw e; });
      }
    }
  }

  _setState(state) {
    if (this._state === state) return;
    this._state = state;
    this._emit("state", state);
  }

  /** Opens the connection; resolves with the first ready's information. */
  connect() {
    if (this._closed) return Promise.reject(new Error("client is closed"));
    if (this._ready && this._readyInfo) return Promise.resolve(this._readyInfo);
    const p = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    if (!this._started) {
      this._started = true;
      if (typeof globalThis.addEventListener === "function") globalThis.addEventListener("pagehide", this._onPageHide);
      this._dial();
    }
    return p;
  }

  /**
   * Sends a user message; resolves once the server acknowledged it (it is in the log).
   * @param {string} text
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<{event_id: number, duplicate: boolean}>}
   */
  send(text, options = {}) {
    if (typeof text !== "string" || text.length === 0) return Promise.reject(new TypeError("text must be a non-empty string"));
    if (this._closed) return Promise.reject(new Error("client is closed"));
    const { signal } = options;
    if (signal && signal.aborted) return Promise.reject(abortError(signal));
    const entry = { key: uuid4(), content: text, acked: null };
    this._pending.push(entry);
    this._saveNow(); // an unsent message must survive a reload from here on
    this._emit("message", this._pendingMessage(entry));
    const promise = new Promise((resolve, reject) => {
      let onAbort = null;
      const cleanup = () => { if (signal && onAbort) signal.removeEventListener("abort", onAbort); };
      if (signal) {
        onAbort = () => {
          // Stops re-sending; a copy already on the wire may still reach the log.
          this._waiters.delete(entry.key);
          const i = this._pending.indexOf(entry);
          if (i >= 0) this._pending.splice(i, 1);
          this._saveNow();
          reject(abortError(signal));
        };
        signal.addEventListener("abort", onAbort, { once: true });
      }
      this._waiters.set(entry.key, { resolve, reject, cleanup });
    });
    if (this._live()) this._sendFrame({ type: "user_message", content: text, idempotency_key: entry.key });
    return promise;
  }

  /** Stops the session's running answer, from whichever client started it. */
  cancel() {
    if (!this._live() || !this._sendFrame({ type: "cancel" })) this._cancelQueued = true;
  }

  /**
   * Leaves the current session for a new one (a "new chat"): the conversation
   * is cleared, unacknowledged send()s reject with code 'session_left', and
   * the next connection starts a new session ('session_reset' says so).
   */
  newSession() {
    if (this._closed) return;
    const previous = this._sessionId;
    this._resetConversation();
    const err = Object.assign(new Error("the session was left for a new one"), { code: "session_left" });
    for (const p of this._pending) {
      const w = this._waiters.get(p.key);
      this._waiters.delete(p.key);
      if (w) { w.cleanup(); w.reject(err); }
    }
    this._pending = [];
    this._cancelQueued = false;
    this._saveNow();
    this._emit("session_reset", { reason: "new_session", sessionId: null, previousSessionId: previous });
    if (!this._started) return;
    const ws = this._ws;
    if (ws) {
      this._onClose(1000);
      try { ws.close(1000); } catch (e) { /* not open yet */ }
    }
    this._attempt = 0;
    this._reconnectIn(0);
  }

  /**
   * Tries to connect now when waiting to reconnect (a "retry now" button, or
   * the browser coming back online); does nothing while connected or connecting.
   */
  reconnect() {
    if (this._closed || !this._started || this._ws || this._timers.reconnect === null) return;
    this._attempt = 0;
    this._reconnectIn(0);
  }

  /** When the next connection attempt is due (ms since the epoch), or null if none is waiting. */
  get nextAttemptAt() { return this._timers.reconnect === null ? null : this._nextAttemptAt; }

  /** Writes the session, cursor, conversation and unsent messages to storage now. */
  flush() { this._saveNow(); }

  /** Closes the connection for good; unacknowledged send()s reject (they stay in storage). */
  close() {
    if (this._closed) return;
    this._closed = true;
    if (typeof globalThis.removeEventListener === "function") globalThis.removeEventListener("pagehide", this._onPageHide);
    clearTimeout(this._timers.reconnect);
    clearTimeout(this._timers.connect);
    clearInterval(this._timers.ping);
    const ws = this._ws;
    this._ws = null;
    this._ready = false;
    if (ws) {
      ws.onmessage = ws.onclose = null;
      try { ws.close(1000); } catch (e) { /* not open yet */ }
    }
    this._saveNow();
    const err = new Error("client closed");
    for (const w of this._waiters.values()) { w.cleanup(); w.reject(err); }
    this._waiters.clear();
    for (const w of this._connectWaiters) w.reject(err);
    this._connectWaiters = [];
    this._setState("closed");
  }

  // ---- storage ------------------------------------------------------------

  _restore(options) {
    let saved = null;
    if (this._storage) {
      try { saved = JSON.parse(this._storage.getItem(this._storageKey) || "null"); } catch (e) { saved = null; }
    }
    if (saved && typeof saved === "object") {
      if (Array.isArray(saved.pending)) {
        this._pending = saved.pending.filter((p) => p && typeof p.key === "string" && typeof p.content === "string")
          .map((p) => ({ key: p.key, content: p.content, acked: null }));
      }
      const sameSession = !options.sessionId || options.sessionId === saved.session_id;
      if (sameSession && typeof saved.session_id === "string" && Number.isInteger(saved.last_event_id)) {
        this._sessionId = saved.session_id;
        this._cursor = saved.last_event_id;
        if (Array.isArray(saved.messages)) {
          this._items = saved.messages.filter((m) => m && typeof m.id === "string" && typeof m.content === "string");
        }
      }
    }
    if (options.sessionId && options.sessionId !== this._sessionId) {
      this._sessionId = options.sessionId;
      this._cursor = 0;
      this._items = [];
    }
    if (options.lastEventId !== undefined && options.lastEventId !== null) {
      if (!Number.isInteger(options.lastEventId) || options.lastEventId < 0) throw new TypeError("lastEventId must be an integer >= 0");
      if (options.lastEventId !== this._cursor) this._items = [];
      this._cursor = options.lastEventId;
    }
    for (const m of this._items) this._byId.set(m.id, m);
  }

  _saveSoon() {
    if (!this._storage || this._timers.save !== null) return;
    this._timers.save = setTimeout(() => this._saveNow(), SAVE_DELAY_MS);
    if (this._timers.save && typeof this._timers.save.unref === "function") this._timers.save.unref();
  }

  _saveNow() {
    clearTimeout(this._timers.save);
    this._timers.save = null;
    if (!this._storage) return;
    const pending = this._pending.map(({ key, content }) => ({ key, content }));
    // One value holds the conversation and the id it reflects, so they cannot
    // disagree. If it does not fit, keep the session and replay it from its start.
    const full = { session_id: this._sessionId, last_event_id: this._cursor, messages: this._items, pending };
    try {
      this._storage.setItem(this._storageKey, JSON.stringify(full));
    } catch (e) {
      try {
        this._storage.setItem(this._storageKey,
          JSON.stringify({ session_id: this._sessionId, last_event_id: 0, messages: [], pending }));
      } catch (e2) {
        this._emit("error", { code: "storage_failed", message: String(e2 && e2.message || e2) });
      }
    }
  }

  // ---- the conversation -----------------------------------------------------

  _pendingMessage(p) {
    const m = { id: p.key, role: "user", content: p.content, status: p.acked ? "sent" : "pending" };
    if (p.acked) m.event_id = p.acked.event_id;
    return m;
  }

  _settle(key, result) {
    const w = this._waiters.get(key);
    if (!w) return;
    this._waiters.delete(key);
    w.cleanup();
    w.resolve(result);
  }

  _apply(frame) {
    if (!Number.isInteger(frame.id) || frame.id <= this._cursor) return; // seen already
    if (frame.id !== this._cursor + 1) {
      // Never happens with a correct server: ask for the rest again.
      this._sendFrame({ type: "resume", last_event_id: this._cursor });
      return;
    }
    this._cursor = frame.id;
    if (this._state === "replaying") this._replayed++;
    const event = { id: frame.id, event_type: frame.event_type, payload: frame.payload, created_at: frame.created_at };
    this._emit("event", event);
    const p = frame.payload && typeof frame.payload === "object" ? frame.payload : {};
    let changed = null;
    switch (frame.event_type) {
      case "user_message": {
        const key = typeof p.idempotency_key === "string" ? p.idempotency_key : `event-${frame.id}`;
        changed = { id: key, role: "user", content: String(p.content ?? ""), status: "sent", event_id: frame.id };
        this._items.push(changed);
        this._byId.set(key, changed);
        const i = this._pending.findIndex((x) => x.key === key);
        if (i >= 0) this._pending.splice(i, 1);
        // In the log means committed, even if the ack was lost with a connection.
        this._settle(key, { event_id: frame.id, duplicate: false });
        break;
      }
      case "assistant_started":
        changed = { id: String(p.message_id), role: "assistant", content: "", status: "streaming", event_id: frame.id, reply_to: p.reply_to };
        this._items.push(changed);
        this._byId.set(changed.id, changed);
        break;
      case "assistant_delta":
        changed = this._byId.get(String(p.message_id)) || null;
        if (changed) changed.content += String(p.delta ?? "");
        break;
      case "assistant_done":
        changed = this._byId.get(String(p.message_id)) || null;
        if (changed) {
          if (typeof p.content === "string") changed.content = p.content;
          changed.finish_reason = p.finish_reason;
          changed.status = p.finish_reason === "cancelled" ? "cancelled" : "done";
        }
        break;
      case "assistant_error":
        changed = this._byId.get(String(p.message_id)) || null;
        if (changed) {
          changed.error = { code: p.code, message: p.message };
          changed.status = p.code === "interrupted" ? "interrupted" : "error";
        }
        break;
      default:
        break; // anything else published to the session is only an 'event'
    }
    if (changed) this._emit("message", { ...changed });
    this._saveSoon();
  }

  // ---- the connection -------------------------------------------------------

  _live() { return this._ws !== null && this._ready && this._ws.readyState === OPEN; }

  _sendFrame(frame) {
    if (!this._ws || this._ws.readyState !== OPEN) return false;
    try { this._ws.send(JSON.stringify(frame)); } catch (e) { return false; }
    return true;
  }

  async _getToken(fresh) {
    if (typeof this._tokenSource === "string") return this._tokenSource;
    if (this._token && !fresh) return this._token;
    this._token = await this._tokenSource();
    if (typeof this._token !== "string" || !this._token) throw new Error("token() gave no token");
    return this._token;
  }

  async _dial(freshToken = false) {
    this._timers.reconnect = null;
    if (this._closed || this._ws) return;
    this._setState("connecting");
    let token;
    try {
      token = await this._getToken(freshToken);
    } catch (e) {
      this._emit("error", { code: "token_failed", message: String(e && e.message || e) });
      if (!this._closed) this._scheduleReconnect(0, true);
      return;
    }
    if (this._closed || this._ws) return;
    let url = `${this._url}?token=${encodeURIComponent(token)}`;
    const cursor = this._sessionId ? this._cursor : null;
    if (this._sessionId) url += `&session_id=${encodeURIComponent(this._sessionId)}&last_event_id=${cursor}`;
    let ws;
    try {
      ws = new this._WebSocket(url);
    } catch (e) {
      this._emit("error", { code: "connect_failed", message: String(e && e.message || e) });
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    this._ready = false;
    this._retryAfterMs = null;
    this._timers.connect = setTimeout(() => this._drop(ws), this._connectTimeoutMs);
    ws.onmessage = (m) => { if (this._ws === ws) this._onFrame(m.data, cursor); };
    ws.onclose = (e) => { if (this._ws === ws) this._onClose(e.code); };
    ws.onerror = () => {}; // a close event follows
  }

  // Gives up on a socket that is not answering and reconnects.
  _drop(ws) {
    if (this._ws !== ws) return;
    this._onClose(4999);
    try { ws.close(); } catch (e) { /* already closed */ }
  }

  _onFrame(data, cursor) {
    this._lastReceived = Date.now();
    let frame;
    try { frame = JSON.parse(typeof data === "string" ? data : String(data)); } catch (e) { return; }
    if (!frame || typeof frame !== "object") return;
    switch (frame.type) {
      case "ready": this._onReady(frame, cursor); break;
      case "event": this._apply(frame); break;
      case "replay_done":
        if (this._state === "replaying") {
          this._emit("replayed", { replayed: this._replayed, lastEventId: this._cursor });
          this._goLive();
        }
        break;
      case "ack": {
        const entry = this._pending.find((p) => p.key === frame.idempotency_key);
        if (entry && !entry.acked) {
          entry.acked = { event_id: frame.event_id, duplicate: !!frame.duplicate };
          this._emit("message", this._pendingMessage(entry));
        }
        this._settle(frame.idempotency_key, { event_id: frame.event_id, duplicate: !!frame.duplicate });
        break;
      }
      case "server_restarting": this._retryAfterMs = Number(frame.retry_after_ms) || 1000; break;
      case "error": this._onError(frame); break;
      default: break; // pong, session_closed (its 4004 follows), unknown
    }
  }

  _onReady(frame, cursor) {
    clearTimeout(this._timers.connect);
    this._ready = true;
    this._attempt = 0;
    const previous = this._sessionId;
    this._sessionId = frame.session_id;
    if (previous !== frame.session_id) this._saveNow();
    this._replayed = 0;
    const info = { sessionId: frame.session_id, resumed: !!frame.resumed, lastEventId: frame.last_event_id,
      replayFrom: cursor, heartbeatIntervalMs: frame.heartbeat_interval_ms };
    this._readyInfo = info;
    this._emit("ready", info);
    this._startPings(frame.heartbeat_interval_ms);
    if (cursor !== null) this._setState("replaying");
    else this._goLive();
    for (const p of this._pending) {
      this._sendFrame({ type: "user_message", content: p.content, idempotency_key: p.key });
    }
    if (this._cancelQueued) {
      this._cancelQueued = false;
      this._sendFrame({ type: "cancel" });
    }
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const w of waiters) w.resolve(info);
  }

  _goLive() {
    this._setState("live");
    this._saveNow();
  }

  _onError(frame) {
    this._emit("error", { code: frame.code, message: frame.message });
    if (frame.code === "invalid_cursor") {
      // The session is behind what this client saw (a restored database?):
      // rebuild the conversation from its first event.
      this._cursor = 0;
      this._items = [];
      this._byId.clear();
      this._emit("session_reset", { reason: "invalid_cursor", sessionId: this._sessionId, previousSessionId: this._sessionId });
      this._sendFrame({ type: "resume", last_event_id: 0 });
    } else if (frame.code === "internal_error" && this._ws) {
      this._drop(this._ws);
    }
  }

  // App-level pings find half-open connections (a peer gone without a close):
  // anything received since the last ping proves the connection alive.
  _startPings(intervalMs) {
    clearInterval(this._timers.ping);
    const every = Math.min(this._pingMaxMs, Math.max(200, Number(intervalMs) || this._pingMaxMs));
    this._pingSentAt = 0;
    const ws = this._ws;
    this._timers.ping = setInterval(() => {
      if (this._ws !== ws) return;
      if (this._pingSentAt && this._lastReceived < this._pingSentAt) {
        this._drop(ws);
        return;
      }
      this._pingSentAt = Date.now();
      this._sendFrame({ type: "ping", at: this._pingSentAt });
    }, every);
  }

  _onClose(code) {
    clearTimeout(this._timers.connect);
    clearInterval(this._timers.ping);
    const ws = this._ws;
    this._ws = null;
    this._ready = false;
    // onerror stays: closing a socket still connecting makes `ws` emit an
    // error, which would be thrown without a listener.
    if (ws) ws.onmessage = ws.onclose = null;
    if (this._closed) return;
    switch (code) {
      case 4001: // token refused or expired
        if (typeof this._tokenSource === "string") {
          this._emit("error", { code: "unauthorized", message: "the token was refused and cannot be renewed" });
          const err = new Error("unauthorized");
          for (const w of this._connectWaiters) w.reject(err);
          this._connectWaiters = [];
          this.close();
          return;
        }
        this._scheduleReconnect(0, true);
        return;
      case 4003: // the session belongs to someone else
      case 4004: { // the session is unknown or closed
        const previous = this._sessionId;
        this._resetConversation();
        // Acknowledged messages are stored in the old session: not for the new one.
        this._pending = this._pending.filter((p) => !p.acked);
        this._saveNow();
        this._emit("session_reset", { reason: code === 4003 ? "forbidden" : "session_not_found", sessionId: null, previousSessionId: previous });
        this._reconnectIn(0);
        return;
      }
      case 1009: { // a message was too big: the largest unsent one, not to be sent again
        const largest = this._pending.reduce((a, b) => (a && a.content.length >= b.content.length ? a : b), null);
        if (largest) {
          this._pending.splice(this._pending.indexOf(largest), 1);
          this._saveNow();
          const w = this._waiters.get(largest.key);
          this._waiters.delete(largest.key);
          if (w) { w.cleanup(); w.reject(Object.assign(new Error("message too big for the server"), { code: "too_big" })); }
        }
        this._scheduleReconnect();
        return;
      }
      case 1008: // policy: back off harder
        this._attempt = Math.max(this._attempt, 4);
        this._scheduleReconnect();
        return;
      default:
        if (this._retryAfterMs !== null) this._reconnectIn(this._retryAfterMs);
        else this._scheduleReconnect();
    }
  }

  _reconnectIn(delayMs, freshToken = false) {
    clearTimeout(this._timers.reconnect);
    this._nextAttemptAt = Date.now() + delayMs;
    this._setState("reconnecting");
    // A "fresh token" wish survives an earlier reconnect() or newSession().
    this._freshToken = this._freshToken || freshToken;
    this._timers.reconnect = setTimeout(() => {
      const fresh = this._freshToken;
      this._freshToken = false;
      this._dial(fresh);
    }, delayMs);
  }

  _resetConversation() {
    this._sessionId = null;
    this._cursor = 0;
    this._items = [];
    this._byId.clear();
  }

  // Capped exponential backoff with full jitter.
  _scheduleReconnect(atLeastMs = 0, freshToken = false) {
    const ceiling = Math.min(this._backoffCap, this._backoffBase * 2 ** this._attempt);
    this._attempt = Math.min(this._attempt + 1, 16);
    this._reconnectIn(Math.max(atLeastMs, Math.random() * ceiling), freshToken);
  }
}

export default ResumableClient;
