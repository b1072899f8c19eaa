// The chat-api protocol client shared by the customer widget and the agent console (docs/web.md).
// Plain ES module, no dependencies. One socket to /ws: the token goes in the first `auth` frame
// (never in a URL), commands are promises matched by `id`, events go to subscribers, and the socket
// comes back by itself after any drop (exponential backoff with jitter). `message.send` goes through
// an outbox: a message not yet acknowledged is sent again after a reconnect with its original
// client_msg_id, which the server makes idempotent, so each message is stored exactly once.
//
// Bundling convention (chat/web/bundle.py): named imports, `export` only on declarations.

const TRANSIENT = new Set(["unavailable", "rate_limited", "internal", "timeout", "offline"]);

/** An error reply of the service (`code`, `message`, `details`), or a local `offline` / `timeout`. */
export class ChatError extends Error {
  constructor(code, message, details) {
    super(message || code);
    this.name = "ChatError";
    this.code = code;
    this.details = details || null;
  }

  /** Whether trying again later may succeed (the service or the network, not the request). */
  get transient() {
    return TRANSIENT.has(this.code);
  }
}

/** A random id for `client_msg_id` (crypto.randomUUID needs a secure context; this does not). */
export function newClientMsgId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The WebSocket URL of a service base URL (`https://chat.example.com` -> `wss://chat.example.com/ws`). */
export function socketUrl(server) {
  const url = new URL("/ws", server);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/** The delay before reconnect attempt `attempt` (0, 1, ...): doubling from base_ms up to max_ms, with
 * "equal jitter" (half fixed, half random) so a restarted server is not hit by every client at once. */
export function backoffDelay(attempt, baseMs, maxMs, random = Math.random) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20));
  return ceiling / 2 + random() * (ceiling / 2);
}

const DEFAULTS = {
  pingIntervalMs: 25000, // a half-open connection is noticed within ping + pong timeout
  pongTimeoutMs: 10000,
  requestTimeoutMs: 15000,
  backoffBaseMs: 500,
  backoffMaxMs: 15000,
  refreshBeforeExpS: 60, // send a fresher token this long before `exp` (PROTOCOL 2.3)
};

/**
 * new ChatClient({server, getToken, onStatus, onReady, onOutboxChange, onFatal, outbox, ...DEFAULTS})
 * - getToken({refresh, refused}) -> token or Promise<token>: called for each connection and before `exp`.
 *   `refresh` is true for a reconnect and before `exp`; `refused` is true when the last socket was closed
 *   with 4401 or its `auth` got `unauthenticated` (its token expired, or the server no longer admits it:
 *   a staff account's role changed, PROTOCOL 2), so the token it had must not be given again.
 * - onStatus(state): "connecting" | "online" | "offline".
 * - onReady({reconnected}) (may be async): runs after each successful `auth` and before the status goes
 *   online and the outbox is resent: the place to resume conversations by seq.
 * - onOutboxChange(entries): the unacknowledged message.send frames, for the owner to persist so they
 *   survive a page reload; pass them back as `outbox` to the next client.
 * - onFatal({code, reason}): the socket was closed for good (4403: the account was deactivated).
 */
export class ChatClient {
  constructor(options) {
    this.opts = { ...DEFAULTS, ...options };
    this.status = "offline";
    this.identity = null; // {user_id, role, exp} of the last accepted token
    this._ws = null;
    this._nextId = 1;
    this._pending = new Map(); // id -> {resolve, reject, timer}
    this._handlers = new Map(); // event type ("*": all) -> Set(handler)
    this._outbox = new Map(); // client_msg_id -> {frame, waiters: [{resolve, reject}]}
    for (const frame of options.outbox || []) this._outbox.set(frame.client_msg_id, { frame, waiters: [] });
    this._attempt = 0;
    this._stopped = true;
    this._authed = false;
    this._everReady = false;
    this._timers = { reconnect: null, ping: null, pong: null, refresh: null };
    this._onlineWaiters = [];
    this._token = null; // the token the socket was last authenticated with
    this._refused = false; // the last socket's token was refused (4401): getToken is told so
    this._wake = () => this._reconnectNow();
  }

  /** Connect (and keep reconnecting until stop()). */
  start() {
    if (!this._stopped) return;
    this._stopped = false;
    this._refused = false;
    // back online, or the tab shown again (a phone waking up): retry now instead of after the backoff
    window.addEventListener("online", this._wake);
    document.addEventListener("visibilitychange", this._wake);
    this._connect();
  }

  /** Close the socket and stop reconnecting; pending commands fail with `offline`. */
  stop() {
    this._stopped = true;
    window.removeEventListener("online", this._wake);
    document.removeEventListener("visibilitychange", this._wake);
    this._clearTimers();
    if (this._ws) this._ws.close(1000);
    this._dropSocket();
    this._setStatus("offline");
  }

  /** Subscribe to a server event type ("*" for every push); returns the function that unsubscribes. */
  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(handler);
    return () => this._handlers.get(type).delete(handler);
  }

  /** A command with a reply: resolves with the result's `data`, rejects with a ChatError. */
  request(type, fields = {}, { timeoutMs } = {}) {
    if (!this._authed) return Promise.reject(new ChatError("offline", "not connected"));
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new ChatError("timeout", `no reply to ${type}`));
      }, timeoutMs || this.opts.requestTimeoutMs);
      this._pending.set(id, { resolve, reject, timer });
      this._send({ ...fields, type, id });
    });
  }

  /** A command without a reply (typing): dropped when offline, since it would be stale anyway. */
  notify(type, fields = {}) {
    if (this._authed) this._send({ ...fields, type });
  }

  /** Resolves once the client is online (after onReady). */
  whenOnline() {
    if (this.status === "online") return Promise.resolve();
    return new Promise((resolve) => this._onlineWaiters.push(resolve));
  }

  /** message.send through the outbox: resolves with the stored message M, even if that takes reconnects;
   * rejects only when the service refuses the message itself (invalid, too_large, not_found, forbidden). */
  sendMessage({ conversation_id, content, client_msg_id = newClientMsgId(), private: isPrivate }) {
    const frame = { conversation_id, client_msg_id, content };
    if (isPrivate) frame.private = true;
    return new Promise((resolve, reject) => {
      const entry = this._outbox.get(client_msg_id) || { frame, waiters: [] };
      entry.waiters.push({ resolve, reject });
      this._outbox.set(client_msg_id, entry);
      this._outboxChanged();
      if (this.status === "online") this._deliver(entry);
    });
  }

  /** Forget every message not yet acknowledged (the page's user changed): each rejects with `dropped`. */
  dropOutbox() {
    for (const entry of [...this._outbox.values()]) {
      this._settle(entry, (waiter) => waiter.reject(new ChatError("dropped", "another user signed in")));
    }
  }

  /** The unacknowledged message.send frames, oldest first. */
  get outbox() {
    return Array.from(this._outbox.values(), (entry) => entry.frame);
  }

  /** Every message after `after_seq` by paging `conversation.resume` (or `conversation.watch`): the
   * first page's conversation and stream, and all messages, oldest first. */
  async resumeAll(conversation_id, after_seq = 0, { command = "conversation.resume", limit = 200 } = {}) {
    let first = null;
    const messages = [];
    let cursor = after_seq;
    for (;;) {
      const page = await this.request(command, { conversation_id, after_seq: cursor, limit });
      first = first || page;
      messages.push(...page.messages);
      if (!page.has_more || page.messages.length === 0) break;
      cursor = page.messages[page.messages.length - 1].seq;
    }
    return { conversation: first.conversation, ai_stream: first.ai_stream, messages };
  }

  // --- the socket ---------------------------------------------------------------------------

  async _connect() {
    this._setStatus("connecting");
    let token;
    try {
      token = await this.opts.getToken({ refresh: this._attempt > 0, refused: this._refused });
    } catch (err) {
      this._scheduleReconnect(); // still refused, if it was: the next attempt says so again
      return;
    }
    this._refused = false; // told once; a socket refused again sets it again
    if (this._stopped) return;
    const ws = new WebSocket(socketUrl(this.opts.server));
    this._ws = ws;
    this._token = token;
    ws.onopen = () => this._authenticate(ws, token);
    ws.onmessage = (event) => this._receive(ws, event.data);
    ws.onclose = (event) => this._closed(ws, event);
    ws.onerror = () => {}; // a close event follows; the browser logs the reason itself
  }

  _authenticate(ws, token) {
    const id = this._nextId++;
    const timer = setTimeout(() => ws.close(4000, "auth timeout"), this.opts.requestTimeoutMs);
    this._pending.set(id, {
      timer,
      resolve: (data) => this._authenticated(ws, data),
      reject: (err) => {
        if (err.code === "unauthenticated") this._refused = true; // the server closes with 4401 too
        ws.close(4000, "auth refused");
      },
    });
    ws.send(JSON.stringify({ type: "auth", id, token }));
    this._keepAlive(ws);
  }

  async _authenticated(ws, identity) {
    if (ws !== this._ws) return;
    this.identity = identity;
    this._authed = true;
    this._scheduleRefresh(ws);
    const reconnected = this._everReady;
    try {
      if (this.opts.onReady) await this.opts.onReady({ reconnected });
    } catch (err) {
      // a failed resume: drop this socket and try again, rather than showing a partial view as online
      if (ws === this._ws) ws.close(4000, "resume failed");
      return;
    }
    if (ws !== this._ws) return;
    this._attempt = 0;
    this._everReady = true;
    this._setStatus("online");
    for (const entry of this._outbox.values()) this._deliver(entry);
  }

  _deliver(entry) {
    this.request("message.send", entry.frame).then(
      (data) => this._settle(entry, (w) => w.resolve(data.message)),
      (err) => {
        if (err.transient) {
          // kept: resent after the next reconnect; a refusal by a healthy service is retried soon
          if (err.code !== "offline" && err.code !== "timeout") setTimeout(() => this._retry(entry), 2000);
          return;
        }
        this._settle(entry, (w) => w.reject(err));
      },
    );
  }

  _retry(entry) {
    if (this.status === "online" && this._outbox.get(entry.frame.client_msg_id) === entry) this._deliver(entry);
  }

  _settle(entry, each) {
    if (this._outbox.get(entry.frame.client_msg_id) !== entry) return; // settled by an earlier reply
    this._outbox.delete(entry.frame.client_msg_id);
    this._outboxChanged();
    entry.waiters.forEach(each);
  }

  _outboxChanged() {
    if (this.opts.onOutboxChange) this.opts.onOutboxChange(this.outbox);
  }

  _receive(ws, text) {
    if (ws !== this._ws) return;
    this._armPong(ws); // any frame shows the connection is alive
    let frame;
    try {
      frame = JSON.parse(text);
    } catch (err) {
      return;
    }
    if (frame.type === "pong") return;
    if ((frame.type === "result" || frame.type === "error") && this._pending.has(frame.id)) {
      const waiter = this._pending.get(frame.id);
      this._pending.delete(frame.id);
      clearTimeout(waiter.timer);
      if (frame.type === "result") waiter.resolve(frame.data || {});
      else waiter.reject(new ChatError(frame.code, frame.message, frame.details));
      return;
    }
    if (frame.type === "result" || frame.type === "error") return; // a reply nobody waits for (typing)
    this._emit(frame.type, frame.data || {});
  }

  _emit(type, data) {
    for (const key of [type, "*"]) {
      for (const handler of this._handlers.get(key) || []) {
        try {
          handler(data, type);
        } catch (err) {
          console.error("chat client: event handler failed", err);
        }
      }
    }
  }

  _closed(ws, event) {
    if (ws !== this._ws) return;
    this._dropSocket();
    if (event.code === 4401) this._refused = true; // expired, or no longer admitted (a role change)
    if (event.code === 4403) {
      this._stopped = true;
      this._setStatus("offline");
      if (this.opts.onFatal) this.opts.onFatal({ code: event.code, reason: event.reason });
      return;
    }
    if (!this._stopped) this._scheduleReconnect();
  }

  _dropSocket() {
    this._ws = null;
    this._authed = false;
    for (const key of ["ping", "pong", "refresh"]) {
      clearTimeout(this._timers[key]);
      clearInterval(this._timers[key]);
    }
    for (const waiter of this._pending.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(new ChatError("offline", "the connection was lost"));
    }
    this._pending.clear();
  }

  _reconnectNow() {
    if (this._stopped || this._ws || document.visibilityState === "hidden") return;
    if (this._timers.reconnect === null) return; // a connection attempt is already under way
    clearTimeout(this._timers.reconnect);
    this._timers.reconnect = null;
    this._connect();
  }

  _scheduleReconnect() {
    this._setStatus("offline"); // until the next attempt, which says "connecting"
    const delay = backoffDelay(this._attempt++, this.opts.backoffBaseMs, this.opts.backoffMaxMs);
    clearTimeout(this._timers.reconnect);
    this._timers.reconnect = setTimeout(() => {
      this._timers.reconnect = null;
      if (!this._stopped) this._connect();
    }, delay);
  }

  _keepAlive(ws) {
    this._timers.ping = setInterval(() => {
      if (ws !== this._ws || ws.readyState !== WebSocket.OPEN) return;
      ws.send(JSON.stringify({ type: "ping" }));
      this._armPong(ws, true);
    }, this.opts.pingIntervalMs);
  }

  // After a ping, some frame must arrive within pongTimeoutMs, else the connection is dead
  // (a laptop waking up, a proxy dropping it, the network gone): drop it and reconnect at once
  // instead of waiting for TCP. The socket is let go before its close event: while the link is
  // down that event may never come, and the page would go on saying "online".
  _armPong(ws, waiting = false) {
    clearTimeout(this._timers.pong);
    if (!waiting) return;
    this._timers.pong = setTimeout(() => {
      if (ws !== this._ws) return;
      this._dropSocket(); // from now on its frames and its close event are ignored
      ws.close(4000, "no pong");
      if (!this._stopped) this._scheduleReconnect();
    }, this.opts.pongTimeoutMs);
  }

  _scheduleRefresh(ws) {
    clearTimeout(this._timers.refresh);
    if (!this.identity || !this.identity.exp) return;
    const leftMs = this.identity.exp * 1000 - Date.now();
    // refreshBeforeExpS before `exp`; a short-lived token at half its life (never a refresh a second)
    const delay = Math.max(1000, leftMs - this.opts.refreshBeforeExpS * 1000, leftMs / 2);
    this._timers.refresh = setTimeout(() => this._refresh(ws), Math.min(delay, 2 ** 31 - 1));
  }

  async _refresh(ws) {
    try {
      const token = await this.opts.getToken({ refresh: true });
      if (ws !== this._ws) return;
      if (token !== this._token) { // nothing fresher: ask again later; at `exp` the reconnect asks anyway
        this.identity = await this.request("auth", { token });
        this._token = token;
      }
    } catch (err) {
      // the server closes the socket at `exp` (4401); the reconnect asks for a token again
    }
    if (ws === this._ws) this._scheduleRefresh(ws);
  }

  _send(frame) {
    if (this._ws && this._ws.readyState === WebSocket.OPEN) this._ws.send(JSON.stringify(frame));
  }

  _setStatus(status) {
    if (status === this.status) return;
    this.status = status;
    if (status === "online") this._onlineWaiters.splice(0).forEach((resolve) => resolve());
    if (this.opts.onStatus) this.opts.onStatus(status);
  }

  _clearTimers() {
    for (const timer of Object.values(this._timers)) {
      clearTimeout(timer);
      clearInterval(timer);
    }
  }
}
