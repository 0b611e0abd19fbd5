// Types of resumable-ws-client (client.js). Hand-written; keep in step with client.js.

export type State = 'connecting' | 'replaying' | 'live' | 'reconnecting' | 'closed';

/** One event of the session's log, delivered once each, in id order. */
export interface ResumableEvent {
  id: number;
  event_type: string;
  payload: any;
  created_at: string;
}

export type MessageStatus =
  | 'pending'      // user message not yet acknowledged by the server
  | 'sent'         // user message acknowledged / in the log
  | 'streaming'    // answer being generated
  | 'done'         // answer finished (finish_reason 'stop' or 'length')
  | 'cancelled'    // answer stopped by cancel() from any client of the session
  | 'error'        // answer failed (see error.code)
  | 'interrupted'; // answer cut off by a server restart

/** A conversation message rebuilt from the events (deltas concatenated). */
export interface Message {
  /** user messages: the idempotency key; answers: the message_id */
  id: string;
  role: 'user' | 'assistant';
  content: string;
  status: MessageStatus;
  /** id of the event that created it (user_message / assistant_started), once known */
  event_id?: number;
  /** answers: the event id of the user message answered */
  reply_to?: number;
  /** answers: 'stop' | 'length' | 'cancelled' once done */
  finish_reason?: string;
  /** answers with status 'error' or 'interrupted' */
  error?: { code: string; message: string };
}

/** localStorage-like, synchronous. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface ResumableClientOptions {
  /** base URL, e.g. 'ws://host:8787'; '/ws' is appended */
  url: string;
  /** a JWT, or a function giving one; a function is called again after a 4001 close */
  token: string | (() => string | Promise<string>);
  /** resume this session (else the stored one, else a new session) */
  sessionId?: string;
  /** resume from this cursor: events with greater ids are delivered */
  lastEventId?: number;
  /** persists session id, cursor, conversation and unsent messages */
  storage?: StorageLike;
  /** the storage key (default 'resumable_ws'); one per client instance */
  storageKey?: string;
  /** WebSocket constructor where there is no global one (e.g. `ws` in Node < 22) */
  WebSocket?: any;
  /** reconnect backoff: full jitter over min(capMs, baseMs * 2^attempt); defaults 500 / 30000 */
  backoff?: { baseMs?: number; capMs?: number };
  /** longest interval between app-level pings (default 10000; never above the server's heartbeat) */
  pingIntervalMs?: number;
  /** how long to wait for 'ready' before trying again (default 10000) */
  connectTimeoutMs?: number;
}

export interface ReadyInfo {
  sessionId: string;
  /** true when an existing session was resumed */
  resumed: boolean;
  /** the session's newest event id when the connection opened */
  lastEventId: number;
  /** the cursor the replay starts from, or null for a new session (no replay) */
  replayFrom: number | null;
  heartbeatIntervalMs: number;
}

export interface ReplayedInfo {
  /** events applied during this replay (those missed while away) */
  replayed: number;
  lastEventId: number;
}

export interface SessionReset {
  /** 'forbidden' (4003), 'session_not_found' (4004), 'invalid_cursor' (history rebuilt from event 1)
   *  or 'new_session' (newSession() was called) */
  reason: 'forbidden' | 'session_not_found' | 'invalid_cursor' | 'new_session';
  /** the session now in use (null until the new session's ready) */
  sessionId: string | null;
  previousSessionId: string | null;
}

export interface ClientError {
  /** a server error code (bad_request, idempotency_conflict, invalid_cursor, unauthorized, …)
   *  or token_failed | connect_failed | storage_failed */
  code: string;
  message: string;
}

export interface EventMap {
  event: ResumableEvent;
  message: Message;
  state: State;
  ready: ReadyInfo;
  replayed: ReplayedInfo;
  session_reset: SessionReset;
  error: ClientError;
}

export class ResumableClient {
  constructor(options: ResumableClientOptions);
  on<K extends keyof EventMap>(name: K, fn: (value: EventMap[K]) => void): this;
  off<K extends keyof EventMap>(name: K, fn: (value: EventMap[K]) => void): this;
  /** resolves at the first 'ready'; rejects if closed first or a string token is refused */
  connect(): Promise<ReadyInfo>;
  /** resolves once acknowledged (the message is in the log); re-sent with the same key after reconnects */
  send(text: string, options?: { signal?: AbortSignal }): Promise<{ event_id: number; duplicate: boolean }>;
  /** stops the session's running answer (sent at the next connection if offline) */
  cancel(): void;
  /** leaves this session for a new one: clears the conversation; unacknowledged send()s reject (code 'session_left') */
  newSession(): void;
  /** connects now when waiting to reconnect (e.g. a "retry now" button); no-op otherwise */
  reconnect(): void;
  /** when the next connection attempt is due (ms since the epoch), or null when none is waiting */
  readonly nextAttemptAt: number | null;
  /** writes the state to storage now (done by itself on 'pagehide' in browsers) */
  flush(): void;
  /** closes for good; unacknowledged send()s reject but stay in storage */
  close(): void;
  readonly sessionId: string | null;
  readonly lastEventId: number;
  readonly state: State;
  /** snapshots: log order, unsent messages last */
  readonly messages: Message[];
}

export default ResumableClient;
