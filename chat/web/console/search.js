// Admins' conversation search: the filters of GET /api/v1/conversations (state, agent, team,
// customer, label, created between, text in any message), paged with next_cursor.

import {clock, h, replace} from "./dom.js";

export class SearchView {
  constructor({state, t, auth, onOpen, toast}) {
    Object.assign(this, {state, t, auth, onOpen, toast});
    this.cursor = null;
    const field = (name, label, input) => h("label", {}, label, input);
    this.fields = {
      state: h("select", {name: "state"}, h("option", {value: "", text: t("search.any")}),
        ["ai", "handoff", "human", "closed"].map((s) => h("option", {value: s, text: t(`state.${s}`)}))),
      agent_id: h("input", {name: "agent_id", maxlength: 64}),
      team_id: h("select", {name: "team_id"}),
      user_id: h("input", {name: "user_id", maxlength: 64}),
      label: h("select", {name: "label"}),
      since: h("input", {type: "date", name: "since"}),
      until: h("input", {type: "date", name: "until"}),
      q: h("input", {type: "search", name: "q", maxlength: 100}),
    };
    const f = this.fields;
    const form = h("form", {class: "filters", testid: "search-form"},
      field("q", t("search.q"), f.q), field("state", t("search.state"), f.state),
      field("agent_id", t("search.agent"), f.agent_id), field("user_id", t("search.user"), f.user_id),
      field("team_id", t("stats.team"), f.team_id), field("label", t("search.label"), f.label),
      field("since", t("stats.since"), f.since), field("until", t("stats.until"), f.until),
      h("button", {type: "submit", class: "primary", testid: "search-submit", text: t("search.submit")}));
    form.addEventListener("submit", (e) => { e.preventDefault(); this.search(); });
    this.results = h("table", {class: "results"});
    this.more = h("button", {type: "button", hidden: true, text: t("search.more"), on: {click: () => this.search(true)}});
    this.el = h("section", {class: "page search", hidden: true},
      h("h2", {text: t("search.title")}), form, this.results, this.more);
  }

  async prepare() {
    const {t} = this;
    const keep = (select, options) => {
      const chosen = select.value;
      replace(select, h("option", {value: "", text: t("search.any")}), options);
      select.value = chosen;
    };
    keep(this.fields.team_id, [...this.state.teams].map(([id, name]) => h("option", {value: id, text: name})));
    try {
      const labels = await this.auth.fetchJSON("/api/v1/labels");
      keep(this.fields.label, labels.items.map((l) => h("option", {value: l.title, text: l.title})));
    } catch (error) {
      this.toast(error);
    }
  }

  _query() {
    const query = {limit: 50};
    for (const [name, input] of Object.entries(this.fields)) {
      const value = input.value.trim();
      if (!value) continue;
      if (name === "since") query.since = new Date(`${value}T00:00:00`).toISOString();
      else if (name === "until") query.until = new Date(new Date(`${value}T00:00:00`).getTime() + 86400000).toISOString();
      else query[name] = value;
    }
    return query;
  }

  async search(more = false) {
    const {t} = this;
    const query = this._query();
    if (more && this.cursor) query.cursor = this.cursor;
    try {
      const page = await this.auth.fetchJSON("/api/v1/conversations", {query});
      this.cursor = page.next_cursor;
      this.more.hidden = !this.cursor;
      const rows = page.items.map((c) => {
        const row = h("tr", {testid: "search-result", data: {conversationId: c.id}, tabindex: "0"},
          h("td", {text: clock(c.created_at)}), h("td", {text: c.user_id}),
          h("td", {}, h("span", {class: `badge state-${c.state}`, text: t(`state.${c.state}`)})),
          h("td", {text: c.agent_id || ""}), h("td", {text: this.state.teamName(c.team_id) || ""}),
          h("td", {text: (c.labels || []).join(", ")}));
        const open = () => { this.state.upsert(c, {quiet: true}); this.onOpen(c.id); };
        row.addEventListener("click", open);
        row.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
        return row;
      });
      const header = h("tr", {}, [t("search.created"), t("search.user"), t("search.state"), t("search.agent"),
        t("stats.team"), t("search.label")].map((label) => h("th", {text: label})));
      if (more) this.results.append(...rows);
      else replace(this.results, h("thead", {}, header), rows.length ? rows
        : h("tr", {}, h("td", {colspan: 6, class: "empty", text: t("search.none")})));
    } catch (error) {
      this.toast(error);
    }
  }
}
