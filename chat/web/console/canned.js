// Canned responses in the composer: "/" at the start of the message offers those whose short code
// starts with what follows it, their placeholders filled for the open conversation by the service
// (`canned.list`). Up/Down choose, Enter or Tab (or a click) put the chosen one's text in place of
// "/code", Escape closes. Every text is set with textContent.

import {h, replace} from "./dom.js";

const ASK_AFTER_MS = 150;  // one canned.list per pause in typing, not one per key
const TRIGGER = /^\/(\S{0,64})$/;  // the text before the caret: "/" and a short-code prefix (≤ 64 characters)

export class CannedMenu {
  /** A menu for `input`; `conversationId()` names the open conversation (its customer fills the text). */
  constructor({t, live, toast, input, conversationId}) {
    Object.assign(this, {t, live, toast, input, conversationId});
    this.items = [];
    this.active = -1;
    this.waiting = false;  // a question is due or on its way: Enter must not send "/code" meanwhile
    this._timer = null;
    this._asked = 0;  // the number of the latest question; answers to older ones are dropped
    this.el = h("ul", {class: "canned", role: "listbox", id: "canned-list", hidden: true,
      "aria-label": t("canned.title")});
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-controls", this.el.id);
    input.setAttribute("aria-expanded", "false");
    input.addEventListener("input", () => this.update());
    input.addEventListener("blur", () => this.close());
  }

  get isOpen() {
    return !this.el.hidden;
  }

  /** Follow the composer: ask for matches while the text before the caret is "/code". */
  update() {
    const match = TRIGGER.exec(this.input.value.slice(0, this.input.selectionStart));
    if (!match) {
      this.close();
      return;
    }
    clearTimeout(this._timer);
    this.waiting = true;
    this._timer = setTimeout(() => this._ask(match[1]), ASK_AFTER_MS);
  }

  async _ask(prefix) {
    const asked = ++this._asked;
    const conversationId = this.conversationId();
    try {
      const result = await this.live.request("canned.list", {prefix, conversation_id: conversationId});
      if (asked !== this._asked || conversationId !== this.conversationId()) return;
      this.show(result.items);
    } catch (error) {
      if (asked !== this._asked) return;
      this.close();
      if (error.code !== "offline") this.toast(error);  // offline: the banner says so already
    }
  }

  /** Show the matches, the first one chosen; none closes the menu. */
  show(items) {
    this.waiting = false;
    this.items = items;
    if (!items.length) {
      this.close();
      return;
    }
    replace(this.el, items.map((item, i) => h("li", {
      role: "option", id: `canned-${i}`, class: "canned-item", testid: "canned-item",
      data: {shortCode: item.short_code}, title: item.text,
      // keep the focus (and the caret) in the composer while clicking
      on: {mousedown: (e) => e.preventDefault(), click: () => this.insert(item)},
    }, h("span", {class: "code", text: `/${item.short_code}`}), h("span", {class: "text", text: item.text}))));
    this.el.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
    this.choose(0);
  }

  /** Mark the i-th item as the chosen one (wrapping around). */
  choose(i) {
    const options = this.el.children;
    this.active = (i + options.length) % options.length;
    [...options].forEach((el, n) => el.setAttribute("aria-selected", String(n === this.active)));
    const chosen = options[this.active];
    this.input.setAttribute("aria-activedescendant", chosen.id);
    chosen.scrollIntoView({block: "nearest"});
  }

  /** Put the item's filled text in place of "/code" (what follows the caret stays). */
  insert(item) {
    const rest = this.input.value.slice(this.input.selectionStart);
    this.close();
    this.input.value = item.text + rest;
    this.input.setSelectionRange(item.text.length, item.text.length);
    this.input.focus();
    this.input.dispatchEvent(new Event("input"));  // the customer sees "typing", as when typed
  }

  close() {
    clearTimeout(this._timer);
    this._asked++;
    this.waiting = false;
    this.items = [];
    this.active = -1;
    this.el.hidden = true;
    this.el.replaceChildren();
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }

  /** The composer's keydown while the menu is open or due: true when the menu took the key. */
  keydown(e) {
    if (e.isComposing || e.keyCode === 229) return false;
    const plain = !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey;
    if (!this.isOpen) {
      if (!this.waiting || !((e.key === "Enter" && plain) || e.key === "Escape")) return false;
      // the matches are on their way: "/code" is no reply to send
      if (e.key === "Escape") this.close();
      e.preventDefault();
      return true;
    }
    if (e.key === "ArrowDown" || e.key === "ArrowUp") this.choose(this.active + (e.key === "ArrowDown" ? 1 : -1));
    else if ((e.key === "Enter" || e.key === "Tab") && plain) this.insert(this.items[this.active]);
    else if (e.key === "Escape") this.close();
    else return false;
    e.preventDefault();
    return true;
  }
}
