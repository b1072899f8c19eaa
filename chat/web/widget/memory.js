// What the widget keeps across page loads, in localStorage under one key per service: the visitor
// token (anonymous visitors), the conversation id, the highest seq shown, the unacknowledged
// message.send frames (resent with their client_msg_id after a reload) and the messages written
// before the conversation existed (sent, with their client_msg_id, once it is started). A browser
// that refuses storage (private mode, blocked cookies) still gets a working widget, only without the
// memory.

/** The JWT's payload (`sub`, `exp`...) read without checking it: the service checks it. */
export function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(Array.from(atob(part), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`).join(""));
    return JSON.parse(json);
  } catch (err) {
    return {};
  }
}

export class WidgetMemory {
  constructor(server) {
    this.key = `chat-api-widget:${new URL(server).origin}`;
    this.data = {};
    try {
      this.data = JSON.parse(localStorage.getItem(this.key) || "{}") || {};
    } catch (err) {
      this.data = {};
    }
  }

  get(name) {
    return this.data[name];
  }

  /** The record as stored now: another tab of the same site may have written it since this one read it
   * (this tab's own copy when storage is refused). */
  stored() {
    try {
      return JSON.parse(localStorage.getItem(this.key) || "{}") || {};
    } catch (err) {
      return { ...this.data };
    }
  }

  /** Set some fields and write them through, into the record as stored now: the fields another tab wrote
   * meanwhile are kept, not overwritten with this tab's older copy. */
  update(fields) {
    Object.assign(this.data, fields);
    try {
      localStorage.setItem(this.key, JSON.stringify({ ...this.stored(), ...fields }));
    } catch (err) {
      // storage full or refused: the widget works on, it only forgets on reload
    }
  }

  /** The messages written before the conversation existed, as stored now (another tab may have sent them,
   * or written more); this tab's own list when the stored record is another user's. */
  storedUnsent() {
    const stored = this.stored();
    return (stored.user_id === this.data.user_id ? stored.unsent : this.data.unsent) || [];
  }

  /** Add a message written before the conversation existed (to the stored list: another tab's count too). */
  addUnsent(message) {
    this.update({ unsent: [...this.storedUnsent(), message] });
  }

  /** A new identity (another user): forget that user's conversation and unsent messages; true when it was.
   * The first identity (none known yet: a new visitor before its first token) is no other user: what was
   * written before it came is its own, kept and sent. */
  forUser(userId) {
    if (this.data.user_id === userId) return false;
    if (this.data.user_id === undefined || this.data.user_id === null) {
      this.update({ user_id: userId });
      return false;
    }
    this.update({ user_id: userId, conversation_id: null, last_seq: 0, outbox: [], unsent: [] });
    return true;
  }
}
