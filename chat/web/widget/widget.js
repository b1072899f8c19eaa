// The customer widget (PROTOCOL 9): `<script src="https://chat.example.com/widget.js" async></script>`,
// optionally with data-server, data-token, data-token-provider, data-lang, data-color, data-open.
// Served as one classic script (chat/web/bundle.py joins this module and its imports); docs/web.md.
import { ChatClient, newClientMsgId } from "../shared/client.js";
import { pickLanguage, translator } from "../shared/i18n.js";
import { WidgetMemory, tokenClaims } from "./memory.js";
import { WIDGET_STRINGS } from "./strings.js";
import { WidgetView } from "./view.js";

const TOKEN_MARGIN_S = 60; // a stored token closer than this to `exp` is replaced before use
const TYPING_IDLE_MS = 3000;
const TYPING_REPEAT_MS = 4000; // typing frames count against the socket's command rate limit

/** Run `fn(true)` holding the Web Lock `name` (one tab of the origin at a time), or `fn(false)` where the
 * browser has none (an insecure context, an old browser). */
function exclusive(name, fn) {
  const locks = typeof navigator !== "undefined" && navigator.locks;
  if (locks && typeof locks.request === "function") return locks.request(name, () => fn(true));
  return fn(false);
}

/** The settings of the script tag that loaded the widget. */
export function readConfig(script) {
  const data = (script && script.dataset) || {};
  const src = script && script.src ? new URL(script.src, location.href) : new URL(location.href);
  return {
    server: new URL(data.server || src.origin, location.href).origin,
    token: data.token || null,
    tokenProvider: data.tokenProvider || null,
    language: data.lang === "zh" || data.lang === "en" ? data.lang : pickLanguage(),
    accent: data.color || null,
    open: data.open === "true",
  };
}

/** One widget on the page: the view, the protocol client and the conversation. */
export class ChatWidget {
  constructor(config) {
    this.config = config;
    this.t = translator(WIDGET_STRINGS, config.language);
    this.memory = new WidgetMemory(config.server);
    this.conversationId = null;
    this.conversation = null;
    this.knownTo = 0; // every seq up to this one is shown, or is a private note the customer never gets
    this._resuming = null;
    this.unread = 0;
    this.open = false;
    this._typingOn = false;
    this._typingSentAt = 0;
    this._typingTimer = null;
    this._starting = null;
    this._streamAt = null; // {turn, index} of the last delta shown, when the service numbers them
    this.view = new WidgetView({
      t: this.t,
      accent: config.accent,
      onToggle: (open = !this.open) => this.setOpen(open),
      onSend: (text) => this.send(text),
      onInput: (nonEmpty) => this._typing(nonEmpty),
      onHuman: () => this.requestHuman(),
    });
    this.client = null;
    if (config.token) this.memory.forUser(tokenClaims(config.token).sub || null);
    this.conversationId = this.memory.get("conversation_id") || null;
    // a returning visitor with a conversation reconnects at once (agent replies may be waiting);
    // a new one only when they open the panel, so a page view mints no visitor token
    if (this.conversationId || (this.memory.get("outbox") || []).length || this._unsent().length) this.connect();
    if (config.open || this.memory.get("open")) this.setOpen(true, { focus: false }); // not the page's focus
  }

  /** Start the protocol client (once). */
  connect() {
    if (this.client) return;
    this.client = new ChatClient({
      server: this.config.server,
      getToken: (how) => this.token(how),
      onStatus: (state) => this.view.setStatus(state),
      onReady: () => this.resume(),
      onOutboxChange: (frames) => this.memory.update({ outbox: frames }),
      outbox: this.memory.get("outbox") || [],
    });
    this.client.on("message.created", (data) => this._onMessage(data));
    this.client.on("ai.delta", (data) => this._mine(data) && this._onDelta(data));
    this.client.on("ai.failed", (data) => this._mine(data) && this.view.setStream(""));
    this.client.on("ai.interrupted", (data) => this._mine(data) && this.view.setStream(""));
    this.client.on("conversation.updated", (data) => this._onConversation(data.conversation));
    this.client.on("typing", (data) => this._mine(data) && data.sender_type === "agent" && this.view.showTyping(data.on));
    this.client.on("csat.requested", (data) => this._mine(data) && this._askCsat());
    for (const frame of this.client.outbox) this._sendFrame(frame); // unsent before a reload: shown, resent
    for (const m of this._unsent()) this.view.addPending(m.client_msg_id, m.content); // written before a conversation
    this.client.start();
    this._sendUnsent();
  }

  /** Open or close the panel (remembered across reloads). */
  setOpen(open, { focus = true } = {}) {
    this.open = open;
    this.view.setOpen(open, { focus });
    this.memory.update({ open });
    if (open) {
      this.unread = 0;
      this.connect();
    }
  }

  /** The token for a connection: the page's (data-token / data-token-provider) or an anonymous
   * visitor's from POST /api/v1/visitors (PROTOCOL 2.2), kept in localStorage until near its `exp`,
   * or until the service refuses it (`refused`: its key was rotated): then a new visitor's. */
  async token({ refresh, refused } = {}) {
    const { token, tokenProvider } = this.config;
    if (tokenProvider && typeof window[tokenProvider] === "function") {
      const fresh = await window[tokenProvider]({ refresh: Boolean(refresh), refused: Boolean(refused) });
      this._asUser(tokenClaims(fresh).sub || null);
      return fresh;
    }
    if (token) return token;
    // a new visitor token is another visitor (PROTOCOL 2.2): keep this one while it is good
    const kept = this.memory.get("visitor");
    if (kept && !refused && kept.exp - (refresh ? 0 : TOKEN_MARGIN_S) > Date.now() / 1000) return kept.token;
    // no body and no headers: a "simple" cross-origin request, so no CORS preflight
    const response = await fetch(new URL("/api/v1/visitors", this.config.server), { method: "POST", credentials: "omit" });
    if (!response.ok) throw new Error(`visitor token: HTTP ${response.status}`);
    const body = await response.json();
    const exp = tokenClaims(body.access_token).exp || Math.floor(Date.now() / 1000) + body.expires_in;
    this._asUser(body.user_id);
    this.memory.update({ visitor: { token: body.access_token, exp } });
    return body.access_token;
  }

  /** After each (re)connect, and when a message shows a hole before it: everything after the last seq known
   * without a hole, by paging conversation.resume (one after another, each from where the last left off). */
  resume() {
    this._resuming = (this._resuming || Promise.resolve()).catch(() => {}).then(() => this._resume());
    return this._resuming;
  }

  async _resume() {
    if (!this.conversationId) return;
    const conversationId = this.conversationId;
    let page;
    try {
      page = await this.client.resumeAll(conversationId, this.knownTo);
    } catch (err) {
      if (err.code !== "not_found") throw err; // the client reconnects and resumes again
      this._forgetConversation(); // another identity, or the service lost it: start afresh on the next send
      return;
    }
    if (conversationId !== this.conversationId) return; // another conversation meanwhile
    this._onConversation(page.conversation);
    for (const message of page.messages) this._show(message);
    // every seq up to the conversation's last one as the resume began was either returned or is a private note
    this._known(page.conversation.last_seq || 0);
    const last = page.messages[page.messages.length - 1];
    if (page.ai_stream && page.conversation.state === "ai") {
      this._streamAt = { turn: page.ai_stream.turn_id, index: page.ai_stream.index };
      this.view.setStream(page.ai_stream.text);
    } else if (last && last.sender_type === "ai") this.view.setStream(""); // the reply it streamed is stored
  }

  /** Send a customer message: shown as pending at once, stored exactly once however the socket fares. */
  send(text) {
    const client_msg_id = newClientMsgId();
    this.view.addPending(client_msg_id, text);
    this._typing(false);
    if (this.conversationId) {
      this.connect();
      this._sendFrame({ conversation_id: this.conversationId, client_msg_id, content: text });
      return;
    }
    // no conversation yet (it starts once online): kept in localStorage until it has one, so a reload
    // meanwhile still sends it, with the same client_msg_id
    this.memory.addUnsent({ client_msg_id, content: text });
    this.connect();
    this._sendUnsent();
  }

  /** Messages written before the conversation existed, oldest first: [{client_msg_id, content}]. */
  _unsent() {
    return this.memory.get("unsent") || [];
  }

  /** Start the conversation for the messages written before it existed, then send them (into the
   * client's outbox, which keeps them from then on). Another user meanwhile drops them (_asUser). Other
   * tabs of the site share them (localStorage): one tab at a time (a Web Lock) takes the stored list,
   * starts the conversation and sends them, once; a tab that finds them gone takes the conversation
   * another tab started. Without Web Locks the list is taken (cleared) before the start. */
  async _sendUnsent() {
    if (!this._unsent().length) return;
    let taken = [];
    try {
      await this.client.whenOnline(); // a token for another user, if it comes to that, has dropped them by then
      await exclusive(`${this.memory.key}:unsent`, async (locked) => {
        taken = this.memory.storedUnsent();
        if (!locked) this.memory.update({ unsent: [] }); // taken: another tab finds none
        const stored = this.memory.stored();
        if (!this.conversationId && stored.conversation_id && stored.user_id === this.memory.get("user_id")) {
          this._adopt(stored.conversation_id); // another tab started it
        }
        if (!taken.length) return;
        const conversationId = await this.ensureConversation();
        if (locked) taken = this.memory.storedUnsent(); // with those written meanwhile (no other tab took them)
        for (const m of taken) this._sendFrame({ conversation_id: conversationId, ...m }); // each in the outbox now
        this.memory.update({ unsent: [] });
        taken = [];
      });
    } catch (err) {
      for (const m of [...taken, ...this._unsent()]) this.view.failPending(m.client_msg_id, err.message);
      this.memory.update({ unsent: [] });
    }
  }

  /** The conversation another tab of the site started: shown here too (its messages by resume). */
  _adopt(conversationId) {
    this.conversationId = conversationId;
    this.memory.update({ conversation_id: conversationId });
    this.resume().catch(() => {});
  }

  _sendFrame(frame) {
    this.view.addPending(frame.client_msg_id, frame.content);
    this.client.sendMessage(frame).then(
      (message) => this._onMessage({ conversation_id: message.conversation_id, message }),
      (err) => this.view.failPending(frame.client_msg_id, err.message),
    );
  }

  /** The conversation id, starting a conversation (once, when online) if there is none yet. */
  async ensureConversation() {
    if (this.conversationId) return this.conversationId;
    if (!this._starting) {
      this._starting = (async () => {
        for (;;) {
          await this.client.whenOnline();
          try {
            const { conversation } = await this.client.request("conversation.start", {
              // the page without its query and fragment: they may hold the host site's tokens
              metadata: { page: (location.origin + location.pathname).slice(0, 500), title: document.title.slice(0, 200),
                language: this.t.language },
            });
            this.conversationId = conversation.id;
            this.memory.update({ conversation_id: conversation.id, last_seq: 0 });
            this._onConversation(conversation);
            return conversation.id;
          } catch (err) {
            if (!err.transient) throw err; // offline, timeout, unavailable: try again once online
          }
        }
      })().finally(() => { this._starting = null; });
    }
    return this._starting;
  }

  /** Ask for a human agent (handoff.request). */
  async requestHuman() {
    this.connect();
    this.view.showNotice("");
    try {
      const conversationId = await this.ensureConversation();
      const { conversation } = await this.client.request("handoff.request", { conversation_id: conversationId });
      this._onConversation(conversation);
    } catch (err) {
      // refused (conflict: the conversation moved on, e.g. it was closed; the screen may be behind), or
      // not connected: say so, and bring the conversation's state up to date
      const state = this.conversation && this.conversation.state;
      if (state !== "handoff" && state !== "human") this.view.showNotice(this.t(err.transient ? "humanOffline" : "humanRefused"));
      if (this.client.status === "online") this.resume().catch(() => {});
    }
  }

  // A delta carries its turn and index where the service numbers them (PROTOCOL 3.6): after a resume
  // that returned the stream so far, a delta already included is skipped and a new turn starts afresh.
  _onDelta(data) {
    if (data.turn_id !== undefined && data.index !== undefined) {
      const at = this._streamAt;
      if (at && at.turn === data.turn_id && data.index <= at.index) return;
      if (!at || at.turn !== data.turn_id) this.view.setStream("");
      this._streamAt = { turn: data.turn_id, index: data.index };
    }
    this.view.appendStream(data.delta);
  }

  _mine(data) {
    return Boolean(this.conversationId) && data.conversation_id === this.conversationId;
  }

  _onMessage(data) {
    if (!this._mine(data) || data.message.private) return;
    const message = data.message;
    if (message.sender_type === "ai") this.view.setStream(""); // the stored reply replaces the stream
    if (message.sender_type === "agent") this.view.showTyping(false);
    if (this._show(message) && !this.open && message.sender_type !== "customer") {
      this.unread += 1;
      this.view.setUnread(this.unread);
    }
    // an event went missing (a bus hiccup): fetch the hole (offline: the reconnect's resume does)
    if (message.seq > this.knownTo) this.resume().catch(() => {});
  }

  _show(message) {
    const added = this.view.addMessage(message);
    this._known(0);
    return added;
  }

  /** Every seq up to `seq` is accounted for; then as far as the shown messages go without a hole. */
  _known(seq) {
    let known = Math.max(this.knownTo, seq);
    while (this.view.hasSeq(known + 1)) known += 1;
    if (known !== this.knownTo) {
      this.knownTo = known;
      this.memory.update({ last_seq: known });
    }
  }

  /** A token's user: another one than the stored one forgets the conversation and the unsent messages, on
   * screen too. */
  _asUser(userId) {
    if (!this.memory.forUser(userId)) return;
    this._forgetConversation();
    this.view.clearPending();
    if (this.client) this.client.dropOutbox();
  }

  _onConversation(conversation) {
    if (!conversation || conversation.id !== this.conversationId) return;
    // events and replies may cross: a lower version is older news
    if (this.conversation && conversation.version < this.conversation.version) return;
    this.conversation = conversation;
    if (conversation.state !== "ai") this.view.setStream("");
    if (conversation.state !== "closed") this.view.hideCsat();
    this.view.setConversationState(conversation.state, conversation.agent_id);
  }

  _askCsat() {
    const conversationId = this.conversationId;
    this.view.showCsat((score) => this.client.request("csat.submit", { conversation_id: conversationId, score }));
  }

  _forgetConversation() {
    this.conversationId = null;
    this.conversation = null;
    this.knownTo = 0;
    this._streamAt = null;
    this.view.clearMessages(); // seqs start again at 1 in the next conversation
    this.memory.update({ conversation_id: null, last_seq: 0 });
    this.view.setConversationState("ai", null);
  }

  // typing on when the customer starts writing (repeated at most every TYPING_REPEAT_MS), off after a pause
  _typing(active) {
    clearTimeout(this._typingTimer);
    if (!this.client || !this.conversationId) return;
    const now = Date.now();
    if (active && (!this._typingOn || now - this._typingSentAt > TYPING_REPEAT_MS)) {
      this.client.notify("typing", { conversation_id: this.conversationId, on: true });
      this._typingOn = true;
      this._typingSentAt = now;
    }
    if (active) {
      this._typingTimer = setTimeout(() => this._typing(false), TYPING_IDLE_MS);
    } else if (this._typingOn) {
      this.client.notify("typing", { conversation_id: this.conversationId, on: false });
      this._typingOn = false;
    }
  }
}

/** Start the widget for the script tag that loaded it (once per page). */
export function boot(script) {
  if (window.__chatApiWidget) return window.__chatApiWidget;
  const start = () => {
    window.__chatApiWidget = new ChatWidget(readConfig(script));
  };
  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start, { once: true });
  return null;
}

// document.currentScript is the widget's own tag while a classic script (async too) first runs
boot(document.currentScript || document.querySelector('script[src*="widget.js"]'));
