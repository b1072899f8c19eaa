// The side panel of the open conversation: who the customer is (the conversation's
// metadata), its labels (toggled in place), and the customer's earlier conversations.

import {clock, h, replace} from "./dom.js";

function show(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

export class SidePanel {
  constructor({state, t, auth, onOpen, toast}) {
    Object.assign(this, {state, t, auth, onOpen, toast});
    this.labels = null;  // every label defined: [{id, title, color}]
    this.history = new Map();  // user id -> [C]
    this.customer = h("div", {class: "customer"});
    this.metadata = h("dl", {class: "metadata"});
    this.labelsEl = h("div", {class: "labels"});
    this.historyEl = h("ul", {class: "history"});
    this.el = h("aside", {class: "panel", hidden: true},
      h("h3", {text: t("panel.customer")}), this.customer,
      h("h3", {text: t("panel.metadata")}), this.metadata,
      h("h3", {text: t("panel.labels")}), this.labelsEl,
      h("h3", {text: t("panel.history")}), this.historyEl);
  }

  async open(c) {
    this.render();
    try {
      const jobs = [this._history(c.user_id, true)];
      if (this.labels === null) jobs.push(this._labels());
      await Promise.all(jobs);
    } catch (error) {
      this.toast(error);
    }
    this.render();
  }

  async _labels() {
    const page = await this.auth.fetchJSON("/api/v1/labels");
    this.labels = page.items;
  }

  async _history(userId, force = false) {
    if (!force && this.history.has(userId)) return;
    const page = await this.auth.fetchJSON("/api/v1/conversations", {query: {user_id: userId, limit: 20}});
    this.history.set(userId, page.items);
  }

  render() {
    const c = this.state.conversations.get(this.state.openId);
    this.el.hidden = !c;
    if (!c) return;
    const {t} = this;
    replace(this.customer, h("div", {class: "customer-id", text: c.user_id}),
      h("div", {class: "muted", text: clock(c.created_at)}));
    const entries = Object.entries(c.metadata || {});
    replace(this.metadata, entries.length
      ? entries.flatMap(([key, value]) => [h("dt", {text: key}), h("dd", {text: show(value)})])
      : h("p", {class: "empty", text: t("panel.noMetadata")}));
    const on = new Set(c.labels || []);
    replace(this.labelsEl, this.labels && this.labels.length
      ? this.labels.map((label) => {
        const chip = h("button", {type: "button", class: "label", testid: "label-toggle",
          "aria-pressed": String(on.has(label.title)), data: {label: label.title}, text: label.title});
        if (label.color) chip.style.setProperty("--label-color", label.color);
        chip.addEventListener("click", () => this._toggle(c, label.title));
        return chip;
      })
      : h("p", {class: "empty", text: t("panel.noLabels")}));
    const earlier = (this.history.get(c.user_id) || []).filter((other) => other.id !== c.id);
    replace(this.historyEl, earlier.length
      ? earlier.map((other) => h("li", {},
        h("button", {type: "button", class: "link", testid: "history-item", data: {conversationId: other.id},
          on: {click: () => { this.state.upsert(other, {quiet: true}); this.onOpen(other.id); }}},
        h("span", {text: clock(other.created_at)}), " ",
        h("span", {class: `badge state-${other.state}`, text: t(`state.${other.state}`)}))))
      : h("li", {class: "empty", text: t("panel.noHistory")}));
  }

  async _toggle(c, title) {
    const labels = new Set(c.labels || []);
    if (labels.has(title)) labels.delete(title);
    else labels.add(title);
    try {
      const updated = await this.auth.fetchJSON(`/api/v1/conversations/${encodeURIComponent(c.id)}/labels`,
        {method: "PUT", body: {labels: [...labels]}});
      this.state.upsert(updated);
    } catch (error) {
      this.toast(error);
    }
  }
}
