// The conversation view: the history (older pages load as the agent scrolls up), the AI's
// reply as it streams, typing, the composer (reply or private note) and the actions (take
// over, release, transfer, close). Every text is set with textContent.

import {CannedMenu} from "./canned.js";
import {clock, h, replace} from "./dom.js";
import {confirmDialog, transferDialog} from "./dialogs.js";
import {customerName} from "./state.js";

const TYPING_IDLE_MS = 4000;
const TYPING_SHOWN_MS = 10000;
const MAX_CONTENT_CHARS = 4000;

function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export class ConversationView {
  constructor({state, t, live, auth, sync, toast}) {
    Object.assign(this, {state, t, live, auth, sync, toast});
    this.noteMode = false;
    this.rendered = new Map();  // seq -> element, for the thread on screen
    this.renderedId = null;
    this._typingSent = 0;
    this._typingTimer = null;

    this.title = h("h2", {class: "title"});
    this.badge = h("span", {class: "badge", testid: "conversation-state"});
    this.info = h("div", {class: "info"});
    this.buttons = {
      claim: h("button", {type: "button", class: "primary", testid: "claim-button", text: t("conv.claim"),
        on: {click: () => this.claim()}}),
      release: h("button", {type: "button", testid: "release-button", text: t("conv.release"),
        on: {click: () => this.release()}}),
      transfer: h("button", {type: "button", testid: "transfer-button", text: t("conv.transfer"),
        on: {click: () => this.transfer()}}),
      close: h("button", {type: "button", class: "danger", testid: "close-button", text: t("conv.close"),
        on: {click: () => this.close()}}),
    };
    this.top = h("div", {class: "history-top"});
    this.list = h("div", {class: "messages", role: "log", "aria-live": "polite"});
    this.stream = h("div", {class: "msg from-ai streaming", testid: "ai-stream", hidden: true},
      h("div", {class: "meta", text: t("conv.aiWriting")}), h("div", {class: "text"}));
    this.typing = h("div", {class: "typing", "aria-live": "polite"});
    this.scroller = h("div", {class: "scroller"}, this.top, this.list, this.stream);
    this.scroller.addEventListener("scroll", () => this._maybeOlder());

    // PROTOCOL 3.4: content is 1-4000 characters (code points), checked on submit: no maxlength, which would
    // cut a longer paste silently and counts UTF-16 units; the accessible name follows the placeholder
    this.input = h("textarea", {testid: "message-input", rows: 3});
    this.input.addEventListener("keydown", (e) => this._keydown(e));
    this.input.addEventListener("input", () => this._typed());
    this.canned = new CannedMenu({t, live, toast, input: this.input, conversationId: () => this.state.openId});
    this.noteToggle = h("button", {type: "button", class: "note-toggle", testid: "note-toggle",
      "aria-pressed": "false", title: t("conv.noteOff"), text: t("conv.note"),
      on: {click: () => this.setNote(!this.noteMode)}});
    this.send = h("button", {type: "button", class: "primary", testid: "send-button", text: t("conv.send"),
      on: {click: () => this.submit()}});
    this.composer = h("div", {class: "composer"}, this.noteToggle,
      h("div", {class: "composer-field"}, this.canned.el, this.input), this.send);

    this.empty = h("div", {class: "placeholder", text: t("conv.none")});
    this.body = h("div", {class: "conversation", hidden: true},
      h("header", {class: "conv-header"},
        h("div", {class: "heading"}, this.title, this.badge, this.info),
        h("div", {class: "actions"}, Object.values(this.buttons))),
      this.scroller, this.typing, this.composer);
    this.el = h("main", {class: "main"}, this.empty, this.body);
    this._typingTick = setInterval(() => this._expireTyping(), 2000);
  }

  /** Stop the timers (signed out). */
  dispose() {
    clearInterval(this._typingTick);
    clearTimeout(this._typingTimer);
  }

  get conversation() {
    return this.state.conversations.get(this.state.openId) || null;
  }

  /** Show a conversation (loading its newest page when it is not loaded yet). */
  async open(id) {
    const {state} = this;
    if (state.openId !== id) {
      this._stopTyping();
      this.canned.close();
    }
    state.openId = id;
    state.unread.delete(id);
    this.render();
    state.emit("open", {id});
    try {
      await this.sync.load(id);
    } catch (error) {
      this.toast(error);
    }
    const refused = state.threads.get(id)?.refused;
    if (refused && refused.length && state.openId === id) {
      state.threads.get(id).refused = [];
      this._restoreAll(refused);
    }
    if (state.openId === id) {
      this.render();
      this._toBottom();
      this._maybeOlder();
    }
  }

  setNote(on) {
    this.noteMode = on;
    this.noteToggle.setAttribute("aria-pressed", String(on));
    this.noteToggle.title = this.t(on ? "conv.noteOn" : "conv.noteOff");
    this.renderComposer();
    this.input.focus();
  }

  render() {
    const c = this.conversation;
    this.empty.hidden = Boolean(c);
    this.body.hidden = !c;
    if (!c) return;
    const {t, state} = this;
    const me = state.me;
    const mine = c.agent_id === me.id;
    const admin = me.role === "admin";
    this.title.textContent = t("conv.customer", {id: customerName(c)});
    this.badge.textContent = t(`state.${c.state}`);
    this.badge.className = `badge state-${c.state}`;
    this.badge.dataset.state = c.state;
    replace(this.info,
      h("span", {text: c.agent_id ? t("conv.agent", {id: c.agent_id}) : t("conv.unassigned")}),
      c.team_id ? h("span", {text: t("conv.team", {name: state.teamName(c.team_id)})}) : null);
    this.buttons.claim.hidden = !(c.state === "ai" || c.state === "handoff");
    this.buttons.release.hidden = !((c.state === "human" && (mine || admin)) || c.state === "handoff");
    this.buttons.transfer.hidden = !(c.state === "human" && (mine || admin));
    this.buttons.close.hidden = !(c.state !== "closed" && (mine || admin || !c.agent_id));
    this.renderMessages();
    this.renderStream();
    this.renderTyping();
    this.renderComposer();
  }

  renderComposer() {
    const c = this.conversation;
    if (!c) return;
    const canReply = c.state === "human" && c.agent_id === this.state.me.id;
    this.composer.classList.toggle("note", this.noteMode);
    // "take over" only where the Take over button is shown (ai, handoff)
    const readonly = {closed: "conv.placeholder.closed", human: "conv.placeholder.others"}[c.state]
      || "conv.placeholder.readonly";
    this.input.placeholder = this.t(this.noteMode ? "conv.placeholder.note"
      : canReply ? "conv.placeholder.reply" : readonly);
    this.input.setAttribute("aria-label", this.input.placeholder);
    this.send.textContent = this.t(this.noteMode ? "conv.addNote" : "conv.send");
    this.send.disabled = !(this.noteMode || canReply);
  }

  renderMessages() {
    const id = this.state.openId;
    const thread = this.state.threads.get(id);
    if (this.renderedId !== id) {
      this.rendered.clear();
      this.list.replaceChildren();
      this.renderedId = id;
    }
    if (!thread) return;
    const nearBottom = this._nearBottom();
    const oldHeight = this.scroller.scrollHeight;
    const oldTop = this.scroller.scrollTop;
    let prepended = false;
    const seqs = [...this.rendered.keys()].sort((a, b) => a - b);
    for (const m of thread.sorted()) {
      if (this.rendered.has(m.seq)) continue;
      const el = this._message(m);
      // insert before the first rendered message with a higher seq
      const after = seqs.find((s) => s > m.seq);
      if (after === undefined) this.list.append(el);
      else {
        this.list.insertBefore(el, this.rendered.get(after));
        if (after === seqs[0]) prepended = true;
      }
      this.rendered.set(m.seq, el);
      seqs.push(m.seq);
      seqs.sort((a, b) => a - b);
    }
    for (const el of [...this.list.querySelectorAll("[data-testid=message-pending]")]) el.remove();
    for (const [clientId, p] of thread.pending) this.list.append(this._pending(clientId, p));
    replace(this.top, thread.hasOlder ? this.t("conv.loadingOlder") : this.t("conv.start"));
    if (prepended && !nearBottom) {
      this.scroller.scrollTop = oldTop + (this.scroller.scrollHeight - oldHeight);
    } else if (nearBottom) this._toBottom();
  }

  _message(m) {
    const {t, state} = this;
    const who = m.sender_type === "agent"
      ? (m.sender_id === state.me.id ? t("sender.you") : t("sender.agent", {id: m.sender_id}))
      : t(`sender.${m.sender_type}`);
    return h("div", {class: `msg from-${m.sender_type}${m.private ? " private" : ""}`, testid: "message",
      data: {seq: m.seq, senderType: m.sender_type, private: m.private ? "true" : "false"}},
    h("div", {class: "meta"},
      h("span", {class: "sender", text: who}),
      m.private ? h("span", {class: "note-tag", text: t("conv.privateNote")}) : null,
      h("time", {datetime: m.created_at, text: clock(m.created_at)})),
    h("div", {class: "text", text: m.content}));
  }

  _pending(clientId, p) {
    return h("div", {class: `msg from-agent pending${p.private ? " private" : ""}`,
      testid: "message-pending", data: {clientMsgId: clientId}},
    h("div", {class: "meta", text: "…"}),
    h("div", {class: "text", text: p.content}));
  }

  renderStream() {
    const thread = this.state.threads.get(this.state.openId);
    const stream = thread && thread.stream;
    const nearBottom = this._nearBottom();
    this.stream.hidden = !stream;
    this.stream.lastChild.textContent = stream ? stream.text : "";
    if (stream && nearBottom) this._toBottom();
  }

  renderTyping() {
    const thread = this.state.threads.get(this.state.openId);
    const who = thread && thread.typing;
    this.typing.textContent = who === "customer" ? this.t("conv.typing")
      : who === "agent" ? this.t("conv.agentTyping") : "";
  }

  _expireTyping() {
    for (const thread of this.state.threads.values()) {
      if (thread.typing && Date.now() - thread.typingAt > TYPING_SHOWN_MS) {
        thread.typing = null;
        if (thread.id === this.state.openId) this.renderTyping();
      }
    }
  }

  _keydown(e) {
    if (this.canned.keydown(e)) return;  // the canned responses menu takes Enter, Tab, arrows, Escape
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      this.submit();
    }
  }

  _typed() {
    const c = this.conversation;
    if (!c || this.noteMode || c.state !== "human" || c.agent_id !== this.state.me.id) return;
    const now = Date.now();
    if (now - this._typingSent > TYPING_IDLE_MS - 1000) {
      this._typingSent = now;
      this.live.notify("typing", {conversation_id: c.id, on: true});
    }
    clearTimeout(this._typingTimer);
    this._typingTimer = setTimeout(() => this._stopTyping(), TYPING_IDLE_MS);
  }

  _stopTyping() {
    clearTimeout(this._typingTimer);
    if (this._typingSent && this.state.openId) {
      this.live.notify("typing", {conversation_id: this.state.openId, on: false});
    }
    this._typingSent = 0;
  }

  /** Send the composer's text as a reply or, in note mode, as a private note. */
  async submit() {
    const c = this.conversation;
    const content = this.input.value;
    if (!c || !content.trim() || this.send.disabled) return;
    if ([...content].length > MAX_CONTENT_CHARS) {  // refused as the service would (too_large); the text stays
      this.toast({code: "too_large", message: `over ${MAX_CONTENT_CHARS} characters`});
      this.input.focus();
      return;
    }
    const isPrivate = this.noteMode;
    const clientId = newId();
    const thread = this.state.thread(c.id);
    const pending = {content, private: isPrivate};
    thread.pending.set(clientId, pending);
    this.input.value = "";
    this.canned.close();
    if (!isPrivate) this._stopTyping();
    this.renderMessages();
    this._toBottom();
    try {
      const result = await this.live.send({conversation_id: c.id, client_msg_id: clientId, content,
        private: isPrivate});
      if (result && result.message) this.sync.handle("message.created", {conversation_id: c.id,
        message: result.message});
    } catch (error) {
      // refused (too long, no longer the agent's...): said once, and the text goes back to the composer
      thread.pending.delete(clientId);
      this.toast(error);
      if (this.state.openId === c.id) this._restore(content, isPrivate);
      else thread.refused.push({content, private: isPrivate});  // back in the composer when it is opened again
    }
    if (this.state.openId === c.id) this.renderMessages();
  }

  /** Put a refused message back in the composer: in front of anything written since, on its own line. */
  _restore(content, isPrivate) {
    const written = this.input.value;
    if (!written) this.setNote(isPrivate);
    this.input.value = written ? `${content}\n${written}` : content;
    this.input.focus();
  }

  /** Put several refused messages back, in the order they were written, in front of anything written
   * since; the note mode follows the first one when the composer was empty. */
  _restoreAll(refused) {
    const written = this.input.value;
    if (!written) this.setNote(refused[0].private);
    this.input.value = [...refused.map((r) => r.content), ...(written ? [written] : [])].join("\n");
    this.input.focus();
  }

  async _act(type, fields = {}) {
    const c = this.conversation;
    const result = await this.live.request(type, {conversation_id: c.id, ...fields});
    if (result && result.conversation) this.state.upsert(result.conversation);
    return result;
  }

  async claim() {
    try {
      await this._act("conversation.claim");
      this.input.focus();
    } catch (error) {
      this.toast(error);
    }
  }

  release() {
    confirmDialog(this.t, this.t("confirm.release"), () => this._guard(this._act("conversation.release")));
  }

  close() {
    confirmDialog(this.t, this.t("confirm.close"), () => this._guard(this._act("conversation.close")));
  }

  async transfer() {
    try {
      const [agents, teams] = await Promise.all([
        this.auth.fetchJSON("/api/v1/agents"), this.auth.fetchJSON("/api/v1/teams")]);
      transferDialog(this.t, {agents: agents.items, teams: teams.items, meId: this.state.me.id,
        transfer: (target) => this._guard(this._act("conversation.transfer", target))});
    } catch (error) {
      this.toast(error);
    }
  }

  /** Errors inside a dialog are shown there, in words. */
  async _guard(promise) {
    try {
      return await promise;
    } catch (error) {
      error.userMessage = this.toast.describe(error);
      throw error;
    }
  }

  _nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  _toBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  async _maybeOlder() {
    const id = this.state.openId;
    const thread = id && this.state.threads.get(id);
    if (!thread || !thread.hasOlder || thread.loadingOlder || this.scroller.scrollTop > 120) return;
    try {
      if (await this.sync.older(id)) {
        // the page may not fill the screen yet: keep going while the top is in view
        requestAnimationFrame(() => this._maybeOlder());
      }
    } catch (error) {
      this.toast(error);
    }
  }
}
