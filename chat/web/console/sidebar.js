// The left column: the queue (waiting conversations, oldest first, with waiting time, team
// and the customer's last message) and the "mine" / "all" lists with state badges and
// unread counts. Items are kept by id and updated in place, so a click never lands on a
// node that a re-render just threw away.

import {duration, h, replace} from "./dom.js";
import {customerName} from "./state.js";

/** Keep container's children in the order of items, one element per key, made or updated. */
export function syncList(container, items, {key, create, update, empty}) {
  const existing = new Map();
  for (const child of [...container.children]) {
    if (child.dataset.key) existing.set(child.dataset.key, child);
    else child.remove();
  }
  const wanted = new Set(items.map(key));
  for (const [k, el] of existing) if (!wanted.has(k)) el.remove();
  let previous = null;
  for (const item of items) {
    const k = key(item);
    let el = existing.get(k);
    if (!el) {
      el = create(item);
      el.dataset.key = k;
    }
    update(el, item);
    const next = previous ? previous.nextSibling : container.firstChild;
    if (next !== el) container.insertBefore(el, next);
    previous = el;
  }
  if (!items.length && empty) container.append(h("li", {class: "empty", text: empty}));
}

export class Sidebar {
  constructor({state, t, onOpen, previewFor, waitFor = () => {}}) {
    this.state = state;
    this.t = t;
    this.onOpen = onOpen;
    this.previewFor = previewFor;
    this.waitFor = waitFor;  // asks for the time a conversation entered the queue, when not known
    this.tab = "mine";
    this.queueEl = h("ul", {class: "queue", "aria-label": t("queue.title")});
    this.listEl = h("ul", {class: "conversations"});
    this.queueCount = h("span", {class: "count"});
    this.tabs = {
      mine: h("button", {class: "tab", type: "button", role: "tab", on: {click: () => this.show("mine")}},
        t("list.mine")),
      all: h("button", {class: "tab", type: "button", role: "tab", on: {click: () => this.show("all")}},
        t("list.all")),
    };
    this.el = h("nav", {class: "sidebar"},
      h("section", {class: "queue-section"},
        h("h2", {}, t("queue.title"), " ", this.queueCount),
        this.queueEl),
      h("section", {class: "list-section"},
        h("div", {class: "tabs", role: "tablist"}, this.tabs.mine, this.tabs.all),
        this.listEl));
    this.render();
    // waiting times move on by themselves
    this._tick = setInterval(() => this.renderQueue(), 10000);
  }

  /** Stop the clock (signed out). */
  dispose() {
    clearInterval(this._tick);
  }

  show(tab) {
    this.tab = tab;
    this.render();
  }

  render() {
    this.renderQueue();
    this.renderList();
  }

  renderQueue() {
    const {state, t} = this;
    const queue = state.queue();
    this.queueCount.textContent = queue.length ? String(queue.length) : "";
    syncList(this.queueEl, queue, {
      key: (c) => c.id,
      empty: t("queue.empty"),
      create: (c) => {
        const el = h("li", {class: "item queue-item", testid: "queue-item", tabindex: "0", role: "button",
          data: {conversationId: c.id}});
        el.addEventListener("click", () => this.onOpen(c.id));
        el.addEventListener("keydown", (e) => { if (e.key === "Enter") this.onOpen(c.id); });
        return el;
      },
      update: (el, c) => {
        const preview = this.previewFor(c);
        const since = state.waitingSince(c);
        if (since === null) this.waitFor(c);
        el.classList.toggle("active", c.id === state.openId);
        replace(el,
          h("div", {class: "row"},
            h("span", {class: "who", text: customerName(c), title: c.user_id}),
            since === null ? null : h("time", {class: "wait", datetime: new Date(since).toISOString(),
              text: t("queue.waiting", {d: duration(Date.now() - since, t)})})),
          h("div", {class: "row sub"},
            h("span", {class: "team", text: state.teamName(c.team_id) || t("queue.noTeam")})),
          h("div", {class: "preview", text: preview ?? t("queue.noPreview")}));
      },
    });
  }

  renderList() {
    const {state, t} = this;
    for (const [name, button] of Object.entries(this.tabs)) {
      button.setAttribute("aria-selected", String(name === this.tab));
      button.classList.toggle("selected", name === this.tab);
    }
    syncList(this.listEl, state.list(this.tab), {
      key: (c) => c.id,
      empty: t("list.empty"),
      create: (c) => {
        const el = h("li", {class: "item", testid: "conversation-item", tabindex: "0", role: "button",
          data: {conversationId: c.id}});
        el.addEventListener("click", () => this.onOpen(c.id));
        el.addEventListener("keydown", (e) => { if (e.key === "Enter") this.onOpen(c.id); });
        return el;
      },
      update: (el, c) => {
        const unread = state.unread.get(c.id) || 0;
        el.dataset.state = c.state;
        el.classList.toggle("active", c.id === state.openId);
        el.classList.toggle("has-unread", unread > 0);
        replace(el,
          h("div", {class: "row"},
            h("span", {class: "who", text: customerName(c), title: c.user_id}),
            h("span", {class: `badge state-${c.state}`, text: t(`state.${c.state}`)}),
            unread ? h("span", {class: "unread", testid: "unread-count", text: String(unread),
              "aria-label": `${unread}`}) : null),
          h("div", {class: "row sub"},
            h("span", {text: c.agent_id || t("conv.unassigned")}),
            c.team_id ? h("span", {class: "team", text: state.teamName(c.team_id)}) : null));
      },
    });
  }
}
