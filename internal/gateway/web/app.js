// The dfs web UI: a file browser, uploads with live status, a file detail
// view and the cluster view. Plain JavaScript over the gateway's REST API
// and its server-sent events; no build step, nothing loaded from elsewhere.
"use strict";

const API = "/api/v1";
const $ = (sel, root = document) => root.querySelector(sel);

// ---------------------------------------------------------------- helpers

// h builds an element: h("a", {href: "#"}, "text", child...). Text is
// always set as text, never parsed as HTML.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function fmtSize(n) {
  if (n === undefined || n === null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)) + " " + units[i];
}

const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const timeFmt = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

// plural says a count of things: "1 chunk", "3 chunks".
const plural = (n, one, many) => Number(n).toLocaleString() + " " + (Number(n) === 1 ? one : (many || one + "s"));

// fmtDuration shows seconds as h:mm:ss (m:ss under an hour).
function fmtDuration(secs) {
  const t = Math.round(Number(secs));
  if (!isFinite(t) || t < 0) return String(secs);
  const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), sec = t % 60;
  const two = (x) => String(x).padStart(2, "0");
  return h ? h + ":" + two(m) + ":" + two(sec) : m + ":" + two(sec);
}
function fmtDate(s) {
  const d = new Date(s);
  return isNaN(d) || d.getFullYear() < 1971 ? "" : dateFmt.format(d);
}

function ago(s) {
  const d = new Date(s);
  if (isNaN(d) || d.getFullYear() < 1971) return "never";
  const secs = Math.max(0, Math.round((Date.now() - d) / 1000));
  if (secs < 2) return "just now";
  if (secs < 60) return secs + " s ago";
  if (secs < 3600) return Math.floor(secs / 60) + " min ago";
  if (secs < 86400) return Math.floor(secs / 3600) + " h ago";
  return fmtDate(s);
}

// encodePath escapes each segment of a dfs path for a URL.
const encodePath = (p) => p.split("/").map(encodeURIComponent).join("/");
const baseName = (p) => p.slice(p.lastIndexOf("/") + 1);
const dirName = (p) => p.slice(0, p.lastIndexOf("/") + 1);

function toast(msg, isError) {
  const t = h("div", { class: "toast" + (isError ? " error" : "") }, msg);
  $("#toasts").append(t);
  setTimeout(() => t.remove(), isError ? 8000 : 3500);
}

// ---------------------------------------------------------------- auth

// A gateway asks for one of: nothing (a loopback test gateway), an API
// token on changes (a cluster run with --insecure), or a signed-in access
// key on every call (a secure cluster: the session is an HttpOnly cookie).
const auth = {
  mode: "none",
  user: null, // who is signed in, in "key" mode
  get token() { return localStorage.getItem("dfs-token") || ""; },
  set token(v) { v ? localStorage.setItem("dfs-token", v) : localStorage.removeItem("dfs-token"); },
  header() { return this.mode === "token" && this.token ? { Authorization: "Bearer " + this.token } : {}; },
  // ensure asks for what the gateway needs when none is kept.
  async ensure() {
    if (this.mode === "key") return !!this.user || this.signIn();
    if (this.mode !== "token" || this.token) return true;
    return this.ask();
  },
  // refused is called on a 401: ask again, and say whether to retry.
  async refused(message) {
    if (this.mode === "key") { this.user = null; updateTokenButton(); return this.signIn(message); }
    return this.ask(message || "The token was refused. Enter the gateway's API token.");
  },
  async ask(message) {
    const v = await promptDialog({
      title: "API token",
      text: message || "This gateway needs its API token to change files.",
      label: "Token", type: "password", ok: "Save",
    });
    if (v === null) return false;
    this.token = v.trim();
    updateTokenButton();
    return !!this.token;
  },
  // signIn shows the sign-in dialog until a key is accepted or the user
  // cancels.
  async signIn(message) {
    const d = $("#signin-dialog");
    const err = $("#signin-error");
    err.hidden = !message;
    err.textContent = message || "";
    for (;;) {
      d.returnValue = "";
      d.showModal();
      $("#signin-id").focus();
      const ok = await new Promise((resolve) => d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true }));
      if (!ok) return false;
      const body = JSON.stringify({ access_key_id: $("#signin-id").value.trim(), secret_access_key: $("#signin-secret").value });
      let res, data = {};
      try {
        res = await fetch(API + "/session", { method: "POST", headers: { "Content-Type": "application/json" }, body });
        data = await res.json().catch(() => ({}));
      } catch {
        err.textContent = "The gateway did not answer.";
        err.hidden = false;
        continue;
      }
      if (res.ok) {
        $("#signin-secret").value = "";
        this.user = data;
        updateTokenButton();
        toast("Signed in as " + data.name);
        health.signedOut = false;
        // What the stream may show depends on the key: open a new one.
        if (stream) stream.restart(); else reconnect();
        return true;
      }
      err.textContent = data.error || res.statusText;
      err.hidden = false;
    }
  },
  async signOut() {
    await fetch(API + "/session", { method: "DELETE" }).catch(() => {});
    if (stream) stream.stop();
    this.user = null;
    health.signedOut = true;
    renderHealth();
    updateTokenButton();
    toast("Signed out");
    route();
  },
};

function updateTokenButton() {
  const b = $("#token-button");
  b.hidden = auth.mode === "none";
  if (auth.mode === "key") b.textContent = auth.user ? "Sign out " + auth.user.name : "Sign in";
  else b.textContent = auth.token ? "Forget token" : "Enter token";
}

// api calls the REST API and returns the decoded JSON, or throws an Error
// with the gateway's message. A 401 asks for the token once and retries.
async function api(method, path, opts = {}) {
  for (let attempt = 0; ; attempt++) {
    let res;
    try {
      res = await fetch(API + path, { method, headers: { ...auth.header(), ...(opts.headers || {}) }, body: opts.body });
    } catch {
      const err = new Error("the gateway did not answer");
      err.code = "network";
      err.status = 0;
      checkReady();
      throw err;
    }
    if (res.status === 401 && attempt === 0 && await auth.refused()) continue;
    const text = await res.text();
    let data = {};
    try { data = text ? JSON.parse(text) : {}; } catch { data = { error: text }; }
    if (!res.ok) {
      const err = new Error(data.error || res.statusText);
      err.status = res.status;
      err.code = data.code || codeOfStatus(res.status);
      // A read the cluster could not answer is an outage; a write may
      // fail so for want of datanodes with space: /readyz decides.
      if (outageCodes.has(err.code)) {
        if (method === "GET") clusterFailed(err.code);
        else checkReady();
      }
      throw err;
    }
    if (clusterPath(path)) clusterAnswered();
    return data;
  }
}

// ---------------------------------------------------------------- errors

// The API's errors carry a code (docs/api.md); the page says each in
// words of its own. The gateway's message is kept where it is written for
// people (a refused right, a bad name), never where it may be the
// cluster's transport speaking.
const errorWords = {
  network: "The gateway did not answer. Check that it runs and that this computer can reach it.",
  unavailable: "The cluster cannot be reached: no coordinator answers the gateway, or no datanode is alive.",
  timeout: "The cluster took too long to answer. Try again in a moment.",
  no_space: "The cluster is out of space. Free some, or add a datanode.",
  internal: "Something failed inside the gateway or the cluster. The gateway's log says more.",
  unauthenticated: "Sign in to do this.",
  wrong_host: "This gateway only answers its loopback address.",
  range_not_satisfiable: "That part of the file is past its end.",
  method_not_allowed: "The gateway does not allow this here.",
  not_found: "It does not exist.",
  denied: "Your access key may not do this.",
  conflict: "Something changed meanwhile. Try again.",
  bad_path: "That name cannot be used: a path may not hold empty, “.” or “..” parts or control characters.",
  bad_hash: "That is not a SHA-256.",
  bad_request: "The gateway refused the request.",
  precondition_failed: "The file changed meanwhile.",
};
// Codes whose message is the page's own words whatever the gateway said.
const ownWords = new Set(["network", "unavailable", "timeout", "internal", "no_space"]);
const outageCodes = new Set(["unavailable", "timeout"]);

function codeOfStatus(status) {
  return { 400: "bad_request", 401: "unauthenticated", 403: "denied", 404: "not_found", 409: "conflict", 416: "range_not_satisfiable", 503: "unavailable", 504: "timeout", 507: "no_space" }[status]
    || (status >= 500 ? "internal" : "bad_request");
}

// humanError says an error from api() (or {code, message}) in words.
function humanError(e) {
  const code = e.code || codeOfStatus(e.status || 0);
  const msg = e.message || "";
  // A message that carries a transport's wording is never shown.
  const raw = /rpc error|desc = |transport:|dial tcp|connection refused|context deadline/i.test(msg);
  if (!ownWords.has(code) && msg && !raw) return msg.charAt(0).toUpperCase() + msg.slice(1);
  return errorWords[code] || errorWords.internal;
}

const clusterPath = (p) => /^\/(files|stat|content|nodes|cluster|upload)\b/.test(p);

// ---------------------------------------------------------------- dialogs

function confirmDialog(text, okLabel) {
  const d = $("#confirm-dialog");
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = okLabel || "Delete";
  d.returnValue = "";
  d.showModal();
  $("#confirm-cancel").focus();
  return new Promise((resolve) => d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true }));
}

function promptDialog({ title, text, label, type, ok, value }) {
  const d = $("#prompt-dialog");
  $("#prompt-title").textContent = title;
  $("#prompt-text").textContent = text || "";
  $("#prompt-label").textContent = label;
  const input = $("#prompt-input");
  input.type = type || "text";
  input.value = value || "";
  $("#prompt-ok").textContent = ok || "OK";
  d.returnValue = "";
  d.showModal();
  input.focus();
  return new Promise((resolve) => d.addEventListener("close", () => resolve(d.returnValue === "ok" ? input.value : null), { once: true }));
}

// ---------------------------------------------------------------- status

// What the UI knows of each content's processing, by SHA-256, from the
// event stream, upload answers and lookups.
const jobs = new Map();
// The last processing record each job event carried, by SHA-256.
const procs = new Map();

function statusOf(proc) {
  if (!proc || !proc.state) return null;
  return { state: proc.state, worker: proc.worker, error: proc.error };
}

function pill(st) {
  if (!st) return h("span", { class: "muted" }, "—");
  let text = st.state;
  if (st.state === "processing" && st.worker) text = "processing · " + st.worker;
  if (st.state === "uploading" && st.percent !== undefined) text = "uploading " + st.percent + "%";
  return h("span", { class: "pill " + st.state, title: st.error || "", dataset: { state: st.state } }, text);
}

// ---------------------------------------------------------------- health

// What the page knows of the gateway and the cluster behind it, shown in
// the header: whether the event stream is open, whether the cluster
// answers (the gateway's status events, the API's answers, /readyz), and
// when the page last heard from it.
const health = {
  stream: false,   // the event stream is open
  closed: false,   // it closed for good (refused)
  gateway: true,   // the gateway answers
  cluster: null,   // the cluster answers: true, false, or not known yet
  why: "",         // the error code when it does not
  signedOut: false,
  lastHeard: 0,    // when the cluster last answered, in this page's clock
};

function heard(at) {
  health.lastHeard = Math.max(health.lastHeard, at || Date.now());
}

// setClusterStatus takes the gateway's status event.
function setClusterStatus(st) {
  const was = health.cluster;
  health.gateway = true;
  health.cluster = !!st.reachable;
  health.why = st.reachable ? "" : (st.code || "unavailable");
  if (st.reachable) heard();
  else if (st.last_ok && st.time) heard(Date.now() - (new Date(st.time) - new Date(st.last_ok)));
  renderHealth();
  if (was === false && st.reachable) route(); // read again what went stale
}

function clusterFailed(code) {
  health.cluster = false;
  health.why = code;
  renderHealth();
}

function clusterAnswered() {
  heard();
  health.gateway = true;
  if (health.cluster !== true) {
    const was = health.cluster;
    health.cluster = true;
    health.why = "";
    renderHealth();
    if (was === false) route();
  }
}

// checkReady asks /readyz whether the cluster answers, after a call that
// failed for no reason the gateway gave.
let readyCheck = null;
function checkReady() {
  if (readyCheck) return readyCheck;
  readyCheck = (async () => {
    try {
      const res = await fetch("/readyz", { cache: "no-store" });
      health.gateway = true;
      if (res.ok) {
        clusterAnswered();
      } else {
        const d = await res.json().catch(() => ({}));
        clusterFailed(d.code || "unavailable");
      }
    } catch {
      health.gateway = false;
      renderHealth();
    }
  })().finally(() => { readyCheck = null; });
  return readyCheck;
}

// While something is down, look again now and then: the header must come
// back by itself.
setInterval(() => {
  if (!health.signedOut && (!health.gateway || health.cluster === false)) checkReady();
}, 3000);

function renderHealth() {
  const live = $("#live");
  let state, text;
  if (health.signedOut) { state = "signed-out"; text = "Signed out"; }
  else if (!health.gateway) { state = "gateway-down"; text = "Gateway unreachable"; }
  else if (health.cluster === false) { state = "cluster-down"; text = "Cluster unreachable"; }
  else if (health.stream) { state = "live"; text = "Live"; }
  else if (health.closed) { state = "closed"; text = "Not live"; }
  else { state = "connecting"; text = connectedOnce ? "Reconnecting…" : "Connecting…"; }
  const down = state === "gateway-down" || state === "cluster-down";
  live.dataset.state = state;
  live.classList.toggle("on", state === "live");
  live.classList.toggle("down", down);
  $(".live-text", live).textContent = text;
  live.title = down ? (state === "gateway-down" ? errorWords.network : (errorWords[health.why] || errorWords.unavailable)) + " " + lastHeardText() : "";
  document.body.classList.toggle("outage", down);
  renderStale();
  renderClusterTime();
}

function lastHeardText() {
  return health.lastHeard ? "Last heard from the cluster " + ago(new Date(health.lastHeard)) + "." : "Not heard from the cluster since this page opened.";
}

// ---------------------------------------------------------------- router

let current = { view: "", prefix: "", path: "" };

function route() {
  const hash = decodeURIComponent(location.hash.slice(1) || "/files/");
  let view = "files", prefix = "", path = "";
  if (hash.startsWith("/file/")) { view = "file"; path = hash.slice(6); }
  else if (hash.startsWith("/cluster")) view = "cluster";
  else prefix = hash.startsWith("/files/") ? hash.slice(7) : "";
  current = { view, prefix, path };
  for (const v of ["files", "file", "cluster"]) $("#view-" + v).hidden = v !== view;
  const tab = view === "cluster" ? "#nav-cluster" : "#nav-files";
  for (const t of ["#nav-files", "#nav-cluster"]) {
    if (t === tab) $(t).setAttribute("aria-current", "page");
    else $(t).removeAttribute("aria-current");
  }
  if (view === "files") showFiles();
  else if (view === "file") showFile(path);
  else showCluster();
}

const filesHref = (prefix) => "#/files/" + encodePath(prefix);
const fileHref = (path) => "#/file/" + encodePath(path);

function breadcrumbs(el, prefix, last) {
  el.replaceChildren();
  const parts = prefix.split("/").filter(Boolean);
  const crumbs = [["Home", ""]];
  let acc = "";
  for (const p of parts) { acc += p + "/"; crumbs.push([p, acc]); }
  crumbs.forEach(([name, pre], i) => {
    if (i > 0) el.append(h("span", { class: "sep", "aria-hidden": "true" }, "/"));
    const isLast = i === crumbs.length - 1 && !last;
    el.append(isLast ? h("span", { "aria-current": "page" }, name) : h("a", { href: filesHref(pre) }, name));
  });
  if (last) {
    el.append(h("span", { class: "sep", "aria-hidden": "true" }, "/"), h("span", { "aria-current": "page" }, last));
  }
}

// ---------------------------------------------------------------- files view

// The listing shown: at is when it was read, error why it could not be
// read again (it is then stale), never that nothing was read for it.
let listing = { files: [], prefixes: [], next: "", truncated: false, scanned: 0 };
let searchTimer = 0;
let listSeq = 0; // the listing shown; an answer to an older request is dropped

// A search reads a bounded number of paths per request: the page asks on
// by itself until a screenful of matches is found or this many paths were
// read, then leaves the rest to the "Search further" button.
const searchScreenful = 50;
const searchAutoPaths = 100000;

async function showFiles(more) {
  const prefix = current.prefix;
  breadcrumbs($("#breadcrumbs"), prefix);
  $("#drop-target").textContent = "/" + prefix;
  const q = $("#search").value.trim();
  const seq = more ? listSeq : ++listSeq;
  let autoPaths = 0;
  $("#load-more").disabled = true;
  for (;;) {
    const params = new URLSearchParams({ prefix, processing: "1", limit: "200" });
    if (q) params.set("q", q); else params.set("delimiter", "/");
    if (more) params.set("start_after", listing.next);
    let data;
    try {
      data = await api("GET", "/files?" + params);
    } catch (e) {
      if (seq !== listSeq) return;
      $("#load-more").disabled = false;
      // What is shown stays, marked stale; a list of another folder is
      // not this one's, though.
      if (listing.prefix !== prefix || listing.query !== q) listing = { files: [], prefixes: [], scanned: 0, prefix, query: q, never: true };
      listing.error = e;
      renderFiles(q);
      return;
    }
    if (seq !== listSeq || current.view !== "files" || current.prefix !== prefix) return;
    listing.error = null;
    if (more) {
      listing.files.push(...data.files);
    } else {
      listing = { files: data.files, prefixes: data.prefixes, scanned: 0, prefix, query: q, at: Date.now() };
    }
    listing.truncated = data.truncated;
    listing.next = data.next || "";
    listing.scanned += data.scanned || 0;
    autoPaths += data.scanned || 0;
    for (const f of data.files) {
      const st = statusOf(f.processing);
      if (st && !jobs.has(f.sha256)) jobs.set(f.sha256, st);
    }
    renderFiles(q);
    if (!q || !listing.truncated || listing.files.length >= searchScreenful || autoPaths >= searchAutoPaths) break;
    more = true;
  }
  $("#load-more").disabled = false;
}

function renderFiles(q) {
  const tbody = $("#files tbody");
  tbody.replaceChildren();
  for (const p of listing.prefixes) {
    const name = p.slice(current.prefix.length).replace(/\/$/, "");
    tbody.append(h("tr", { class: "folder", dataset: { prefix: p } },
      h("td", { class: "name" }, h("a", { href: filesHref(p) }, h("img", { class: "ico", src: "icons/folder.svg", alt: "" }), name)),
      h("td", { class: "num muted" }, "—"), h("td", { class: "hide-sm" }), h("td"), h("td")));
  }
  for (const f of listing.files) {
    const name = q ? f.path.slice(current.prefix.length) : baseName(f.path);
    tbody.append(h("tr", { class: "file", dataset: { path: f.path, sha256: f.sha256 } },
      h("td", { class: "name" }, h("a", { href: fileHref(f.path) }, h("img", { class: "ico", src: "icons/" + iconFor(f) + ".svg", alt: "" }), name)),
      h("td", { class: "num" }, fmtSize(f.size)),
      h("td", { class: "hide-sm", title: f.modified }, fmtDate(f.modified)),
      h("td", { class: "status" }, pill(jobs.get(f.sha256) || statusOf(f.processing))),
      h("td", { class: "actions" },
        h("a", { class: "button secondary small download", href: API + "/files/" + encodePath(f.path), download: baseName(f.path), "aria-label": "Download " + f.path }, "↓", h("span", { class: "label-text" }, " Download")),
        h("button", { type: "button", class: "danger small delete", "aria-label": "Delete " + f.path, onclick: () => deleteFile(f.path) }, "✕", h("span", { class: "label-text" }, " Delete")))));
  }
  const empty = !listing.prefixes.length && !listing.files.length;
  renderStale();
  $("#files-empty").hidden = !empty || !!listing.never;
  $("#files").hidden = empty;
  const searched = listing.scanned.toLocaleString() + " paths searched";
  $("#files-empty .empty-title").textContent = !q ? "Nothing here yet"
    : listing.truncated ? "No file matches “" + q + "” in the first " + searched.replace(" searched", "")
    : "No file matches “" + q + "”";
  $("#files-more").hidden = !listing.truncated;
  $("#search-progress").textContent = q ? searched : "";
  $("#load-more").textContent = q ? "Search further" : "Load more";
}

// renderStale says, over a listing that could not be read again, why and
// how old it is: it stays shown rather than blank.
function renderStale() {
  const el = $("#files-stale");
  const e = listing.error;
  const stale = !!e || (listing.at && (health.cluster === false || !health.gateway));
  el.hidden = !stale;
  $("#dropzone").classList.toggle("stale", stale && !listing.never);
  if (!stale) return;
  const code = e ? e.code : (health.gateway ? "unavailable" : "network");
  $("#files-stale-title").textContent = code === "network" ? "Gateway unreachable." : outageCodes.has(code) ? "Cluster unreachable." : "Could not list the files.";
  const why = e ? humanError(e) : errorWords[code];
  const when = listing.never ? "The files cannot be listed now." : "This list is from " + timeFmt.format(new Date(listing.at)) + " and may be out of date.";
  $("#files-stale-text").textContent = why + " " + when;
}

function iconFor(f) {
  const t = f.content_type || "";
  const ext = f.path.split(".").pop().toLowerCase();
  if (t.startsWith("image/") || ["png", "jpg", "jpeg", "gif", "webp", "svg"].includes(ext)) return "image";
  if (t.startsWith("video/") || ["mp4", "webm", "mov", "mkv"].includes(ext)) return "video";
  if (t.startsWith("audio/") || ["mp3", "ogg", "wav", "flac"].includes(ext)) return "audio";
  return "file";
}

let reloadTimer = 0;
function reloadSoon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => { if (current.view === "files") showFiles(); }, 250);
}

async function deleteFile(path) {
  if (!await confirmDialog("Delete " + path + "? Where its bucket keeps earlier versions, its page can restore it for a while; its bytes are freed once nothing refers to them.")) return false;
  if (!await auth.ensure()) return false;
  try {
    await api("DELETE", "/files/" + encodePath(path));
  } catch (e) {
    toast("Could not delete " + path + ": " + humanError(e), true);
    return false;
  }
  toast("Deleted " + path);
  listing.files = listing.files.filter((f) => f.path !== path);
  if (current.view === "files") renderFiles($("#search").value.trim());
  return true;
}

// ---------------------------------------------------------------- uploads

const uploads = []; // {file, path, el, state, sha256}
let active = 0;
const maxActive = 3;

async function enqueue(files) {
  if (!files.length) return;
  if (!await auth.ensure()) return;
  const prefix = current.view === "files" ? current.prefix : "";
  $("#uploads-panel").hidden = false;
  for (const file of files) {
    const u = { file, path: prefix + file.name, prefix, state: "waiting" };
    u.el = h("li", { class: "upload", dataset: { path: u.path } },
      h("span", { class: "up-name" }, u.path),
      h("span", { class: "status" }),
      h("div", { class: "bar", role: "progressbar", "aria-label": "Upload of " + u.path, "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0" }, h("span")),
      h("span", { class: "up-detail" }, fmtSize(file.size)));
    $("#uploads").prepend(u.el);
    setUpload(u, { state: "waiting" });
    uploads.push(u);
  }
  pump();
}

function setUpload(u, st) {
  u.state = st.state;
  $(".status", u.el).replaceChildren(st.state === "waiting" ? h("span", { class: "pill" }, "waiting") : pill(st));
  const terminal = ["done", "duplicate", "error"].includes(st.state);
  u.el.classList.toggle("finished", terminal && st.state !== "error");
  u.el.classList.toggle("failed", st.state === "error");
  const detail = $(".up-detail", u.el);
  detail.classList.toggle("err", st.state === "error");
  if (st.state === "error") detail.textContent = st.error || "failed";
}

function setProgress(u, loaded, total) {
  const pct = total ? Math.floor((loaded / total) * 100) : 100;
  $(".bar > span", u.el).style.width = pct + "%";
  $(".bar", u.el).setAttribute("aria-valuenow", String(pct));
  return pct;
}

function pump() {
  while (active < maxActive) {
    const u = uploads.find((x) => x.state === "waiting");
    if (!u) return;
    active++;
    send(u).finally(() => { active--; pump(); });
  }
}

// send uploads one file as multipart form data, with progress from XHR.
function send(u) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", API + "/upload?prefix=" + encodeURIComponent(u.prefix));
    for (const [k, v] of Object.entries(auth.header())) xhr.setRequestHeader(k, v);
    setUpload(u, { state: "uploading", percent: 0 });
    xhr.upload.onprogress = (e) => {
      const pct = setProgress(u, e.loaded, e.lengthComputable ? e.total : u.file.size);
      setUpload(u, { state: "uploading", percent: Math.min(pct, 99) });
    };
    xhr.onerror = () => { setUpload(u, { state: "error", error: errorWords.network }); checkReady(); resolve(); };
    xhr.onload = async () => {
      let data = {};
      try { data = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status === 401 && !u.retried && await auth.refused()) {
        u.retried = true;
        u.state = "waiting";
        resolve();
        return;
      }
      if (xhr.status !== 201 || !data.files || !data.files.length) {
        const code = data.code || codeOfStatus(xhr.status);
        if (outageCodes.has(code)) checkReady();
        setUpload(u, { state: "error", error: humanError({ code, status: xhr.status, message: data.error }) });
        resolve();
        return;
      }
      const f = data.files[0];
      u.sha256 = f.sha256;
      setProgress(u, 1, 1);
      $(".up-detail", u.el).replaceChildren(fmtSize(f.size) + " · " + plural(f.chunks, "chunk") + ", " + f.new_chunks.toLocaleString() + " new · ",
        h("span", { class: "hash", title: f.sha256 }, f.sha256.slice(0, 16) + "…"));
      u.uploadStatus = f.status;
      // A new content's job may have moved on already: take the newest.
      const known = jobs.get(f.sha256);
      if (f.status === "duplicate") setUpload(u, { state: "duplicate" });
      else setUpload(u, known && known.state !== "queued" ? known : { state: f.status });
      if (current.view === "files" && dirName(f.path) === current.prefix) reloadSoon();
      resolve();
    };
    const form = new FormData();
    form.append("file", u.file, u.file.name);
    xhr.send(form);
  });
}

// A job's change reaches every upload and row of its content.
function applyJob(sha, st) {
  if (!st) return;
  jobs.set(sha, st);
  for (const u of uploads) {
    if (u.sha256 === sha && u.uploadStatus !== "duplicate" && u.state !== st.state) setUpload(u, st);
  }
  for (const td of document.querySelectorAll(`#files tr[data-sha256="${sha}"] td.status`)) td.replaceChildren(pill(st));
  if (current.view === "file" && detail && detail.sha256 === sha) renderProcessing(st, detail.processing);
}

// Uploads still queued or processing are also looked up now and then: an
// event missed while the stream reconnected must not leave one stuck.
setInterval(async () => {
  const waiting = new Set(uploads.filter((u) => u.sha256 && u.uploadStatus !== "duplicate" && ["queued", "processing"].includes(u.state)).map((u) => u.sha256));
  for (const sha of waiting) {
    try {
      const c = await api("GET", "/content/" + sha);
      if (c.processing) applyJob(sha, statusOf(c.processing));
    } catch { /* next time */ }
  }
}, 2000);

// ---------------------------------------------------------------- file view

let detail = null;

// fileActions enables Download and Delete for path, or (path null)
// disables them: a link without an href goes nowhere.
function fileActions(path) {
  const dl = $("#file-download");
  if (path) {
    dl.href = API + "/files/" + encodePath(path);
    dl.setAttribute("download", baseName(path));
    dl.removeAttribute("aria-disabled");
    dl.removeAttribute("tabindex");
  } else {
    dl.removeAttribute("href");
    dl.removeAttribute("download");
    dl.setAttribute("aria-disabled", "true");
    dl.setAttribute("tabindex", "-1");
  }
  dl.classList.toggle("disabled", !path);
  $("#file-delete").disabled = !path;
}

async function showFile(path) {
  breadcrumbs($("#file-breadcrumbs"), dirName(path), baseName(path));
  $("#preview").hidden = true;
  $("#file-problem").hidden = true;
  fileActions(null); // until the file is known to exist
  showVersions(path); // a deleted file's too: it may be restored
  let f, c;
  try {
    f = await api("GET", "/stat/" + encodePath(path));
    c = await api("GET", "/content/" + f.sha256);
  } catch (e) {
    if (current.view !== "file" || current.path !== path) return;
    detail = null;
    const missing = e.status === 404;
    $("#file-problem").hidden = false;
    $("#file-problem").dataset.code = e.code || "";
    $("#file-problem-title").textContent = missing ? "This file does not exist." : "This file cannot be shown now.";
    $("#view-file .detail").hidden = true;
    $("#file-problem-text").textContent = missing
      ? "There is no file at " + path + ". It may have been deleted or renamed; its folder lists what is there."
      : humanError(e);
    $("#file-meta").replaceChildren();
    $("#chunk-count").textContent = "";
    $("#chunks tbody").replaceChildren();
    $("#file-processing").replaceChildren();
    return;
  }
  if (current.view !== "file" || current.path !== path) return;
  fileActions(path);
  $("#view-file .detail").hidden = false;
  // A job event that came while the content was read may be newer than
  // what was read.
  let proc = c.processing;
  const heardProc = procs.get(f.sha256);
  if (heardProc && (!proc || new Date(heardProc.updated || 0) >= new Date(proc.updated || 0))) proc = heardProc;
  detail = { path, sha256: f.sha256, processing: proc };
  const st = statusOf(proc) || jobs.get(f.sha256);
  const copy = h("button", { type: "button", class: "ghost small copy", "aria-label": "Copy SHA-256", onclick: () => navigator.clipboard.writeText(f.sha256).then(() => toast("SHA-256 copied")) }, "Copy");
  const meta = [
    ["Name", baseName(f.path)], ["Path", f.path], ["Size", fmtSize(f.size) + " (" + f.size.toLocaleString() + " bytes)"],
    ["SHA-256", h("span", {}, h("span", { class: "hash", id: "file-sha256" }, f.sha256), copy)],
    ["Type", f.content_type || "—"], ["Created", fmtDate(f.created)], ["Modified", fmtDate(f.modified)],
  ];
  $("#file-meta").replaceChildren(...meta.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  renderProcessing(st, proc);
  $("#chunk-count").textContent = plural(c.chunks.length, "chunk");
  $("#chunks tbody").replaceChildren(...c.chunks.map((ch, i) => h("tr", {},
    h("td", { class: "num" }, i + 1),
    h("td", { class: "hash", title: ch.hash }, ch.hash.slice(0, 20) + "…"),
    h("td", { class: "num" }, fmtSize(ch.offset)),
    h("td", { class: "num" }, fmtSize(ch.size)),
    h("td", {}, h("div", { class: "nodes-list" }, (ch.replicas || []).length ? ch.replicas.map((r) => h("span", { class: "node-tag", title: r.addr }, r.node)) : h("span", { class: "pill error" }, "no live copy"))))));
  renderPreview(f);
}

// showVersions lists the path's versions on its page, when it has earlier
// ones: each earlier file can be downloaded or made current again.
async function showVersions(path) {
  const card = $("#versions-card");
  let data;
  try {
    data = await api("GET", "/versions/" + encodePath(path));
  } catch (e) {
    if (current.view === "file" && current.path === path) card.hidden = true;
    return;
  }
  if (current.view !== "file" || current.path !== path) return;
  const vs = data.versions || [];
  card.hidden = !vs.some((v) => !v.latest || v.delete_marker);
  $("#version-count").textContent = plural(vs.length, "version");
  $("#versions tbody").replaceChildren(...vs.map((v) => {
    let state = v.delete_marker ? "deleted" : v.latest ? "current" : "earlier";
    if (v.expires) state += ", kept until " + fmtDate(v.expires);
    const actions = h("td", { class: "actions" });
    if (!v.delete_marker && !v.latest) {
      actions.append(
        h("a", { class: "button ghost small", href: API + "/files/" + encodePath(path) + "?version=" + v.version_id, download: baseName(path) }, "Download"),
        h("button", { type: "button", class: "secondary small restore", "data-version": v.version_id, onclick: () => restoreVersion(path, v.version_id) }, "Restore"));
    }
    return h("tr", { "data-version": v.version_id },
      h("td", { class: "hash", title: v.version_id }, v.version_id.slice(0, 12) + "…"),
      h("td", {}, fmtDate(v.time)),
      h("td", { class: "num" }, v.delete_marker ? "—" : fmtSize(v.size)),
      h("td", { class: "hash", title: v.sha256 || "" }, v.sha256 ? v.sha256.slice(0, 12) + "…" : "—"),
      h("td", {}, state),
      actions);
  }));
}

async function restoreVersion(path, id) {
  if (!await auth.ensure()) return;
  try {
    await api("POST", "/versions/" + encodePath(path) + "?restore=" + id);
  } catch (e) {
    toast(humanError(e), true);
    return;
  }
  toast("Restored " + baseName(path));
  if (current.view === "file" && current.path === path) showFile(path);
}

function renderProcessing(st, proc) {
  const el = $("#file-processing");
  const rows = [h("dt", {}, "Status"), h("dd", {}, pill(st))];
  if (proc) {
    if (proc.worker) rows.push(h("dt", {}, "Worker"), h("dd", {}, proc.worker));
    if (proc.attempts) rows.push(h("dt", {}, "Attempts"), h("dd", {}, proc.attempts));
    if (proc.error) rows.push(h("dt", {}, "Error"), h("dd", {}, proc.error));
    if (proc.updated) rows.push(h("dt", {}, "Updated"), h("dd", {}, fmtDate(proc.updated)));
    for (const r of resultRows(proc.results || {})) {
      rows.push(h("dt", { title: r.keys.join(", "), dataset: { key: r.keys.join(" ") } }, r.label), h("dd", { class: r.hash ? "hash" : "" }, r.value));
    }
  }
  el.replaceChildren(h("dl", { class: "meta", id: "processing-results" }, rows));
}

// The processors' results (docs: internal/jobs) in words: each row has a
// label, a value shown for people, and the raw keys it comes from, which
// the label's tooltip names.
const resultLabels = {
  "verify.sha256": "SHA-256 (verified)",
  "verify.bytes": "Bytes read (verified)",
  "verify.chunks": "Chunks (verified)",
  "verify.parts": "Parts (verified)",
  "media.format": "Format",
  "media.brand": "Brand",
  "media.mime": "Detected type",
  "media.duration_seconds": "Duration",
  "media.tracks": "Tracks",
  "media.video_codec": "Video codec",
  "media.audio_codec": "Audio codec",
  "media.frame_rate": "Frame rate",
};

function resultRows(results) {
  const rows = [];
  const left = new Map(Object.entries(results));
  const take = (k) => { const v = left.get(k); left.delete(k); return v; };
  const add = (keys, label, value, hash) => rows.push({ keys, label, value, hash: !!hash });
  const one = (k, fmt, hash) => { if (left.has(k)) add([k], resultLabels[k], fmt(take(k)), hash); };
  const id = (v) => v;
  one("verify.sha256", id, true);
  one("verify.bytes", (v) => fmtSize(Number(v)) + " (" + Number(v).toLocaleString() + " bytes)");
  one("verify.chunks", (v) => plural(v, "chunk"));
  one("verify.parts", (v) => plural(v, "part"));
  one("media.format", (v) => (v === "none" ? "not a media file" : v.toUpperCase()));
  one("media.mime", id);
  one("media.duration_seconds", fmtDuration);
  if (left.has("media.width") && left.has("media.height")) {
    add(["media.width", "media.height"], "Resolution", take("media.width") + " × " + take("media.height"));
  }
  one("media.video_codec", id);
  one("media.frame_rate", (v) => Number(v).toLocaleString(undefined, { maximumFractionDigits: 3 }) + " fps");
  one("media.audio_codec", id);
  one("media.tracks", id);
  const tracks = [...left.keys()].filter((k) => /^media\.track\.\d+$/.test(k)).sort((a, b) => Number(a.split(".")[2]) - Number(b.split(".")[2]));
  for (const k of tracks) add([k], "Track " + k.split(".")[2], trackWords(take(k)));
  one("media.brand", id);
  for (const [k, v] of [...left.entries()].sort()) add([k], k, v, /^[0-9a-f]{40,}$/.test(v));
  return rows;
}

// trackWords rewrites a track's summary ("video avc1 1920x1080 29.970fps
// 12.5s") with its duration as h:mm:ss.
function trackWords(v) {
  return v.replace(/(\d+(?:\.\d+)?)s$/, (_, secs) => fmtDuration(secs)).replace(/(\d+)x(\d+)/, "$1 × $2").replace(/(\d+\.\d+)fps/, (_, f) => Number(f).toLocaleString(undefined, { maximumFractionDigits: 3 }) + " fps");
}

function renderPreview(f) {
  const url = API + "/files/" + encodePath(f.path) + "?inline=1";
  const t = f.content_type || "";
  const ext = f.path.split(".").pop().toLowerCase();
  let el = null;
  // The browser's own players ask for byte ranges: a large video starts at once.
  if (t.startsWith("video/") || ["mp4", "webm", "mov", "m4v"].includes(ext)) el = h("video", { src: url, controls: true, preload: "metadata" });
  else if (t.startsWith("audio/") || ["mp3", "ogg", "wav", "m4a", "flac"].includes(ext)) el = h("audio", { src: url, controls: true, preload: "metadata" });
  else if (t.startsWith("image/") || ["png", "jpg", "jpeg", "gif", "webp", "avif"].includes(ext)) el = h("img", { src: url, alt: "Preview of " + baseName(f.path) });
  $("#preview").replaceChildren(...(el ? [el] : []));
  $("#preview").hidden = !el;
}

// ---------------------------------------------------------------- cluster view

const nodes = new Map();
let clusterInfo = null;

async function showCluster() {
  try {
    const [n, c] = await Promise.all([api("GET", "/nodes"), api("GET", "/cluster")]);
    nodes.clear();
    for (const x of n.nodes) nodes.set(x.id, x);
    clusterInfo = c;
  } catch (e) {
    if (!outageCodes.has(e.code) && e.code !== "network") toast("Could not read the cluster: " + humanError(e), true);
  }
  renderCluster();
}

function renderCluster() {
  if (current.view !== "cluster") return;
  const c = clusterInfo || {};
  const list = [...nodes.values()].sort((a, b) => a.id.localeCompare(b.id));
  const alive = list.filter((n) => n.alive).length;
  const counter = (label, value, cls, id) => h("div", { class: "counter " + (cls || ""), id }, h("div", { class: "label" }, label), h("div", { class: "value" + (typeof value === "string" && value.length > 12 ? " small-value" : "") }, value));
  const num = (v) => (v === undefined || v === null ? "—" : Number(v).toLocaleString());
  $("#counters").replaceChildren(...[
    counter("Nodes alive", alive + " / " + list.length, alive === list.length && list.length ? "good" : "bad", "counter-nodes"),
    counter("Leader", c.leader || (c.leader_error ? "unknown" : "—"), c.leader ? "" : "", "counter-leader"),
    counter("Under-replicated chunks", num(c.under_replicated), c.under_replicated ? "bad" : "", "counter-under"),
    counter("Missing chunks", num(c.missing), c.missing ? "bad" : "", "counter-missing"),
    counter("Repairs pending", num(c.pending_repair), "", "counter-pending-repair"),
    c.unplaceable ? counter("No node for a copy", num(c.unplaceable), "bad", "counter-unplaceable") : null,
    counter("Copies repaired", num(c.repaired), "", "counter-repaired"),
    counter("GC pending", num(c.pending_gc), "", "counter-pending-gc"),
    counter("Copies collected", num(c.garbage_collected), "", "counter-collected"),
    counter("Files", num(c.files), "", "counter-files"),
    counter("Chunk copies", num(c.chunks_stored), "", "counter-chunks"),
    counter("Used", fmtSize(c.used_bytes || 0) + " of " + fmtSize(c.capacity_bytes || 0), "", "counter-used")].filter(Boolean));
  if (c.leader_error) $("#counter-leader").title = c.leader_error;
  renderClusterTime();
  $("#nodes tbody").replaceChildren(...list.map((n) => {
    const used = n.used_bytes || 0, cap = n.capacity_bytes || 0;
    const pct = cap ? Math.min(100, (used / cap) * 100) : 0;
    const fill = h("span");
    fill.style.width = Math.max(pct, used ? 1 : 0) + "%";
    return h("tr", { dataset: { node: n.id, state: n.state, alive: String(n.alive) } },
      h("td", { class: "mono" }, n.id, n.zone ? h("span", { class: "muted" }, " · " + n.zone) : null),
      h("td", { class: "hide-sm mono" }, n.addr),
      h("td", {}, h("span", { class: "pill " + n.state }, n.state)),
      h("td", { class: "heartbeat", dataset: { time: n.last_heartbeat }, title: n.last_heartbeat }, ago(n.last_heartbeat)),
      h("td", { class: "capacity" }, h("div", { class: "bar", role: "meter", "aria-label": "Used space of " + n.id, "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": pct.toFixed(1) }, fill),
        h("small", {}, fmtSize(used) + " chunks · " + fmtSize(n.free_bytes || 0) + " free")),
      h("td", { class: "num" }, num(n.chunks)));
  }));
  $("#coordinators").replaceChildren(...(c.coordinators && c.coordinators.length ? c.coordinators.map((x) => h("li", {},
    h("span", { class: "mono" }, x.addr), h("span", { class: "pill " + (x.alive ? "alive" : "dead") }, x.alive ? "alive" : "unreachable"),
    x.leader ? h("span", { class: "pill done" }, "leader") : null, x.error ? h("span", { class: "muted" }, x.error) : null))
    : [h("li", { class: "muted" }, c.leader_error ? "Coordinator status unavailable: " + c.leader_error : "—")]));
}

// renderClusterTime says whether the page is live: while the stream is
// open and the cluster answers, every change shows as it happens (the
// counters' own time is when they last changed, not when they were last
// checked); else, when the page last heard from the cluster.
function renderClusterTime() {
  const el = $("#cluster-time");
  const live = health.stream && health.gateway && health.cluster !== false;
  el.dataset.state = live ? "live" : "stale";
  el.textContent = live ? "Live: changes show as they happen" : lastHeardText();
}

setInterval(() => {
  for (const td of document.querySelectorAll("#nodes td.heartbeat")) td.textContent = ago(td.dataset.time);
  if (current.view === "cluster") renderClusterTime();
  if (current.view === "files" && !$("#files-stale").hidden) renderStale();
  const live = $("#live");
  if (live.classList.contains("down")) renderHealth();
}, 1000);

// ---------------------------------------------------------------- events

// The browser's one event stream, shared by its tabs (events.js).
let stream = null;
let connectedOnce = false;

// reconnect joins the event stream, or opens it again if it has closed for
// good (a stream refused before sign-in is not retried by the browser).
function reconnect() {
  if (!stream) stream = openEvents(onStreamMessage);
  else stream.reconnect();
}

function onStreamMessage(m) {
  switch (m.type) {
    case "hello":
      health.stream = true;
      heard();
      renderHealth();
      // After a reconnect, events may have been missed: read again.
      if (connectedOnce && !m.replay) route();
      connectedOnce = true;
      return;
    case "error":
      health.stream = false;
      health.closed = !!m.closed;
      renderHealth();
      if (!m.closed) checkReady();
      return;
    case "status":
      setClusterStatus(JSON.parse(m.data));
      return;
    case "resync":
      route();
      return;
  }
  heard();
  const ev = JSON.parse(m.data);
  switch (m.type) {
    case "file":
    case "file_deleted":
      if (current.view === "files" && ev.path.startsWith(current.prefix)) reloadSoon();
      if (m.type === "file_deleted" && current.view === "file" && current.path === ev.path) {
        toast(ev.path + " was deleted");
        location.hash = filesHref(dirName(ev.path));
      }
      break;
    case "job":
      // The detail view draws its results from detail.processing: set it
      // first.
      if (ev.processing) procs.set(ev.sha256, ev.processing);
      if (detail && detail.sha256 === ev.sha256) detail.processing = ev.processing;
      applyJob(ev.sha256, statusOf(ev.processing));
      break;
    case "node":
      nodes.set(ev.id, ev);
      renderCluster();
      break;
    case "node_removed":
      nodes.delete(ev.id);
      renderCluster();
      break;
    case "cluster":
      clusterInfo = ev;
      renderCluster();
      break;
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  window.addEventListener("hashchange", () => { $("#search").value = ""; route(); });
  // Back from the back-forward cache the page rejoins the event stream
  // (events.js) having missed what happened meanwhile: read again.
  window.addEventListener("pageshow", (e) => { if (e.persisted) route(); });
  $("#file-input").addEventListener("change", (e) => { enqueue([...e.target.files]); e.target.value = ""; });
  $("#upload-button").addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("#file-input").click(); }
  });
  $("#search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => showFiles(), 200);
  });
  $("#load-more").addEventListener("click", () => showFiles(true));
  $("#clear-uploads").addEventListener("click", () => {
    for (let i = uploads.length - 1; i >= 0; i--) {
      if (["done", "duplicate", "error"].includes(uploads[i].state)) { uploads[i].el.remove(); uploads.splice(i, 1); }
    }
    $("#uploads-panel").hidden = uploads.length === 0;
  });
  $("#new-folder").addEventListener("click", async () => {
    const name = await promptDialog({ title: "New folder", text: "Folders are path prefixes: this one appears once a file is uploaded into it.", label: "Folder name", ok: "Open" });
    if (!name || !name.trim()) return;
    const clean = name.trim().replace(/^\/+|\/+$/g, "");
    if (clean.split("/").some((s) => s === "" || s === "." || s === "..")) { toast("A folder name may not hold empty, “.” or “..” parts", true); return; }
    location.hash = filesHref(current.prefix + clean + "/");
  });
  $("#file-delete").addEventListener("click", async () => {
    const path = current.path;
    if (await deleteFile(path)) location.hash = filesHref(dirName(path));
  });
  $("#token-button").addEventListener("click", async () => {
    if (auth.mode === "key") {
      if (auth.user) await auth.signOut();
      else if (await auth.signIn()) route();
    } else if (auth.token) { auth.token = ""; updateTokenButton(); toast("Token forgotten"); }
    else await auth.ask();
  });

  // Drag and drop anywhere on the page uploads to the folder shown.
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes("Files");
  document.addEventListener("dragenter", (e) => { if (!hasFiles(e)) return; e.preventDefault(); depth++; document.body.classList.add("dragging"); });
  document.addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); });
  document.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) document.body.classList.remove("dragging"); });
  document.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    document.body.classList.remove("dragging");
    if (current.view !== "files") location.hash = filesHref(current.prefix);
    enqueue([...e.dataTransfer.files]);
  });
}

async function main() {
  wire();
  try {
    const info = await api("GET", "/info");
    auth.mode = info.auth || (info.auth_required ? "token" : "none");
  } catch { /* the gateway will say so on each call */ }
  if (auth.mode === "key") {
    const res = await fetch(API + "/session").catch(() => null);
    if (res && res.ok) auth.user = await res.json();
  }
  updateTokenButton();
  if (auth.mode === "key" && !auth.user) await auth.signIn();
  route();
  reconnect();
}

main();
