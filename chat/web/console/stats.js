// Admins' statistics page: GET /api/v1/stats (PROTOCOL 6) as figures and SVG charts, for a
// window and a team; plus conversations started on each of the last seven days.

import {barChart, columnChart} from "./charts.js";
import {h, replace} from "./dom.js";

const DAY_MS = 86400000;

function seconds(value, t) {
  if (value === null || value === undefined) return t("stats.none");
  if (value < 60) return t("duration.s", {n: value.toFixed(1)});
  if (value < 3600) return t("duration.m", {n: (value / 60).toFixed(1)});
  return t("duration.h", {n: (value / 3600).toFixed(1)});
}

function dayStart(ms) {
  const d = new Date(ms);
  d.setHours(0, 0, 0, 0);
  return d;
}

export class StatsView {
  constructor({state, t, auth, toast}) {
    Object.assign(this, {state, t, auth, toast});
    this.since = h("input", {type: "date", name: "since", "aria-label": t("stats.since")});
    this.until = h("input", {type: "date", name: "until", "aria-label": t("stats.until")});
    this.team = h("select", {name: "team_id", "aria-label": t("stats.team")});
    this.content = h("div", {class: "stats-content"});
    const form = h("form", {class: "filters"},
      h("label", {}, t("stats.since"), this.since), h("label", {}, t("stats.until"), this.until),
      h("label", {}, t("stats.team"), this.team),
      h("button", {type: "submit", class: "primary", text: t("stats.apply")}));
    form.addEventListener("submit", (e) => { e.preventDefault(); this.load(); });
    this.el = h("section", {class: "page stats", testid: "stats-panel", hidden: true},
      h("h2", {text: t("stats.title")}), form, this.content);
  }

  _teams() {
    const chosen = this.team.value;
    replace(this.team, h("option", {value: "", text: this.t("stats.allTeams")}),
      [...this.state.teams].map(([id, name]) => h("option", {value: id, text: name})));
    this.team.value = chosen;
  }

  _window() {
    // date inputs are local days; the API takes ISO 8601 (UTC when no offset)
    const at = (input, plusDays) => (input.value
      ? new Date(new Date(`${input.value}T00:00:00`).getTime() + plusDays * DAY_MS).toISOString() : undefined);
    return {since: at(this.since, 0), until: at(this.until, 1), team_id: this.team.value || undefined};
  }

  async load() {
    this._teams();
    const {t} = this;
    const query = this._window();
    try {
      const today = dayStart(Date.now()).getTime();
      const days = Array.from({length: 7}, (_, i) => today - (6 - i) * DAY_MS);
      const [stats, ...perDay] = await Promise.all([
        this.auth.fetchJSON("/api/v1/stats", {query}),
        ...days.map((start) => this.auth.fetchJSON("/api/v1/stats", {query: {
          since: new Date(start).toISOString(), until: new Date(start + DAY_MS).toISOString(),
          team_id: query.team_id}})),
      ]);
      const figure = (key, value) => h("div", {class: "figure", data: {stat: key}},
        h("div", {class: "figure-value", text: value}), h("div", {class: "figure-label", text: t(`stats.${key}`)}));
      replace(this.content,
        h("div", {class: "figures"},
          figure("started", String(stats.started)),
          figure("handed_off", String(stats.handed_off)),
          figure("handoff_rate", `${(stats.handoff_rate * 100).toFixed(1)} %`),
          figure("closed", String(stats.closed)),
          figure("ai_resolved", String(stats.ai_resolved)),
          figure("queue_wait_avg_s", seconds(stats.queue_wait_avg_s, t)),
          figure("queue_wait_p90_s", seconds(stats.queue_wait_p90_s, t)),
          figure("first_response_avg_s", seconds(stats.first_response_avg_s, t)),
          figure("resolution_avg_s", seconds(stats.resolution_avg_s, t))),
        h("div", {class: "charts"},
          h("figure", {}, h("figcaption", {text: t("stats.byState")}),
            barChart(Object.entries(stats.conversations_by_state).map(([k, v]) => ({
              label: t(`state.${k}`), value: v, cls: `state-${k}`})), {title: t("stats.byState")})),
          h("figure", {}, h("figcaption", {text: t("stats.bySender")}),
            barChart(Object.entries(stats.messages_by_sender_type).map(([k, v]) => ({
              label: t(`sender.${k}`, {id: ""}).trim(), value: v, cls: `sender-${k}`})),
            {title: t("stats.bySender")})),
          h("figure", {class: "wide"}, h("figcaption", {text: t("stats.perDay")}),
            columnChart(perDay.map((s, i) => ({
              label: new Date(days[i]).toLocaleDateString([], {month: "numeric", day: "numeric"}),
              value: s.started})), {title: t("stats.perDay")}))));
    } catch (error) {
      this.toast(error);
    }
  }
}
