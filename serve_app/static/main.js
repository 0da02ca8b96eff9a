// The page: views, the API key, the ask and compare forms, and the question in the URL.
"use strict";
import { ApiError, apiKey, call, el } from "./api.js";
import { renderAnswer } from "./answer.js";
import { renderComparison } from "./compare.js";
import { initWatch, refresh as refreshWatch, watchKeyword } from "./watch.js";

const $ = (id) => document.getElementById(id);
// Ask form inputs by the API field they fill; the URL's query string uses the same names.
const ASK = { keyword: "ask-keyword", limit: "ask-limit", source: "ask-source", subreddits: "ask-subreddits",
  exclude_subreddits: "ask-exclude", time_window: "ask-window", since: "ask-since", until: "ask-until", sort: "ask-sort",
  include_comments: "ask-comments", count_over: "ask-count" };
const DEFAULTS = { limit: "250", source: "", subreddits: "", exclude_subreddits: "", time_window: "", since: "", until: "",
  sort: "relevance", include_comments: "0", count_over: "both" };
// A date picked is a whole UTC day: `since` from its start, `until` to its end.
const DAY_EDGE = { since: "T00:00:00Z", until: "T23:59:59Z" };
const LISTS = new Set(["subreddits", "exclude_subreddits"]);
const NUMBERS = new Set(["limit", "include_comments"]);
let watchTimer = null;
let asked = 0;  // the latest question: an older answer arriving late is not drawn over it

function showTab(name) {
  for (const b of document.querySelectorAll(".tabs button")) {
    const on = b.dataset.tab === name;
    b.setAttribute("aria-current", String(on));
    $(b.getAttribute("aria-controls")).hidden = !on;
  }
  clearInterval(watchTimer);
  if (name === "watch") { refreshWatch(); watchTimer = setInterval(refreshWatch, 30000); }
}

// The form's values that differ from the defaults: the question, for the URL and the request.
function askParams() {
  const q = new URLSearchParams();
  for (const [name, id] of Object.entries(ASK)) {
    const v = $(id).value.trim();
    if (name === "keyword" || v !== DEFAULTS[name]) q.set(name, v);
  }
  return q;
}

function askBody(q) {
  const body = {};
  for (const [name, v] of q) {
    if (!(name in ASK)) continue;
    if (LISTS.has(name)) body[name] = v.split(",").map((s) => s.trim().replace(/^r\//, "")).filter(Boolean);
    else if (NUMBERS.has(name)) body[name] = v === "" ? v : Number(v);
    else if (DAY_EDGE[name]) body[name] = /^\d{4}-\d{2}-\d{2}$/.test(v) ? v + DAY_EDGE[name] : v;
    else body[name] = v;
  }
  return body;
}

function clearInvalid(form) {
  for (const n of form.querySelectorAll("[aria-invalid]")) n.removeAttribute("aria-invalid");
}

function showError(box, err, fieldIds) {
  box.textContent = err.message;
  if (!(err instanceof ApiError)) return;
  let first = null;
  for (const f of err.fields || []) {
    const id = fieldIds[f.split(".")[0]];
    if (id) { $(id).setAttribute("aria-invalid", "true"); first = first || $(id); }
  }
  if (first) first.focus();
}

async function busy(region, button, message, work) {
  region.setAttribute("aria-busy", "true");
  region.replaceChildren(el("p", { class: "loading", id: region.id + "-loading" }, message));
  button.disabled = true;
  try { return await work(); } finally { button.disabled = false; region.setAttribute("aria-busy", "false"); }
}

async function ask(q, push) {
  const form = $("ask-form"), box = $("ask-error"), region = $("answer");
  clearInvalid(form);
  box.textContent = "";
  if (!(q.get("keyword") || "").trim()) {
    box.textContent = "Type a keyword to ask about.";
    $("ask-keyword").setAttribute("aria-invalid", "true");
    $("ask-keyword").focus();
    return;
  }
  if (push) history.pushState(null, "", "/?" + q);
  document.title = `emotion-monitor: ${q.get("keyword")}`;
  const limit = q.get("limit") || DEFAULTS.limit;
  await busy(region, $("ask-submit"), `Asking about “${q.get("keyword")}”: fetching and classifying up to ${limit} posts…`, async () => {
    const mine = ++asked;
    try {
      const answer = await call("POST", "/analyze", askBody(q));
      if (mine === asked) region.replaceChildren(renderAnswer(answer, { watch: watchFromAnswer }));
    } catch (e) {
      if (mine !== asked) return;
      region.replaceChildren();
      showError(box, e, ASK);
    }
  });
}

// The watch keeps the answer's subreddits (its polls fetch the newest posts, not a time window).
async function watchFromAnswer(answer, status) {
  status.textContent = "Adding the watch…";
  const scope = {};
  for (const f of ["subreddits", "exclude_subreddits"]) if (answer.scope && answer.scope[f] && answer.scope[f].length) scope[f] = answer.scope[f];
  try {
    const w = await watchKeyword(answer.keyword, 300, $("ask-source").value, scope);
    status.textContent = `Watching “${w.keyword}” every ${w.every_s / 60} min: see the Watchlists tab.`;
  } catch (e) {
    status.textContent = e.message;
  }
}

function compareKeywords() {
  return [...document.querySelectorAll(".compare-keyword")].map((i) => i.value.trim()).filter(Boolean);
}

async function compare(q, push) {
  const box = $("compare-error"), region = $("comparison");
  clearInvalid($("compare-form"));
  box.textContent = "";
  const keywords = q.getAll("compare");
  if (keywords.length < 2) {
    box.textContent = "Type at least two keywords to compare.";
    const empty = [...document.querySelectorAll(".compare-keyword")].find((i) => !i.value.trim());
    if (empty) { empty.setAttribute("aria-invalid", "true"); empty.focus(); }
    return;
  }
  if (push) history.pushState(null, "", "/?" + q);
  const body = { keywords, limit: Number(q.get("limit") || DEFAULTS.limit) };
  if (q.get("source")) body.source = q.get("source");
  await busy(region, $("compare-submit"), `Comparing ${keywords.join(", ")}…`, async () => {
    try {
      region.replaceChildren(renderComparison(await call("POST", "/compare", body)));
    } catch (e) {
      region.replaceChildren();
      showError(box, e, { keywords: "compare-k1", limit: "compare-limit", source: "compare-source" });
    }
  });
}

function compareParams() {
  const q = new URLSearchParams({ tab: "compare" });
  for (const k of compareKeywords()) q.append("compare", k);
  if ($("compare-limit").value !== DEFAULTS.limit) q.set("limit", $("compare-limit").value);
  if ($("compare-source").value) q.set("source", $("compare-source").value);
  return q;
}

// Load the question a URL carries (a shared link, back/forward).
function fromUrl() {
  const q = new URLSearchParams(location.search);
  if (q.get("tab") === "compare" || q.has("compare")) {
    showTab("compare");
    const ks = q.getAll("compare");
    document.querySelectorAll(".compare-keyword").forEach((input, i) => { input.value = ks[i] || ""; });
    $("compare-limit").value = q.get("limit") || DEFAULTS.limit;
    $("compare-source").value = q.get("source") || "";
    if (ks.length) compare(q, false);
    else $("comparison").replaceChildren();
    return;
  }
  if (q.get("tab") === "watch") { showTab("watch"); return; }
  showTab("ask");
  for (const [name, id] of Object.entries(ASK)) $(id).value = q.get(name) ?? (name === "keyword" ? "" : DEFAULTS[name]);
  if (q.get("keyword")) ask(q, false);
  else $("answer").replaceChildren();  // back to the empty page: no answer of another question
}

function init() {
  const key = $("api-key");
  key.value = apiKey.get();
  key.addEventListener("change", () => apiKey.set(key.value));
  $("key-form").addEventListener("submit", (ev) => { ev.preventDefault(); apiKey.set(key.value); });
  for (const b of document.querySelectorAll(".tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
  $("ask-form").addEventListener("submit", (ev) => { ev.preventDefault(); ask(askParams(), true); });
  $("compare-form").addEventListener("submit", (ev) => { ev.preventDefault(); compare(compareParams(), true); });
  initWatch();
  window.addEventListener("popstate", fromUrl);
  fromUrl();
}

init();
