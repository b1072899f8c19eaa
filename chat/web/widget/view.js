// The widget's DOM inside an open shadow root: launcher, panel, messages, notices. Message text is
// only ever set with textContent: nothing a customer, an agent or the AI writes is parsed as HTML.
// data-testid values are PROTOCOL 9's.
import { WIDGET_CSS } from "./style.js";

const MAX_MESSAGE_CHARS = 4000; // PROTOCOL 3.4: content of 1 to 4000 characters
const SVG_NS = "http://www.w3.org/2000/svg";
const BUBBLE_PATH = "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z";
const TYPING_HIDE_MS = 8000; // an agent's "typing on" without an "off" (a dropped socket) fades out
const NOTICE_HIDE_MS = 10000;

/** el("div", {class: "x", "data-testid": "y"}, child...): an element; strings become text nodes. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) node.append(child);
  return node;
}

function bubbleIcon() {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", BUBBLE_PATH);
  svg.append(path);
  return svg;
}

function adoptStyles(shadow, css) {
  try {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(css);
    shadow.adoptedStyleSheets = [sheet];
  } catch (err) {
    shadow.append(el("style", {}, css)); // browsers without constructable stylesheets
  }
}

/** The widget's elements and the few operations the controller needs; no protocol knowledge. */
export class WidgetView {
  constructor({ t, accent, onToggle, onSend, onInput, onHuman }) {
    this.t = t;
    this.host = el("div", { id: "chat-api-widget", "data-chat-api-widget": "" });
    this.shadow = this.host.attachShadow({ mode: "open" });
    adoptStyles(this.shadow, WIDGET_CSS);
    this._bySeq = new Map(); // seq -> element
    this._pending = new Map(); // client_msg_id -> element
    this._typingTimer = null;
    this._noticeTimer = null;
    this._build(onToggle, onSend, onInput, onHuman);
    if (accent) this.root.style.setProperty("--accent", accent);
    document.body.append(this.host);
  }

  _build(onToggle, onSend, onInput, onHuman) {
    const t = this.t;
    this.badge = el("span", { class: "badge", hidden: true, "aria-hidden": "true" });
    this.launcher = el("button", { class: "launcher", type: "button", "data-testid": "widget-launcher",
      "aria-label": t("open"), "aria-expanded": "false" }, bubbleIcon(), this.badge);
    this.status = el("span", { class: "status", "data-testid": "widget-status", "data-state": "offline",
      role: "status" }, t("status_offline"));
    this.stateLine = el("span", { class: "state" }, t("state_ai"));
    this.humanButton = el("button", { type: "button", "data-testid": "widget-human" }, t("human"));
    const minimise = el("button", { type: "button", class: "icon", "aria-label": t("closePanel") }, "×");
    const header = el("header", {}, el("div", { class: "titles" }, el("h2", {}, t("title")),
      el("div", { class: "sub" }, this.stateLine, this.status)), this.humanButton, minimise);
    this.handoffBanner = el("div", { class: "banner", "data-testid": "widget-handoff", hidden: true, role: "status" },
      t("handoff"));
    this.agentBanner = el("div", { class: "banner agent", "data-testid": "widget-agent", hidden: true,
      role: "status" }, t("agentJoined"));
    this.closedBanner = el("div", { class: "banner closed", "data-testid": "widget-closed", hidden: true,
      role: "status" }, t("closed"));
    this.notice = el("div", { class: "banner notice", "data-testid": "widget-notice", hidden: true, role: "status" });
    this.messages = el("div", { class: "messages" });
    this.pendingList = el("div", { class: "pending" });
    this.stream = el("div", { class: "msg stream", "data-testid": "widget-ai-stream", "data-sender-type": "ai",
      hidden: true });
    this.typing = el("div", { class: "typing", "data-testid": "widget-typing", hidden: true }, t("typing"));
    this.log = el("div", { class: "log", role: "log", "aria-live": "polite" },
      el("div", { class: "welcome" }, t("welcome")), this.messages, this.pendingList, this.stream, this.typing);
    this.csat = el("div", { class: "csat", "data-testid": "widget-csat", hidden: true });
    this.input = el("textarea", { "data-testid": "widget-input", rows: 1,
      placeholder: t("placeholder"), "aria-label": t("placeholder") });
    this.sendButton = el("button", { type: "button", "data-testid": "widget-send", disabled: true }, t("send"));
    this.panel = el("section", { class: "panel", role: "dialog", "aria-label": t("title"), hidden: true },
      header, this.handoffBanner, this.agentBanner, this.closedBanner, this.notice, this.log, this.csat,
      el("footer", {}, this.input, this.sendButton));
    this.root = el("div", { class: "root", lang: t.language === "zh" ? "zh-CN" : "en" }, this.panel, this.launcher);
    this.shadow.append(this.root);

    this.launcher.addEventListener("click", () => onToggle());
    minimise.addEventListener("click", () => onToggle(false));
    this.humanButton.addEventListener("click", () => onHuman());
    const send = () => {
      const text = this.input.value.trim();
      if (!text) return;
      // counted as the service counts (code points); refused whole and kept, never cut (maxlength cut pastes
      // silently, and counted an emoji twice)
      if ([...text].length > MAX_MESSAGE_CHARS) {
        this.showNotice(t("tooLong"));
        return;
      }
      if (this.notice.textContent === t("tooLong")) this.showNotice(""); // shortened: it was sent
      this.input.value = "";
      this._inputChanged();
      onSend(text);
    };
    this.sendButton.addEventListener("click", send);
    this.input.addEventListener("keydown", (event) => {
      // Enter sends, Shift+Enter breaks the line; never while an IME is composing (pinyin input)
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        send();
      }
    });
    // Escape closes the panel and gives the focus back to the launcher
    this.panel.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || event.isComposing) return;
      event.preventDefault();
      onToggle(false);
      this.launcher.focus();
    });
    this.input.addEventListener("input", () => {
      this._inputChanged();
      onInput(this.input.value.length > 0);
    });
  }

  _inputChanged() {
    this.sendButton.disabled = this.input.value.trim().length === 0;
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, 120)}px`;
  }

  /** Open or close the panel; `focus`: put the cursor in the input (the visitor opened it, not a page
   * load restoring it: the host page keeps its own focus then). */
  setOpen(open, { focus = true } = {}) {
    this.panel.hidden = !open;
    this.root.classList.toggle("open", open);
    this.launcher.setAttribute("aria-expanded", String(open));
    if (open) {
      this.setUnread(0);
      this._scrollDown(true);
      if (focus) this.input.focus({ preventScroll: true });
    }
  }

  /** The connection state: connecting / online / offline. */
  setStatus(state) {
    this.status.dataset.state = state;
    this.status.textContent = this.t(`status_${state}`);
  }

  /** The conversation's state: the header line, the notices, the handoff button. */
  setConversationState(state, agentId) {
    const stick = this._atBottom(); // a banner shown or hidden changes the log's height
    this.stateLine.textContent = this.t(`state_${state}`, { agent: agentId || "" });
    this.handoffBanner.hidden = state !== "handoff";
    this.agentBanner.hidden = state !== "human";
    this.closedBanner.hidden = state !== "closed";
    this.humanButton.hidden = state !== "ai"; // waiting or with an agent already; closed: writing reopens it
    if (state !== "human") this.showTyping(false);
    this._scrollDown(stick);
  }

  /** A passing notice (a refused request); "" hides it. */
  showNotice(text) {
    clearTimeout(this._noticeTimer);
    const stick = this._atBottom();
    this.notice.textContent = text;
    this.notice.hidden = !text;
    this._scrollDown(stick);
    if (text) this._noticeTimer = setTimeout(() => this.showNotice(""), NOTICE_HIDE_MS);
  }

  /** The count on the launcher while the panel is closed. */
  setUnread(count) {
    this.badge.hidden = count === 0;
    this.badge.textContent = count > 99 ? "99+" : String(count);
    this.launcher.setAttribute("aria-label", count ? `${this.t("open")} (${this.t("unread", { count })})`
      : this.t("open"));
  }

  /** Whether a message of this seq is shown. */
  hasSeq(seq) {
    return this._bySeq.has(seq);
  }

  /** Take every stored message off the screen (another conversation, or another user, now). */
  clearMessages() {
    for (const node of this._bySeq.values()) node.remove();
    this._bySeq.clear();
    this.setStream("");
  }

  /** Take every message not yet stored off the screen (another user now). */
  clearPending() {
    for (const node of this._pending.values()) node.remove();
    this._pending.clear();
  }

  /** Show a stored message once, in seq order; it replaces its pending copy. */
  addMessage(message) {
    this.removePending(message.client_msg_id);
    if (this._bySeq.has(message.seq)) return false;
    const stick = this._atBottom();
    const node = el("div", { class: "msg", "data-testid": "widget-message", "data-seq": message.seq,
      "data-sender-type": message.sender_type },
    el("span", { class: "who" }, this._who(message.sender_type)), message.content);
    let after = null; // the first shown message with a higher seq
    for (const [seq, other] of this._bySeq) if (seq > message.seq && (!after || seq < Number(after.dataset.seq))) after = other;
    this.messages.insertBefore(node, after);
    this._bySeq.set(message.seq, node);
    this._scrollDown(stick);
    return true;
  }

  _who(senderType) {
    return this.t({ customer: "you", ai: "ai", agent: "agent", system: "system" }[senderType] || "system");
  }

  /** A message sent but not stored yet (no seq, so no data-seq). */
  addPending(clientMsgId, content) {
    if (this._pending.has(clientMsgId)) return;
    const node = el("div", { class: "msg pending-msg", "data-testid": "widget-pending", "data-sender-type": "customer",
      "data-client-msg-id": clientMsgId, title: this.t("sending") }, content);
    this._pending.set(clientMsgId, node);
    this.pendingList.append(node);
    this._scrollDown(true); // the customer's own message: always in view
  }

  /** A pending message the service refused (it stays visible, marked). */
  failPending(clientMsgId, reason) {
    const node = this._pending.get(clientMsgId);
    if (!node) return;
    node.classList.add("failed");
    node.title = this.t("failed", { reason });
    this._pending.delete(clientMsgId);
  }

  removePending(clientMsgId) {
    const node = clientMsgId && this._pending.get(clientMsgId);
    if (!node) return;
    node.remove();
    this._pending.delete(clientMsgId);
  }

  /** Append a piece of the AI reply being streamed. */
  appendStream(delta) {
    const stick = this._atBottom();
    this.stream.hidden = false;
    this.stream.textContent += delta;
    this._scrollDown(stick);
  }

  /** Replace the streamed text (a resumed stream) or drop it (""). */
  setStream(text) {
    this.stream.textContent = text;
    this.stream.hidden = text === "";
  }

  /** The agent's typing indicator. */
  showTyping(on) {
    clearTimeout(this._typingTimer);
    const stick = this._atBottom();
    this.typing.hidden = !on;
    this._scrollDown(stick);
    if (on) this._typingTimer = setTimeout(() => this.showTyping(false), TYPING_HIDE_MS);
  }

  /** The satisfaction prompt: 1-5; onScore(score) resolves when stored (then thanks) or rejects. */
  showCsat(onScore) {
    const t = this.t;
    const buttons = [1, 2, 3, 4, 5].map((score) => {
      const button = el("button", { type: "button", "data-score": score, "aria-label": t("csatScore", { score }) },
        String(score));
      button.addEventListener("click", async () => {
        buttons.forEach((b) => { b.disabled = true; });
        try {
          await onScore(score);
          this.csat.replaceChildren(el("div", {}, t("csatThanks")));
        } catch (err) {
          buttons.forEach((b) => { b.disabled = false; });
        }
      });
      return button;
    });
    const stick = this._atBottom();
    this.csat.replaceChildren(el("div", {}, t("csatQuestion")), el("div", { class: "scores" }, ...buttons));
    this.csat.hidden = false;
    this._scrollDown(stick); // the prompt takes room from the log: keep its newest messages in view
  }

  hideCsat() {
    const stick = this._atBottom();
    this.csat.hidden = true;
    this._scrollDown(stick);
  }

  // follow new content only when the reader is at the end (not while they scroll back through history)
  _atBottom() {
    const log = this.log;
    return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }

  _scrollDown(stick) {
    if (stick) this.log.scrollTop = this.log.scrollHeight;
  }
}
