// One answer of /analyze, drawn: breakdowns, net sentiment, drivers, representative posts, triage, provenance.
"use strict";
import { apiKey, download, el, pct, registry, when } from "./api.js";
import { bars, interval, netSentiment } from "./bars.js";

const EXPLAIN = "Bars are estimated shares of posts with a 95 % interval (whiskers) that includes the model's " +
  "error; post counts are each post's top label.";

// The scored posts of an answer (its JSONL export), fetched once when a driver or the triage list needs their text.
const postCache = new Map();

async function fetchPostRows(analysisId) {
  // format=jsonl is a text body, not JSON: read it directly.
  const headers = {};
  const key = apiKey.get();
  if (key) headers["X-API-Key"] = key;
  const r = await fetch(`/analyses/${encodeURIComponent(analysisId)}/posts?format=jsonl`, { headers });
  if (!r.ok) return [];
  const text = await r.text();
  return text.split("\n").filter((l) => l.trim()).map((l) => { try { return JSON.parse(l); } catch { return null; } }).filter(Boolean);
}

function postItem(post, known) {
  const id = post.id || post.post_id;
  const rep = known.get(id) || {};
  const link = post.link || post.permalink || post.url || rep.link;
  const text = post.snippet || post.title || post.text || rep.snippet || "";
  const words = String(text).slice(0, 240);
  const meta = [post.subreddit || rep.subreddit, post.created_utc || rep.created_utc ? when(post.created_utc || rep.created_utc) : null]
    .filter(Boolean).join(" · ");
  return el("li", { "data-post": id },
    link ? el("a", { href: link, target: "_blank", rel: "noopener noreferrer" }, words || id) : (words || id),
    meta ? el("span", { class: "muted" }, ` — ${meta}`) : null);
}

async function showPosts(target, ids, answer, known, heading) {
  target.replaceChildren(el("p", { class: "loading" }, "Loading posts…"));
  let rows = [];
  if (answer.analysis_id) {
    if (!postCache.has(answer.analysis_id)) postCache.set(answer.analysis_id, fetchPostRows(answer.analysis_id));
    rows = await postCache.get(answer.analysis_id);
  }
  const byId = new Map(rows.map((p) => [p.id || p.post_id, p]));
  const list = el("ul", { class: "posts" }, ids.map((id) => postItem(byId.get(id) || { id }, known)));
  target.replaceChildren(el("h4", {}, heading), list);
}

function representativeMap(answer) {
  const known = new Map();
  for (const byLabel of Object.values(answer.representatives || {})) {
    for (const posts of Object.values(byLabel)) for (const p of posts) known.set(p.id, p);
  }
  return known;
}

function driverBlock(task, label, rows, answer, known) {
  const out = el("div", { class: "driver-posts", "aria-live": "polite" });
  const chips = el("div", { class: "drivers", "data-task": task, "data-label": label });
  for (const d of rows) {
    const btn = el("button", { type: "button", class: "driver", "data-term": d.term, "aria-pressed": "false",
      title: `z ${Number(d.z).toFixed(1)}; in ${Number(d.share).toFixed(0)} % of this label's posts` +
        (d.net_sentiment ? `; net sentiment ${Number(d.net_sentiment.value).toFixed(2)}` : "") },
    `${d.term} (${d.posts})`);
    btn.addEventListener("click", () => {
      for (const b of chips.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b === btn));
      showPosts(out, d.post_ids || [], answer, known, `Posts labelled ${label} that mention “${d.term}”`);
    });
    chips.append(btn);
  }
  return el("div", { class: "label-block" }, el("span", { class: "label-name" }, label), chips, out);
}

function taskSection(task, spec, answer, known) {
  const rows = answer[spec.field];
  if (!rows || !rows.length) return null;
  const card = el("div", { class: "card", id: `breakdown-${task}` }, el("h3", {}, spec.title), bars(rows, spec.colours, spec.title));
  if (spec.rest_label) {
    const rest = rows.find((r) => r.label === spec.rest_label);
    if (rest) card.append(el("p", { class: "rest", id: `rest-${task}` }, el("strong", {}, "No clear emotion: "), pct(rest.pct) + interval(rest)));
    const among = spec.among_field && answer[spec.among_field];
    if (among && among.length) card.append(el("h4", {}, "Among posts with an emotion"), bars(among, spec.colours, `${spec.title} among emotional posts`));
  }
  if (task === "sentiment" && answer.net_sentiment) card.append(netSentiment(answer.net_sentiment));
  const drivers = (answer.drivers || {})[task];
  if (drivers && Object.values(drivers).some((rows) => rows.length)) {
    const box = el("div", { class: "drivers-box", id: `drivers-${task}` }, el("h4", {}, "What drives each label (click a term for its posts)"));
    for (const label of spec.labels) if (drivers[label] && drivers[label].length) box.append(driverBlock(task, label, drivers[label], answer, known));
    card.append(box);
  }
  const reps = (answer.representatives || {})[task];
  if (reps && Object.keys(reps).length) {
    const box = el("details", { class: "reps", id: `representatives-${task}` }, el("summary", {}, "Representative posts of each label"));
    for (const label of spec.labels) {
      if (!reps[label] || !reps[label].length) continue;
      box.append(el("div", { class: "label-block" }, el("span", { class: "label-name" }, label),
        el("ul", { class: "posts" }, reps[label].map((p) => postItem(p, known)))));
    }
    card.append(box);
  }
  return card;
}

function provenance(answer) {
  const versions = Object.entries(answer.model_versions || {}).map(([t, v]) => `${t}: ${v}`).join(", ") || answer.model_version;
  // A cached answer's `newly_scored` is its first computation's: said only for a fresh one.
  const n = answer.newly_scored;
  const fresh = answer.source !== "inference" || n === null || n === undefined ? ""
    : n < answer.scored ? `, ${n} of ${answer.scored} posts newly scored (the others from the per-post score cache)`
      : `, every post newly scored`;
  return el("p", { class: "muted", id: "provenance" },
    `Answered from ${answer.source === "cache" ? "the cache" : "inference"} in ${Number(answer.time || 0).toFixed(2)} s${fresh}; ` +
    `posts from ${answer.post_source}; model ${versions}.`);
}

function languages(answer) {
  const langs = Object.entries(answer.languages || {}).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(", ");
  const reasons = Object.entries(answer.excluded_reasons || {}).filter(([, v]) => v).map(([k, v]) => `${k} ${v}`).join(", ");
  return el("p", { id: "languages" }, el("strong", {}, "Languages: "), langs || "none detected",
    el("strong", {}, " · Left out: "), reasons || "none");
}

function triage(answer, known) {
  const sn = answer.strongly_negative;
  if (!sn) return null;
  const out = el("div", { "aria-live": "polite" });
  const box = el("div", { class: "card", id: "strongly-negative" }, el("h3", {}, "Strongly negative posts to triage"),
    el("p", {}, `${sn.count} posts (${pct(sn.pct)}) are negative with confidence ≥ ${sn.threshold}.`), out);
  if (sn.ids.length) showPosts(out, sn.ids.slice(0, 10), answer, known, sn.ids.length > 10 ? "The 10 most confident (all in the CSV export)" : "Most confident first");
  return box;
}

function commentsLine(answer) {
  const c = answer.comments;
  if (!c) return null;
  return el("p", { class: "muted", id: "comments" },
    `Comments: ${c.comments} from ${c.posts_read} of the ${c.posts_asked} posts asked for` + (c.note ? ` (${c.note})` : "") + ".");
}

function scopeLine(answer) {
  const s = answer.scope;
  if (!s) return null;
  // reddit_t is the time window as Reddit's search spells it: the same fact, said once.
  const parts = Object.entries(s).filter(([k]) => k !== "reddit_t").filter(([, v]) => v !== null && v !== undefined && v !== "" && v !== 0 && !(Array.isArray(v) && !v.length))
    .map(([k, v]) => `${k.replace(/_/g, " ")}: ${Array.isArray(v) ? v.join(", ") : v}`);
  return parts.length ? el("p", { class: "muted", id: "scope" }, "Scope — " + parts.join("; ")) : null;
}

export function renderAnswer(answer, actions) {
  const known = representativeMap(answer);
  const root = el("div", { class: "answer", "data-keyword": answer.keyword });
  const counted = answer.scored === null || answer.scored === undefined ? "" : `, ${answer.scored} scored`;
  const partial = answer.partial ? el("p", { class: "notice", id: "partial" },
    `Partial answer: ${answer.partial_reason || "the source stopped early"}. The shares cover only the posts fetched before it stopped.`) : null;
  root.append(el("div", { class: "card" },
    el("div", { class: "summary" }, el("h2", { id: "answer-title" }, `“${answer.keyword}”`),
      el("span", { id: "answer-counts" }, `${answer.count} posts fetched${counted}`)),
    partial, el("p", { class: "muted explain", id: "explain" }, EXPLAIN),
    scopeLine(answer), commentsLine(answer), languages(answer), provenance(answer), actionBar(answer, actions)));
  const grid = el("div", { class: "grid2" });
  for (const [task, spec] of Object.entries(registry.tasks)) {
    const sec = taskSection(task, spec, answer, known);
    if (sec) grid.append(sec);
  }
  root.append(grid);
  const sn = triage(answer, known);
  if (sn) root.append(sn);
  return root;
}

function actionBar(answer, actions) {
  const bar = el("div", { class: "actions" });
  const status = el("span", { class: "muted", id: "action-status", role: "status" });
  if (answer.analysis_id) {
    const href = `/analyses/${encodeURIComponent(answer.analysis_id)}/posts?format=csv`;
    const name = `emotion-monitor-${answer.keyword.replace(/[^\w-]+/g, "_")}.csv`;
    bar.append(el("a", { id: "export-csv", href, download: name, class: "button", onclick: (ev) => {
      ev.preventDefault();
      status.textContent = "Preparing the CSV…";
      download(href, name).then(() => { status.textContent = `Downloaded ${name}.`; }).catch((e) => { status.textContent = e.message; });
    } }, "Export scored posts (CSV)"));
  }
  bar.append(el("button", { type: "button", id: "watch-this", onclick: () => actions.watch(answer, status) }, "Watch this keyword"), status);
  return bar;
}
