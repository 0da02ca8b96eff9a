// Share bars with their 95 % interval whiskers, and the net sentiment line.
"use strict";
import { el, pct } from "./api.js";

const clamp = (v) => Math.max(0, Math.min(100, Number(v)));

export function interval(row) {
  if (row.pct_low === null || row.pct_low === undefined) return "";
  return ` (${Number(row.pct_low).toFixed(1)}–${Number(row.pct_high).toFixed(1)})`;
}

// rows: [{label, pct, pct_low, pct_high, count}], in the registry's order.
export function bars(rows, colours, caption) {
  const grid = el("div", { class: "bars", role: "list", "aria-label": caption });
  for (const row of rows) {
    const bar = el("div", { class: "bar", "aria-hidden": "true" },
      el("div", { class: "fill", style: `width:${clamp(row.pct)}%;background:${colours[row.label] || "#777"}` }));
    if (row.pct_low !== null && row.pct_low !== undefined) {
      const lo = clamp(row.pct_low), hi = clamp(row.pct_high);
      bar.append(el("div", { class: "whisker", "data-low": lo, "data-high": hi, style: `left:${lo}%;width:${Math.max(hi - lo, 0.3)}%` }));
    }
    const counted = row.count === undefined ? "" : ` · ${row.count} post${row.count === 1 ? "" : "s"}`;
    grid.append(
      el("span", { class: "label-name", role: "listitem", "data-label": row.label }, row.label),
      bar,
      el("span", { class: "num", "data-share": row.label }, pct(row.pct) + interval(row) + counted),
    );
  }
  return grid;
}

// NetSentiment {value, low, high} in [-1, 1]: positive minus negative over both.
export function netSentiment(net) {
  const f = (v) => (v >= 0 ? "+" : "") + Number(v).toFixed(2);
  const word = net.low > 0 ? "leaning positive" : net.high < 0 ? "leaning negative" : "no clear lean";
  return el("p", { class: "net", id: "net-sentiment" },
    el("strong", {}, "Net sentiment: "), `${f(net.value)} (95 % interval ${f(net.low)} to ${f(net.high)}), ${word}`,
    el("span", { class: "muted" }, " — (positive − negative) / (positive + negative), from −1 to +1."));
}
