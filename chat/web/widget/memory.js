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

  /** Set some fields and write them through. */
  update(fields) {
    Object.assign(this.data, fields);
    try {
      localStorage.setItem(this.key, JSON.stringify(this.data));
    } catch (err) {
      // storage full or refused: the widget works on, it only forgets on reload
    }
  }

  /** A new identity (another user): forget that user's conversation and unsent messages; true when it was. */
  forUser(userId) {
    if (this.data.user_id === userId) return false;
    this.update({ user_id: userId, conversation_id: null, last_seq: 0, outbox: [], unsent: [] });
    return true;
  }
}
