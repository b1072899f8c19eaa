// Tiny DOM helpers. Text always goes in through textContent (never innerHTML), so a
// message such as <img src=x onerror=alert(1)> is shown as those characters and runs nothing.

/** h("div", {class: "x", testid: "message", data: {seq: 3}, on: {click: fn}}, child, "text"...) */
export function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "testid") el.setAttribute("data-testid", value);
    else if (key === "data") for (const [k, v] of Object.entries(value)) el.dataset[k] = String(v);
    else if (key === "on") for (const [k, fn] of Object.entries(value)) el.addEventListener(k, fn);
    else if (key === "text") el.textContent = String(value);
    else if (key === "class") el.setAttribute("class", value);
    else if (key in el && !tag.startsWith("svg:") && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace all children of el. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** "3 min", "2 h 5 min" from milliseconds. */
export function duration(ms, t) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return t("duration.s", {n: s});
  const m = Math.floor(s / 60);
  if (m < 60) return t("duration.m", {n: m});
  return t("duration.hm", {h: Math.floor(m / 60), m: m % 60});
}

/** A short local time for a message ("14:05", or the date when not today). */
export function clock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay
    ? d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"})
    : d.toLocaleString([], {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"});
}
