// Keeps the state in step with the service: applies pushed events, loads a conversation's
// history in pages (conversation.watch with after_seq, PROTOCOL 3.4), and after every
// (re)connect re-asserts presence, reloads the queue and the lists, and resumes each open
// conversation from the highest seq it holds, so nothing is lost or shown twice.

import {MAX_SEQ, PAGE} from "./state.js";

const KEEP_WATCHING = 10;  // conversations of others kept watched after the agent looked at them
const HANDOFF_LOOKUPS = 4;  // transition logs asked for at once (a large queue's first render)
const WATCH_AT_ONCE = 5;  // conversation.watch commands in flight at once after a (re)connect

export class Sync {
  constructor({state, live, auth, onAssigned = () => {}, onError = () => {}}) {
    this.state = state;
    this.live = live;
    this.auth = auth;
    this.onAssigned = onAssigned;
    this.onError = onError;
    this._catchingUp = new Map();  // id -> promise
    this._previewing = new Set();
    // id:version -> "asking" / "found" / "none" (its log has no entry into handoff: an adopted or imported
    // conversation) / "failed" (asked again after the next queue.list): a version is asked for once
    this._handoffAsked = new Map();
    this._handoffWaiting = [];  // conversations whose handoff time is still to be asked for, in turn
    this._handoffRunning = 0;
    this._watched = new Set();  // conversations watchMine subscribed this socket to (none after a connect)
  }

  /** A server push. */
  handle(type, data) {
    const {state} = this;
    switch (type) {
      case "message.created": return this._message(data.conversation_id, data.message);
      case "ai.delta": return this._delta(data);
      case "ai.failed":
      case "ai.interrupted": {
        const thread = state.threads.get(data.conversation_id);
        if (thread) thread.stream = null;
        return state.emit("stream", {id: data.conversation_id});
      }
      case "conversation.updated":
      case "conversation.assigned": {
        const c = data.conversation;
        if (c.state !== "ai") {
          const thread = state.threads.get(c.id);
          if (thread && thread.stream) {
            thread.stream = null;
            state.emit("stream", {id: c.id});
          }
        }
        const fresh = state.upsert(c);
        if (type === "conversation.assigned" && fresh) this.onAssigned(c);
        return undefined;
      }
      case "typing": {
        const thread = state.threads.get(data.conversation_id);
        if (!thread) return undefined;
        thread.typing = data.on ? data.sender_type : null;
        thread.typingAt = Date.now();
        return state.emit("typing", {id: data.conversation_id});
      }
      default:
        return undefined;
    }
  }

  _message(id, message) {
    const {state} = this;
    const c = state.conversations.get(id);
    if (c && message.seq > c.last_seq) state.conversations.set(id, {...c, last_seq: message.seq});
    if (message.sender_type === "customer") state.previews.set(id, {lastSeq: message.seq, text: message.content});
    const thread = state.threads.get(id);
    if (thread && thread.loaded) {
      if (!thread.add(message)) return;
      // an event went missing (a bus hiccup): fetch what lies between, from the last seq held without a hole
      if (message.seq > thread.heldTo) this.catchUp(id);
    }
    if (id !== state.openId && message.sender_type === "customer") {
      state.unread.set(id, (state.unread.get(id) || 0) + 1);
    }
    state.emit("message", {id, seq: message.seq});
  }

  _delta(data) {
    const thread = this.state.threads.get(data.conversation_id);
    if (!thread) return;
    let stream = thread.stream;
    if (stream && data.turn_id && stream.turnId && data.turn_id !== stream.turnId) stream = null;
    if (!stream) stream = thread.stream = {text: "", index: -1, turnId: data.turn_id || null};
    if (typeof data.index === "number") {
      if (data.index <= stream.index) return;  // already in the text the resume returned
      stream.index = data.index;
    }
    stream.text += data.delta;
    this.state.emit("stream", {id: data.conversation_id});
  }

  _stream(thread, s) {
    if (s) thread.stream = {text: s.text || "", index: typeof s.index === "number" ? s.index : -1,
      turnId: s.turn_id || null};
  }

  /** The newest page of a conversation's history (and its live events from now on). */
  async load(id) {
    const {state} = this;
    const thread = state.thread(id);
    thread.openedAt = Date.now();
    this._trim();
    if (thread.loaded) return this.catchUp(id);
    const head = await this.live.request("conversation.watch", {conversation_id: id, after_seq: MAX_SEQ, limit: 1});
    state.upsert(head.conversation);
    const start = Math.max(0, head.conversation.last_seq - PAGE);
    thread.minSeq = start + 1;
    thread.heldTo = start;
    thread.hasOlder = start > 0;
    thread.loaded = true;
    await this._forward(thread);
    return thread;
  }

  /** Stop watching conversations looked at long ago that are not the agent's own: fewer events
   * to receive, less to resume after a reconnect. */
  _trim() {
    const {state} = this;
    const others = [...state.threads.values()]
      .filter((t) => t.id !== state.openId && state.conversations.get(t.id)?.agent_id !== state.me.id)
      .sort((a, b) => (b.openedAt || 0) - (a.openedAt || 0));
    for (const thread of others.slice(KEEP_WATCHING)) {
      state.threads.delete(thread.id);
      this.live.request("conversation.unwatch", {conversation_id: thread.id}).catch(() => {});
    }
  }

  /** The page before the oldest loaded message; false when there is none. */
  async older(id) {
    const thread = this.state.threads.get(id);
    if (!thread || !thread.loaded || !thread.hasOlder || thread.loadingOlder) return false;
    thread.loadingOlder = true;
    try {
      const before = thread.minSeq - 1;
      const from = Math.max(0, before - PAGE);
      const page = await this.live.request("conversation.watch",
        {conversation_id: id, after_seq: from, limit: Math.max(1, before - from)});
      for (const m of page.messages) if (m.seq <= before) thread.add(m);
      thread.minSeq = Math.min(thread.minSeq, from + 1);
      thread.hasOlder = from > 0;
      this.state.emit("history", {id});
      return true;
    } finally {
      thread.loadingOlder = false;
    }
  }

  /** Everything after the last seq held without a hole before it (after a reconnect, or a gap). */
  catchUp(id) {
    if (!this._catchingUp.has(id)) {
      const thread = this.state.threads.get(id);
      const run = thread && thread.loaded ? this._forward(thread) : Promise.resolve(thread);
      this._catchingUp.set(id, run.finally(() => this._catchingUp.delete(id)));
    }
    return this._catchingUp.get(id);
  }

  async _forward(thread) {
    for (;;) {
      const page = await this.live.request("conversation.watch",
        {conversation_id: thread.id, after_seq: thread.heldTo, limit: 200});
      this.state.upsert(page.conversation, {quiet: true});
      for (const m of page.messages) thread.add(m);
      // the conversation is read before its messages: every seq up to its last_seq was in the pages (a seq
      // no message holds, an import's, is no hole to fetch again)
      if (!page.has_more) thread.heldTo = Math.max(thread.heldTo, page.conversation.last_seq || 0);
      if (page.conversation.state !== "ai") thread.stream = null;
      else this._stream(thread, page.ai_stream);
      if (!page.has_more || !page.messages.length) break;
    }
    this.state.emit("history", {id: thread.id});
    return thread;
  }

  /** After each (re)authentication of the socket: put everything back in step. */
  async ready() {
    const {state} = this;
    this._watched.clear();  // a new socket is subscribed to none of them
    const jobs = [this.refreshQueue(), this.refreshLists({watch: true}), this.refreshTeams()];
    if (state.presenceChosen) jobs.push(this.setPresence(state.presence));
    for (const thread of state.threads.values()) if (thread.loaded) jobs.push(this.catchUp(thread.id));
    const results = await Promise.allSettled(jobs);
    const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason);
    // the socket dropped again while resuming: the client reconnects and this runs once more
    const lost = failed.find((e) => e && (e.code === "offline" || e.code === "timeout"));
    if (lost) throw lost;
    for (const error of failed) this.onError(error);
  }

  async setPresence(status) {
    const result = await this.live.request("presence.set", {status});
    this.state.presence = result.status || status;
    this.state.presenceChosen = true;
    this.state.emit("presence");
  }

  async refreshQueue() {
    const {conversations} = await this.live.request("queue.list", {});
    const listed = new Set(conversations.map((c) => c.id));
    this.state.queueRank = new Map(conversations.map((c, i) => [c.id, i]));
    // what was found (or found missing) stays known; a failed look-up is tried again; a conversation that
    // left the queue is forgotten
    for (const [key, outcome] of this._handoffAsked) {
      if (outcome === "failed" || !listed.has(key.slice(0, key.lastIndexOf(":")))) this._handoffAsked.delete(key);
    }
    for (const c of conversations) this.state.upsert(c, {quiet: true});
    // a waiting conversation that left the queue without our hearing of it (another team's)
    for (const c of this.state.conversations.values()) {
      if (c.state === "handoff" && !listed.has(c.id)) this._reload(c.id);
    }
    this.state.emit("queue");
  }

  async _reload(id) {
    try {
      this.state.upsert(await this.auth.fetchJSON(`/api/v1/conversations/${encodeURIComponent(id)}`));
    } catch (error) {
      this.onError(error);
    }
  }

  /** The Mine and All lists from REST (after each connect, and every LISTS_REFRESH_MS: a conversation
   * that starts in `ai` sends agents no event); `watch` also subscribes to the agent's own conversations. */
  async refreshLists({watch = false} = {}) {
    const me = this.state.me.id;
    const [mine, all] = await Promise.all([
      this.auth.fetchJSON("/api/v1/conversations", {query: {agent_id: me, limit: 50}}),
      this.auth.fetchJSON("/api/v1/conversations", {query: {limit: 50}}),
    ]);
    for (const c of [...mine.items, ...all.items]) this.state.upsert(c, {quiet: true});
    for (const c of mine.items) this.state.mine.add(c.id);
    this.state.emit("lists");
    if (watch) await this.watchMine();
  }

  /** Subscribe this socket to the agent's own open conversations not watched yet: the service sends
   * message.created only to subscribers, and Mine's unread counts update live (docs/console.md). A
   * socket is subscribed to a conversation it claims or is assigned; after a reload or a reconnect it
   * is subscribed to none. */
  async watchMine() {
    const {state} = this;
    const ids = [...state.mine].filter((id) => {
      const c = state.conversations.get(id);
      const thread = state.threads.get(id);
      return c && c.state === "human" && c.agent_id === state.me.id && !(thread && thread.loaded) &&
        !this._watched.has(id);  // once per socket: the lists are read again every LISTS_REFRESH_MS
    });
    for (const id of ids) this._watched.add(id);  // from the request on: a reading meanwhile sends no second one
    for (let i = 0; i < ids.length; i += WATCH_AT_ONCE) {
      await Promise.all(ids.slice(i, i + WATCH_AT_ONCE).map((id) => this.live.request("conversation.watch",
        {conversation_id: id, after_seq: MAX_SEQ, limit: 1}).catch((error) => {
        this._watched.delete(id);  // not watched: the next reading asks again
        if (error && (error.code === "offline" || error.code === "timeout")) throw error;  // resumed again
      })));
    }
  }

  async refreshTeams() {
    const teams = await this.auth.fetchJSON("/api/v1/teams");
    this.state.teams = new Map(teams.items.map((team) => [team.id, team.name]));
    this.state.emit("teams");
  }

  /** When a waiting conversation entered handoff, for its "waiting N" text (the queue keeps queue.list's
   * order): C has no such field (a service that adds `handoff_at` to it saves this call), its transition
   * log has; asked once per version, HANDOFF_LOOKUPS at a time. */
  handoffTime(c) {
    const key = `${c.id}:${c.version}`;
    if (c.state !== "handoff" || c.handoff_at !== undefined || this.state.waitingSince(c) !== null
      || this._handoffAsked.has(key)) return;
    this._handoffAsked.set(key, "asking");
    this._handoffWaiting.push(c);
    this._nextHandoffTime();
  }

  _nextHandoffTime() {
    while (this._handoffRunning < HANDOFF_LOOKUPS && this._handoffWaiting.length) {
      const c = this._handoffWaiting.shift();
      this._handoffRunning += 1;
      this._askHandoffTime(c).finally(() => {
        this._handoffRunning -= 1;
        this._nextHandoffTime();
      });
    }
  }

  async _askHandoffTime(c) {
    const key = `${c.id}:${c.version}`;
    const now = this.state.conversations.get(c.id);
    if (!now || now.version !== c.version || now.state !== "handoff") {  // moved on while it waited its turn
      this._handoffAsked.delete(key);
      return;
    }
    try {
      const log = await this.auth.fetchJSON(`/api/v1/conversations/${encodeURIComponent(c.id)}/events`);
      const entered = log.items.filter((e) => e.to_state === "handoff" && e.from_state !== "handoff"
        && e.version <= c.version).pop();
      this._handoffAsked.set(key, entered ? "found" : "none");
      if (entered) {
        this.state.handoffAt.set(c.id, {version: c.version, at: entered.created_at});
        this.state.emit("queue");
      }
    } catch (error) {
      this._handoffAsked.set(key, "failed");
      this.onError(error);
    }
  }

  /** The last customer message of a waiting conversation, fetched once per last_seq. */
  async preview(c) {
    const key = `${c.id}:${c.last_seq}`;
    const known = this.state.previews.get(c.id);
    if ((known && known.lastSeq >= c.last_seq) || this._previewing.has(key) || !c.last_seq) return;
    this._previewing.add(key);
    try {
      const from = Math.max(0, c.last_seq - 20);
      const page = await this.auth.fetchJSON(`/api/v1/conversations/${encodeURIComponent(c.id)}/messages`,
        {query: {after_seq: from, limit: 20}});
      const last = page.items.filter((m) => m.sender_type === "customer" && !m.private).pop();
      this.state.previews.set(c.id, {lastSeq: c.last_seq, text: last ? last.content : null});
      this.state.emit("queue");
    } catch (error) {
      this.onError(error);
    }
  }
}
