// Charts as inline SVG built here (no library): horizontal bars and a column chart.

import {h} from "./dom.js";

const SVG = (tag, attrs = {}, ...children) => h(`svg:${tag}`, attrs, ...children);

/** Horizontal bars: rows [{label, value, cls}]. */
export function barChart(rows, {title, width = 360, rowHeight = 26} = {}) {
  const max = Math.max(1, ...rows.map((r) => r.value));
  const labelWidth = 110;
  const barSpace = width - labelWidth - 50;
  const height = rows.length * rowHeight + 8;
  return SVG("svg", {class: "chart bars", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title},
    SVG("title", {text: title}),
    rows.map((r, i) => {
      const y = 4 + i * rowHeight;
      const w = Math.max(r.value ? 2 : 0, (r.value / max) * barSpace);
      return SVG("g", {class: `bar ${r.cls || ""}`, "data-label": r.label, "data-value": r.value},
        SVG("text", {x: labelWidth - 8, y: y + rowHeight / 2 + 4, "text-anchor": "end", class: "axis",
          text: r.label}),
        SVG("rect", {x: labelWidth, y: y + 3, width: w.toFixed(1), height: rowHeight - 8, rx: 3}),
        SVG("text", {x: labelWidth + w + 6, y: y + rowHeight / 2 + 4, class: "value", text: String(r.value)}));
    }));
}

/** Columns over time: points [{label, value}]. */
export function columnChart(points, {title, width = 900, height = 200} = {}) {
  const max = Math.max(1, ...points.map((p) => p.value));
  const bottom = height - 24;
  const slot = (width - 20) / Math.max(1, points.length);
  return SVG("svg", {class: "chart columns", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title},
    SVG("title", {text: title}),
    SVG("line", {x1: 10, y1: bottom, x2: width - 10, y2: bottom, class: "baseline"}),
    points.map((p, i) => {
      const barHeight = (p.value / max) * (bottom - 20);
      const x = 10 + i * slot + slot * 0.2;
      return SVG("g", {class: "column", "data-label": p.label, "data-value": p.value},
        SVG("rect", {x: x.toFixed(1), y: (bottom - barHeight).toFixed(1), width: (slot * 0.6).toFixed(1),
          height: barHeight.toFixed(1), rx: 2}),
        SVG("text", {x: (x + slot * 0.3).toFixed(1), y: (bottom - barHeight - 4).toFixed(1), "text-anchor": "middle",
          class: "value", text: String(p.value)}),
        SVG("text", {x: (x + slot * 0.3).toFixed(1), y: height - 8, "text-anchor": "middle", class: "axis",
          text: p.label}));
    }));
}
