// POST /compare: 2-5 keywords side by side, the differences larger than chance marked.
"use strict";
import { el, pct, registry } from "./api.js";
import { interval } from "./bars.js";

const pp = (v) => (v >= 0 ? "+" : "") + Number(v).toFixed(1);

function who(v, keywords, fallback) {
  // A difference names its two sides by keyword, or by their index in `keywords`.
  if (typeof v === "string") return v;
  if (Number.isInteger(v) && keywords[v] !== undefined) return keywords[v];
  return fallback;
}

function diffTable(rows, keywords, unit, fmt) {
  const table = el("table", { class: "diffs" }, el("thead", {}, el("tr", {},
    ["label", "between", `difference (${unit})`, "95 % interval", "p (Holm)", "larger than chance?"].map((h) => el("th", { scope: "col" }, h)))));
  const body = el("tbody");
  for (const d of rows) {
    const pair = `${who(d.keyword_a, keywords, keywords[0])} − ${who(d.keyword_b, keywords, keywords[1])}`;
    const p = d.p_holm ?? d.p_value;
    body.append(el("tr", { class: d.significant ? "sig" : null, "data-label": d.label || "net", "data-significant": String(!!d.significant) },
      el("td", {}, d.label || "net sentiment"), el("td", {}, pair), el("td", { class: "num" }, fmt(d.diff)),
      el("td", { class: "num" }, `${fmt(d.low)} to ${fmt(d.high)}`),
      el("td", { class: "num" }, p === null || p === undefined ? "–" : Number(p).toPrecision(3)),
      el("td", { class: d.significant ? "sig" : null }, d.significant ? "yes ★" : "no")));
  }
  table.append(body);
  return table;
}
const signed2 = (v) => (v >= 0 ? "+" : "") + Number(v).toFixed(2);

function sideBySide(task, spec, res) {
  const diffs = ((res.differences || {})[task]) || [];
  const sig = new Set(diffs.filter((d) => d.significant).map((d) => d.label));
  const head = el("tr", {}, el("th", { scope: "col" }, "label"), res.keywords.map((k) => el("th", { scope: "col" }, k)));
  const body = el("tbody");
  for (const label of spec.labels) {
    const cells = res.analyses.map((a) => {
      const row = (a[spec.field] || []).find((r) => r.label === label);
      return el("td", { class: "num" + (sig.has(label) ? " sig" : "") }, row ? pct(row.pct) + interval(row) : "–");
    });
    body.append(el("tr", { class: sig.has(label) ? "sig" : null, "data-label": label },
      el("th", { scope: "row" }, el("span", { class: "swatch", style: `background:${spec.colours[label]}` }), label, sig.has(label) ? " ★" : ""), cells));
  }
  const card = el("div", { class: "card", id: `compare-${task}` }, el("h3", {}, spec.title),
    el("div", { class: "scroll" }, el("table", { class: "side" }, el("thead", {}, head), body)));
  if (diffs.length) {
    const larger = diffs.filter((d) => d.significant);
    card.append(el("h4", {}, larger.length ? `Differences larger than chance (${larger.length} of ${diffs.length})` : "No difference is larger than chance"));
    if (larger.length) card.append(el("div", { class: "scroll" }, diffTable(larger, res.keywords, "pp", pp)));
    card.append(el("details", { class: "all-diffs" }, el("summary", {}, `All ${diffs.length} differences`),
      el("div", { class: "scroll" }, diffTable(diffs, res.keywords, "pp", pp))));
  }
  return card;
}

export function renderComparison(res) {
  const root = el("div", { class: "comparison" });
  const counts = res.analyses.map((a) => `${a.keyword}: ${a.scored ?? a.count} posts`).join(" · ");
  root.append(el("div", { class: "card" }, el("h2", { id: "comparison-title" }, res.keywords.map((k) => `“${k}”`).join(" vs ")),
    el("p", { class: "muted" }, counts),
    el("p", { class: "muted" }, "Shares are estimated with 95 % intervals that include the model's error; ★ marks a difference larger than chance.")));
  for (const [task, spec] of Object.entries(registry.tasks)) {
    if (res.analyses.some((a) => a[spec.field] && a[spec.field].length)) root.append(sideBySide(task, spec, res));
  }
  const net = res.net_sentiment_differences || [];
  if (net.length) {
    root.append(el("div", { class: "card", id: "compare-net" }, el("h3", {}, "Net sentiment (−1 to +1)"),
      el("p", {}, res.analyses.map((a) => a.net_sentiment ? `${a.keyword}: ${signed2(a.net_sentiment.value)} (${signed2(a.net_sentiment.low)} to ${signed2(a.net_sentiment.high)})` : null).filter(Boolean).join(" · ")),
      el("div", { class: "scroll" }, diffTable(net, res.keywords, "net", signed2))));
  }
  return root;
}
