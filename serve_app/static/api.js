// Calls to the app's own API (same origin) with the key the user typed, and errors people can act on.
"use strict";

const KEY = "em-api-key";
export const apiKey = { get: () => localStorage.getItem(KEY) || "", set: (v) => localStorage.setItem(KEY, v) };

export class ApiError extends Error {
  constructor(status, message, fields, retryAfter) {
    super(message);
    this.status = status;
    this.fields = fields;        // request fields a 422 names
    this.retryAfter = retryAfter; // seconds, from Retry-After
  }
}

function fieldsOf(detail) {
  if (!Array.isArray(detail)) return [];
  return detail.map((e) => (e.loc || []).filter((p) => p !== "body" && p !== "query").join("."));
}

function explain(status, detail, retryAfter) {
  let msg = detail;
  if (Array.isArray(detail)) {
    msg = detail.map((e) => {
      const field = (e.loc || []).filter((p) => p !== "body" && p !== "query").join(".") || "request";
      return `${field}: ${e.msg}`;
    }).join("; ");
  }
  const wait = retryAfter && !/retry in/i.test(String(msg)) ? ` Retry in ${retryAfter} s.` : "";
  switch (status) {
    case 401: return `The API key is missing or wrong (${msg}). Type it in "API key" at the top.`;
    case 422: return `Check your input: ${msg}`;
    case 429: return `Too many requests from this browser: ${msg}.${wait}`;
    case 502: return `The post source failed: ${msg}. Try again later or pick another source.`;
    case 503: return `The service is busy or a part of it is unavailable: ${msg}.${wait}`;
    case 504: return `The post source did not answer in time: ${msg}. Try again, or ask for fewer posts.`;
    default: return `HTTP ${status}: ${msg || "unexpected error"}`;
  }
}

export async function call(method, path, body) {
  const headers = { "Accept": "application/json" };
  const key = apiKey.get();
  if (key) headers["X-API-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let r;
  try {
    r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "The service cannot be reached: is it running? (" + e.message + ")", [], null);
  }
  const data = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) {
    const detail = (data && data.detail) || r.statusText;
    const retry = r.headers.get("Retry-After");
    const retryAfter = retry ? Number(retry) : null;
    throw new ApiError(r.status, `HTTP ${r.status}. ` + explain(r.status, detail, retryAfter), fieldsOf(detail), retryAfter);
  }
  return data;
}

// A file the API returns (CSV), fetched with the key and handed to the browser as a download.
export async function download(path, filename) {
  const headers = {};
  const key = apiKey.get();
  if (key) headers["X-API-Key"] = key;
  const r = await fetch(path, { headers });
  if (!r.ok) {
    const data = await r.json().catch(() => null);
    throw new ApiError(r.status, `HTTP ${r.status}. ` + explain(r.status, (data && data.detail) || r.statusText, null), [], null);
  }
  const url = URL.createObjectURL(await r.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Small DOM helpers shared by the views.
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

export const pct = (v) => (v === null || v === undefined ? "–" : `${Number(v).toFixed(1)}%`);
// Unix seconds or an ISO 8601 string, as "YYYY-MM-DD HH:MM UTC".
export function when(t) {
  if (t === null || t === undefined || t === "") return "never";
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  return isNaN(d) ? String(t) : d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}
export const registry = JSON.parse(document.getElementById("registry").textContent);
