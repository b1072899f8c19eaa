// What the console knows: the conversations (C) it has seen, the lists they belong to, and
// per open conversation the messages by seq. Views listen to its "change" events; the live
// connection and REST calls feed it. Updates are kept by (id, version) so an event delivered
// twice (subscriber and queue recipient) or late never moves a conversation backwards.

export const PAGE = 50;  // messages per history page
const MAX_SEQ = 2147483647;

export class Thread {
  constructor(id) {
    this.id = id;
    this.messages = new Map();  // seq -> M
    this.minSeq = null;  // the oldest seq loaded
    this.heldTo = 0;  // every seq up to this one is held (from the first one loaded): where a catch-up starts
    this.hasOlder = false;
    this.loaded = false;
    this.stream = null;  // {text, index, turnId} while the AI reply streams
    this.typing = null;  // sender_type of whoever is typing
    this.pending = new Map();  // client_msg_id -> {content, private} until the server stores it
    this.refused = [];  // [{content, private}]: messages refused while another conversation was open, oldest first
  }

  /** Add a stored message; false when it was already there. */
  add(message) {
    const seq = message.seq;
    if (this.messages.has(seq)) return false;
    this.messages.set(seq, message);
    if (message.client_msg_id) this.pending.delete(message.client_msg_id);
    if (this.minSeq === null || seq < this.minSeq) this.minSeq = seq;
    while (this.messages.has(this.heldTo + 1)) this.heldTo += 1;
    if (message.sender_type === "ai") this.stream = null;  // the reply being streamed is now stored
    return true;
  }

  sorted() {
    return [...this.messages.values()].sort((a, b) => a.seq - b.seq);
  }
}

export class State extends EventTarget {
  constructor() {
    super();
    this.me = null;  // {id, role, name}
    this.conversations = new Map();  // id -> C
    this.mine = new Set();  // ids listed under "mine" (assigned to me now or when closed)
    this.all = new Set();  // ids listed under "all"
    this.unread = new Map();  // id -> count
    this.previews = new Map();  // id -> {lastSeq, text}
    this.threads = new Map();  // id -> Thread
    this.openId = null;
    this.status = "connecting";  // connection: connecting / online / offline
    this.presence = "away";
    this.teams = new Map();  // team id -> name
    this.queueRank = new Map();  // id -> place in the last queue.list (the service's order: longest waiting first)
    this.handoffAt = new Map();  // id -> {version, at}: when it entered handoff, from its transition log
  }

  emit(what, detail = {}) {
    this.dispatchEvent(new CustomEvent("change", {detail: {what, ...detail}}));
  }

  /** Take a conversation object in; true when it changed what we knew. */
  upsert(conversation, {quiet = false} = {}) {
    const known = this.conversations.get(conversation.id);
    if (known && conversation.version < known.version) return false;
    // a list read over REST may be older than the messages pushed since (the same version)
    if (known && conversation.version === known.version && known.last_seq > conversation.last_seq) {
      conversation = {...conversation, last_seq: known.last_seq};
    }
    this.conversations.set(conversation.id, conversation);
    this.all.add(conversation.id);
    if (this.me && conversation.agent_id === this.me.id) this.mine.add(conversation.id);
    else if (conversation.state !== "closed") this.mine.delete(conversation.id);
    if (!quiet) this.emit("conversation", {id: conversation.id});
    return true;
  }

  thread(id) {
    let thread = this.threads.get(id);
    if (!thread) {
      thread = new Thread(id);
      this.threads.set(id, thread);
    }
    return thread;
  }

  /** When a waiting conversation entered handoff (ms), or null while unknown. Not updated_at: a
   * message or a label moves that, and a REST copy carries the last message's time. */
  waitingSince(c) {
    const known = this.handoffAt.get(c.id);
    const at = c.handoff_at || (known && known.version === c.version ? known.at : null);
    return at ? Date.parse(at) : null;
  }

  /** The waiting conversations, longest waiting first (PROTOCOL 3.5): in the order of the last queue.list
   * (the service's: by the time each entered handoff, known to it even where the console cannot learn it),
   * then the ones heard of since (the newest arrivals), by the time they entered handoff where known, else
   * by their updated_at (a move into handoff sets it). */
  queue() {
    const rank = (c) => this.queueRank.get(c.id) ?? Infinity;
    const since = (c) => this.waitingSince(c) ?? (Date.parse(c.updated_at) || Infinity);
    const order = (x, y) => (x < y ? -1 : x > y ? 1 : 0);
    return [...this.conversations.values()]
      .filter((c) => c.state === "handoff")
      .sort((a, b) => order(rank(a), rank(b)) || order(since(a), since(b)) || order(a.id, b.id));
  }

  list(which) {
    const ids = which === "mine" ? this.mine : this.all;
    return [...ids].map((id) => this.conversations.get(id)).filter(Boolean)
      .sort((a, b) => (a.created_at > b.created_at ? -1 : a.created_at < b.created_at ? 1 : a.id > b.id ? -1 : 1));
  }

  teamName(id) {
    return id ? this.teams.get(id) || id : null;
  }
}

/** How to call the customer: the `name` the site put in the metadata, else the user id. */
export function customerName(c) {
  const name = c.metadata && c.metadata.name;
  return typeof name === "string" && name.trim() ? name.trim().slice(0, 80) : c.user_id;
}

export {MAX_SEQ};
