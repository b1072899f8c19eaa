// In-page dialogs (the console never opens the browser's alert/confirm/prompt): a
// confirmation, and the transfer picker (online agents with their load, and teams).

import {h, replace} from "./dom.js";

function modal(t, {title, body, confirmLabel, onConfirm, canConfirm = () => true}) {
  const error = h("p", {class: "dialog-error", role: "alert"});
  const confirm = h("button", {type: "button", class: "primary", testid: "confirm-button", text: confirmLabel});
  const cancel = h("button", {type: "button", testid: "cancel-button", text: t("confirm.cancel")});
  const dialog = h("dialog", {class: "dialog", "aria-label": title},
    h("h2", {text: title}), body, error, h("div", {class: "dialog-actions"}, cancel, confirm));
  const refresh = () => { confirm.disabled = !canConfirm(); };
  const done = () => { dialog.close(); dialog.remove(); };
  cancel.addEventListener("click", done);
  dialog.addEventListener("close", () => dialog.remove());
  confirm.addEventListener("click", async () => {
    confirm.disabled = true;
    error.textContent = "";
    try {
      await onConfirm();
      done();
    } catch (e) {
      error.textContent = e.userMessage || e.message || String(e);
      refresh();
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  refresh();
  return {dialog, refresh};
}

/** Ask before doing something; run action on confirm-button. */
export function confirmDialog(t, question, action) {
  return modal(t, {title: question, body: h("div"), confirmLabel: t("confirm.ok"), onConfirm: action});
}

/** Pick an agent (online, with load) or a team, then confirm; transfer({agent_id}|{team_id}). */
export function transferDialog(t, {agents, teams, meId, transfer}) {
  let choice = null;
  const buttons = [];
  const pick = (button, target) => {
    choice = target;
    for (const b of buttons) b.setAttribute("aria-pressed", String(b === button));
    handle.refresh();
  };
  const target = (attrs, label, detail, value) => {
    const button = h("button", {type: "button", class: "target", testid: "transfer-target",
      "aria-pressed": "false", ...attrs}, h("span", {class: "name", text: label}),
    detail ? h("span", {class: "detail", text: detail}) : null);
    button.addEventListener("click", () => pick(button, value));
    buttons.push(button);
    return button;
  };
  const others = agents.filter((a) => a.agent_id !== meId && a.active !== false && a.status !== "offline");
  const agentList = h("div", {class: "targets"});
  replace(agentList, others.length ? others.map((a) => target({"data-agent-id": a.agent_id}, a.agent_id,
    [t("transfer.load", {n: a.active_conversations ?? 0, max: a.max_chats ?? "?"}),
      a.status === "away" ? t("transfer.away") : null].filter(Boolean).join(" · "), {agent_id: a.agent_id}))
    : h("p", {class: "empty", text: t("transfer.noAgents")}));
  const teamList = h("div", {class: "targets"});
  replace(teamList, teams.length ? teams.map((team) => target({"data-team-id": team.id}, team.name, null,
    {team_id: team.id})) : h("p", {class: "empty", text: t("transfer.noTeams")}));
  const body = h("div", {class: "transfer"},
    h("h3", {text: t("transfer.agents")}), agentList,
    h("h3", {text: t("transfer.teams")}), teamList);
  const handle = modal(t, {title: t("transfer.title"), body, confirmLabel: t("conv.transfer"),
    canConfirm: () => choice !== null, onConfirm: () => transfer(choice)});
  return handle;
}
