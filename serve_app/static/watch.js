// Watchlists, trends and spike alerts (the former /dashboard), as the page's Watchlists tab.
"use strict";
import { call, el, registry, when } from "./api.js";

const $ = (id) => document.getElementById(id);
const state = { keyword: null };
const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

async function loadWatches() {
  const body = $("watches").tBodies[0];
  try {
    const { watches } = await call("GET", "/watch");
    body.replaceChildren();
    for (const w of watches) {
      const rm = el("button", { type: "button", "data-remove": w.keyword, "aria-label": `stop watching ${w.keyword}` }, "remove");
      rm.addEventListener("click", async (ev) => {
        ev.stopPropagation();
        try { await call("DELETE", "/watch/" + encodeURIComponent(w.keyword)); if (state.keyword === w.keyword) state.keyword = null; await refresh(); }
        catch (e) { $("watch-error").textContent = e.message; }
      });
      const show = el("button", { type: "button", class: "link", "data-show": w.keyword }, w.keyword);
      const subs = (w.scope && w.scope.subreddits) || [];
      const tr = el("tr", { "data-keyword": w.keyword },
        el("td", {}, show, subs.length ? el("span", { class: "muted" }, ` in r/${subs.join(", r/")}`) : null), el("td", {}, `${w.every_s} s`),
        el("td", { title: w.last_error || "" }, when(w.last_run_at) + (w.last_error ? " ⚠ " + w.last_error : "")), el("td", {}, rm));
      tr.addEventListener("click", () => { state.keyword = w.keyword; refresh(); });
      body.append(tr);
    }
    $("no-watches").hidden = watches.length > 0;
    if (!state.keyword && watches.length) state.keyword = watches[0].keyword;
    for (const tr of body.rows) tr.classList.toggle("selected", tr.dataset.keyword === state.keyword);
  } catch (e) { $("watch-error").textContent = e.message; }
}

function drawTrend(data, task) {
  const chart = $("trend-chart");
  chart.replaceChildren();
  const W = 800, H = 260, L = 40, R = 10, T = 10, B = 30;
  const buckets = data.buckets.filter((b) => b.shares[task]);
  const legend = $("trend-legend");
  legend.replaceChildren();
  chart.classList.toggle("empty", !buckets.length);
  if (!buckets.length) { $("trend-summary").textContent = "No posts in this window yet: widen the window, or wait for the next poll."; return; }
  const t0 = buckets[0].start, t1 = buckets[buckets.length - 1].start;
  const x = (t) => L + (t1 === t0 ? (W - L - R) / 2 : (t - t0) / (t1 - t0) * (W - L - R));
  const y = (p) => T + (1 - p / 100) * (H - T - B);
  for (const p of [0, 25, 50, 75, 100]) {
    const lab = svg("text", { x: 4, y: y(p) + 4, "font-size": 11, fill: "#555" });
    lab.textContent = p + "%";
    chart.append(svg("line", { x1: L, x2: W - R, y1: y(p), y2: y(p), stroke: "#e3e6e8" }), lab);
  }
  const spec = registry.tasks[task];
  spec.labels.forEach((label, i) => {
    const pts = buckets.map((b) => `${x(b.start).toFixed(1)},${y(b.shares[task][i].pct).toFixed(1)}`).join(" ");
    const line = svg("polyline", { points: pts, fill: "none", stroke: spec.colours[label], "stroke-width": 2, "data-label": label });
    const tip = svg("title", {});
    tip.textContent = label;
    line.append(tip);
    chart.append(line);
    legend.append(el("span", {}, el("i", { style: `background:${spec.colours[label]}` }), label));
  });
  const posts = buckets.reduce((n, b) => n + b.posts[task], 0);
  $("trend-summary").textContent = `${posts} posts in ${buckets.length} buckets of ${data.bucket_s / 60} min, by each post's own time; lines are shares, hover a line for its label.`;
}

async function loadTrend() {
  $("trend-error").textContent = "";
  if (!state.keyword) { $("trend-title").textContent = "Trend: pick a keyword"; $("trend-chart").replaceChildren(); return; }
  const task = $("trend-task").value;
  $("trend-title").textContent = `Trend: ${state.keyword} (${task})`;
  const since = Date.now() / 1000 - Number($("trend-days").value) * 86400;
  const q = new URLSearchParams({ keyword: state.keyword, bucket: $("trend-bucket").value, since: String(Math.max(0, since)) });
  try { drawTrend(await call("GET", "/trends?" + q), task); }
  catch (e) { $("trend-error").textContent = e.message; }
}

function emerging(a) {
  const terms = a.emerging_terms || [];
  return terms.map((t) => `${t.term} (${t.posts})`).join(", ") || "–";
}

async function loadAlerts() {
  const body = $("alerts").tBodies[0];
  try {
    const { alerts } = await call("GET", "/alerts?limit=50");
    body.replaceChildren();
    for (const a of alerts) {
      body.append(el("tr", { "data-alert": a.alert_id },
        el("td", {}, when(a.bucket_start)), el("td", {}, a.keyword), el("td", {}, `${a.label} (${a.task})`),
        el("td", {}, a.share.toFixed(1) + "%"), el("td", {}, a.baseline.toFixed(1) + "%"), el("td", {}, a.z.toFixed(1)),
        el("td", {}, `${a.posts} / ${a.baseline_posts}`), el("td", { class: "emerging" }, emerging(a)),
        el("td", {}, a.delivery + (a.last_error ? ` (${a.last_error})` : ""))));
    }
    $("no-alerts").hidden = alerts.length > 0;
  } catch (e) { $("watch-error").textContent = e.message; }
}

export async function refresh() {
  await loadWatches();
  await Promise.all([loadTrend(), loadAlerts()]);
}

// Watch a keyword (from the form, or from an answer's "Watch this keyword" button).
export async function watchKeyword(keyword, everyS, source, scope) {
  const body = { keyword, every_s: everyS, ...(scope || {}) };
  if (source) body.source = source;
  const w = await call("POST", "/watch", body);
  state.keyword = w.keyword;
  return w;
}

export function initWatch() {
  $("watch-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("watch-error").textContent = "";
    const keyword = $("watch-keyword").value.trim();
    if (!keyword) { $("watch-error").textContent = "Type a keyword to watch."; $("watch-keyword").focus(); return; }
    try {
      await watchKeyword(keyword, Number($("watch-every").value), $("watch-source").value);
      $("watch-keyword").value = "";
      await refresh();
    } catch (e) { $("watch-error").textContent = e.message; }
  });
  for (const task of Object.keys(registry.tasks)) $("trend-task").append(el("option", { value: task }, task));
  for (const id of ["trend-task", "trend-bucket", "trend-days"]) $(id).addEventListener("change", loadTrend);
}
