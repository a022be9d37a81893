/* Shared helpers for every dashboard page: API calls, formatting, polling, lazy plotly. */
"use strict";
const PAGE = JSON.parse(document.body.dataset.page || "{}");
const API = "/api/v1";

function authHeaders() {
  const token = localStorage.getItem("hposvcToken");
  return token ? { Authorization: "Bearer " + token } : {};
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || "HTTP " + status);
    this.status = status;
    this.body = body || {};
  }
}

async function api(path, options = {}) {
  const response = await fetch(API + path, {
    ...options,
    headers: { ...authHeaders(), ...(options.headers || {}) },
  });
  if (response.status === 401) askToken();
  if (response.status === 204) return null;
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { detail: text }; }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function askToken() {
  const box = document.getElementById("token-box");
  box.hidden = false;
  document.getElementById("token-form").onsubmit = (event) => {
    event.preventDefault();
    localStorage.setItem("hposvcToken", document.getElementById("token-input").value);
    location.reload();
  };
}

async function download(path, filename) {
  const response = await fetch(API + path, { headers: authHeaders() });
  if (!response.ok) {
    let detail = "HTTP " + response.status;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* keep it */ }
    throw new Error(detail);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function badge(state) {
  return el("span", { class: "state s-" + state, text: state });
}

function fmtNum(v) {
  if (v === null || v === undefined || v === "") return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : v.toPrecision(5).replace(/\.?0+$/, "");
}

function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

function fmtDuration(start, end) {
  if (!start) return "–";
  const s = ((end ? new Date(end) : new Date()) - new Date(start)) / 1000;
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return Math.floor(s / 60) + " m " + Math.round(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " m";
}

function ago(iso) {
  const s = Math.max(0, (Date.now() - new Date(iso)) / 1000);
  return s < 90 ? Math.round(s) + " s ago" : fmtDuration(iso) + " ago";
}

/* Calls fn now and every `ms` (skipping while a call runs or the tab is hidden). */
function poll(fn, ms = 1000) {
  const live = document.getElementById("live");
  let busy = false;
  const tick = async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      await fn();
      live.className = "live on";
    } catch (error) {
      live.className = "live err";
      live.title = String(error.message || error);
    } finally {
      busy = false;
    }
  };
  tick();
  return setInterval(tick, ms);
}

let plotlyPromise = null;
function loadPlotly() {
  if (!plotlyPromise) {
    plotlyPromise = new Promise((resolve, reject) => {
      const script = el("script", { src: window.PLOTLY_URL, async: "" });
      script.onload = () => resolve(window.Plotly);
      script.onerror = reject;
      document.head.append(script);
    });
  }
  return plotlyPromise;
}

async function drawFigure(node, figure) {
  const Plotly = await loadPlotly();
  const layout = { ...(figure.layout || {}), autosize: true };
  delete layout.width;
  delete layout.height;
  await Plotly.react(node, figure.data || [], layout, { responsive: true, displaylogo: false });
}
