// sessionledger console. It calls hubd's Admin and Audit services over the
// Connect protocol (JSON), the same services hubctl and auditq call. Every
// name and reason is written with textContent, never as HTML: they are
// chosen by clients and operators. The admin token lives in this tab's
// sessionStorage and travels only in the Authorization header.
"use strict";

const ADMIN = "sessionledger.hub.v1.Admin/";
const AUDIT = "sessionledger.audit.v1.Audit/";
const TOKEN_KEY = "sessionledger.token";

const $ = (id) => document.getElementById(id);

// ---- calls -------------------------------------------------------------

class RPCError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function headers(contentType) {
  return {
    "Content-Type": contentType,
    "Connect-Protocol-Version": "1",
    "Authorization": "Bearer " + token(),
  };
}

async function callError(res) {
  let body = {};
  try {
    body = await res.json();
  } catch (e) {
    // not JSON: keep the HTTP status
  }
  return new RPCError(body.code || "http_" + res.status, body.message || res.statusText);
}

// unary calls one unary method and returns its reply.
async function unary(method, req) {
  const res = await fetch("/" + method, {
    method: "POST", headers: headers("application/json"), body: JSON.stringify(req || {}),
    cache: "no-store", credentials: "omit",
  });
  if (!res.ok) {
    throw await callError(res);
  }
  return res.json();
}

// stream calls a server-streaming method and hands each message to onMsg.
// Connect frames each message: a flags byte, a 4-byte length, the JSON.
async function stream(method, req, onMsg, signal) {
  const body = new TextEncoder().encode(JSON.stringify(req || {}));
  const framed = new Uint8Array(5 + body.length);
  new DataView(framed.buffer).setUint32(1, body.length);
  framed.set(body, 5);
  const res = await fetch("/" + method, {
    method: "POST", headers: headers("application/connect+json"), body: framed,
    cache: "no-store", credentials: "omit", signal,
  });
  if (!res.ok) {
    throw await callError(res);
  }
  const reader = res.body.getReader();
  let buf = new Uint8Array(0);
  const dec = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (value) {
      const next = new Uint8Array(buf.length + value.length);
      next.set(buf);
      next.set(value, buf.length);
      buf = next;
    }
    while (buf.length >= 5) {
      const flags = buf[0];
      const n = new DataView(buf.buffer, buf.byteOffset).getUint32(1);
      if (buf.length < 5 + n) {
        break;
      }
      const msg = JSON.parse(dec.decode(buf.subarray(5, 5 + n)) || "{}");
      buf = buf.slice(5 + n);
      if (flags & 2) { // end of stream
        if (msg.error) {
          throw new RPCError(msg.error.code || "unknown", msg.error.message || "");
        }
        return;
      }
      onMsg(msg);
    }
    if (done) {
      throw new RPCError("unavailable", "the stream ended early");
    }
  }
}

// ---- what this token may do ---------------------------------------------

let allowed = new Set(); // full method names WhoAmI listed

function may(method) {
  return allowed.has(method);
}

// applyPermissions hides every control whose data-method the token's role
// may not call (WhoAmI's list; a PermissionDenied takes one off it), and
// the Actions heading when none is left.
function applyPermissions() {
  for (const node of document.querySelectorAll("[data-method]")) {
    const ok = may(node.dataset.method);
    node.hidden = !ok;
    const controls = node.matches("form") ? node.querySelectorAll("input, select, button") : [node];
    for (const c of controls) {
      c.disabled = !ok;
    }
  }
  const anyAction = [...document.querySelectorAll("#actions [data-method]")].some((n) => !n.hidden);
  $("actions-heading").hidden = !anyAction;
  $("actions").hidden = !anyAction;
}

function denied(method) {
  allowed.delete(method);
  applyPermissions();
}

// ---- small helpers -------------------------------------------------------

// el builds an element; string children become text nodes, never markup.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") {
      e.className = v;
    } else if (k === "onclick") {
      e.addEventListener("click", v);
    } else {
      e.setAttribute(k, v);
    }
  }
  for (const c of children) {
    e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  }
  return e;
}

function nanosToISO(n) {
  if (!n || n === "0") {
    return "-";
  }
  return new Date(Number(BigInt(n) / 1000000n)).toISOString();
}

function b64ToBytes(s) {
  const bin = atob(s || "");
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) {
    out[i] = bin.charCodeAt(i);
  }
  return out;
}

function hex(b64) {
  return Array.from(b64ToBytes(b64), (b) => b.toString(16).padStart(2, "0")).join("");
}

// ulid writes 16 bytes as a ULID (Crockford base32), as the ledger names ids.
function ulid(b64) {
  const b = b64ToBytes(b64);
  if (b.length !== 16) {
    return "";
  }
  const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  let n = 0n;
  for (const x of b) {
    n = (n << 8n) | BigInt(x);
  }
  let out = "";
  for (let i = 0; i < 26; i++) {
    out = alphabet[Number(n & 31n)] + out;
    n >>= 5n;
  }
  return out;
}

function shortType(t) {
  return String(t || "").replace(/^EVENT_TYPE_/, "").toLowerCase();
}

// parseDuration reads 90s, 15m, 2h, 3d (or combinations like 1h30m) as ms.
function parseDuration(s) {
  const units = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000 };
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;
  let total = 0;
  let matched = "";
  for (const m of s.matchAll(re)) {
    total += parseFloat(m[1]) * units[m[2]];
    matched += m[0];
  }
  if (matched !== s || total <= 0) {
    throw new RPCError("invalid_argument", "not a duration: " + JSON.stringify(s) + " (use 90s, 15m, 2h or 3d)");
  }
  return Math.round(total);
}

function flash(msg) {
  $("flash").textContent = msg || "";
}

function describeError(e) {
  if (e instanceof RPCError) {
    return e.code + ": " + e.message;
  }
  return String(e && e.message ? e.message : e);
}

// handleError shows an error; a refused token signs out, a denied call
// greys the control out.
function handleError(e, method, out) {
  if (e instanceof RPCError && e.code === "unauthenticated") {
    signOut("The hub refused the token (" + e.message + "). Sign in again.");
    return;
  }
  if (e instanceof RPCError && e.code === "permission_denied" && method) {
    denied(method);
  }
  if (out) {
    out.className = "error";
    out.textContent = describeError(e);
  } else {
    flash(describeError(e));
  }
}

// ---- sign in -------------------------------------------------------------

let me = null;

async function signIn(tok) {
  sessionStorage.setItem(TOKEN_KEY, tok);
  try {
    me = await unary(ADMIN + "WhoAmI", {});
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    throw e;
  }
  allowed = new Set(me.methods || []);
  $("who").textContent = "signed in as " + (me.actor || "?") + (me.role ? " (" + me.role + ")" : "");
  $("nav").hidden = false;
  $("signout").hidden = false;
  applyPermissions();
}

function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  allowed = new Set();
  stopTail();
  $("who").textContent = "";
  $("nav").hidden = true;
  $("signout").hidden = true;
  $("signin-error").textContent = why || "";
  location.hash = "#signin";
  route();
}

// ---- pages ---------------------------------------------------------------

const pages = ["signin", "sessions", "user", "ledger", "tail"];

function show(page) {
  for (const p of pages) {
    $("page-" + p).hidden = p !== page;
  }
}

function route() {
  flash("");
  if (!me) {
    show("signin");
    $("signin-token").focus();
    return;
  }
  const h = location.hash.replace(/^#/, "");
  if (h.startsWith("user/")) {
    const name = decodeURIComponent(h.slice(5));
    show("user");
    loadUser(name);
    return;
  }
  if (h === "ledger") {
    show("ledger");
    loadLedger();
    return;
  }
  if (h === "tail") {
    show("tail");
    return;
  }
  show("sessions");
  loadSessions();
}

function userLink(name) {
  return el("a", { class: "user", href: "#user/" + encodeURIComponent(name) }, name);
}

// Sessions ------------------------------------------------------------------

let pageToken = "";

async function loadSessions() {
  const req = {
    user: $("q-user").value.trim(), device: $("q-device").value.trim(), node: $("q-node").value.trim(),
    page_size: 100, page_token: pageToken,
  };
  const tbody = $("sessions-table").tBodies[0];
  try {
    const rep = await unary(ADMIN + "ListSessions", req);
    tbody.replaceChildren();
    const list = rep.sessions || [];
    for (const s of list) {
      tbody.append(el("tr", {},
        el("td", {}, s.session_id), el("td", {}, userLink(s.user)), el("td", {}, s.device), el("td", {}, s.node),
        el("td", {}, nanosToISO(s.connected_unix_nano)), el("td", {}, s.remote_addr), el("td", {}, s.pending_end || "")));
    }
    const total = Number(rep.total || 0);
    $("sessions-summary").textContent = summary(list.length, total, pageToken !== "");
    $("next-page").hidden = !rep.next_page_token;
    $("next-page").dataset.token = rep.next_page_token || "";
    $("first-page").hidden = pageToken === "";
  } catch (e) {
    handleError(e, "/" + ADMIN + "ListSessions");
  }
}

// summary is hubctl's and auditq's line under a list of sessions.
function summary(shown, total, paged) {
  const noun = total === 1 ? "session" : "sessions";
  if (shown < total || paged) {
    return shown + " of " + total + " live " + noun + " shown";
  }
  return total + " live " + noun;
}

// User ----------------------------------------------------------------------

let currentUser = "";

async function loadUser(name) {
  if (name !== currentUser) {
    // Nothing typed for one user carries over to the next.
    for (const id of ["kick-form", "ban-form", "unban-form", "notify-form", "revoke-form"]) {
      $(id).reset();
    }
  }
  currentUser = name;
  $("user-name").textContent = name;
  for (const id of ["kick-result", "ban-result", "unban-result", "notify-result", "revoke-result"]) {
    $(id).textContent = "";
  }
  await Promise.all([loadUserSessions(), loadBan(), loadTimeline()]);
}

// pendingEnds is how many of the user's sessions shown are being ended.
let pendingEnds = 0;

async function loadUserSessions() {
  const tbody = $("user-sessions").tBodies[0];
  try {
    const sessions = [];
    let tok = "";
    let total = 0;
    do {
      const rep = await unary(ADMIN + "ListSessions", { user: currentUser, page_size: 1000, page_token: tok });
      sessions.push(...(rep.sessions || []));
      total = Number(rep.total || 0);
      tok = rep.next_page_token || "";
    } while (tok && sessions.length < 5000);
    tbody.replaceChildren();
    const target = $("kick-target");
    const except = $("kick-except-session");
    target.replaceChildren(el("option", { value: "" }, "every session of the user"));
    except.replaceChildren(el("option", { value: "" }, "(none)"));
    for (const s of sessions) {
      tbody.append(el("tr", {},
        el("td", {}, s.session_id), el("td", {}, s.device), el("td", {}, s.node),
        el("td", {}, nanosToISO(s.connected_unix_nano)), el("td", {}, s.remote_addr), el("td", {}, s.pending_end || "")));
      const label = s.session_id + " (" + s.device + ")";
      target.append(el("option", { value: s.session_id }, "session " + label));
      except.append(el("option", { value: s.session_id }, label));
    }
    pendingEnds = sessions.filter((x) => x.pending_end).length;
    $("user-summary").textContent = summary(sessions.length, total, false);
  } catch (e) {
    handleError(e, "/" + ADMIN + "ListSessions");
  }
}

async function loadBan() {
  const out = $("ban-state");
  const method = AUDIT + "BansAt";
  if (!may("/" + method)) {
    out.textContent = "";
    return;
  }
  try {
    const bans = [];
    const now = (BigInt(Date.now()) * 1000000n).toString();
    await stream(method, { at_unix_nano: now, user: currentUser }, (b) => bans.push(b));
    out.replaceChildren();
    if (bans.length === 0) {
      out.append("Not banned.");
      return;
    }
    const b = bans[0];
    out.append(el("span", { class: "banned" }, "Banned"), " since " + nanosToISO(b.since_unix_nano) + ", ",
      b.until_unix_nano && b.until_unix_nano !== "0" ? "until " + nanosToISO(b.until_unix_nano) : "with no expiry",
      ", by " + (b.actor || "?") + ": ", el("q", {}, b.reason || ""), " (event " + ulid(b.event_id) + ", seq " + b.seq + ")");
  } catch (e) {
    handleError(e, "/" + method, out);
  }
}

async function loadTimeline() {
  const method = AUDIT + "Timeline";
  const tbody = $("timeline").tBodies[0];
  if (!may("/" + method)) {
    tbody.replaceChildren();
    return;
  }
  const rows = [];
  try {
    await stream(method, { user: currentUser }, (en) => rows.push(en));
    tbody.replaceChildren();
    // Newest first; the last 500.
    for (const en of rows.slice(-500).reverse()) {
      tbody.append(el("tr", {}, el("td", {}, en.seq), el("td", {}, nanosToISO(en.time_unix_nano)),
        el("td", {}, ulid(en.id)), el("td", { class: "text" }, en.text)));
    }
    $("timeline-summary").textContent = rows.length + " event" + (rows.length === 1 ? "" : "s") +
      (rows.length > 500 ? " (the newest 500 shown)" : "");
  } catch (e) {
    handleError(e, "/" + method, $("timeline-summary"));
  }
}

function describeAction(verb, r) {
  const b = r.ban_in_force;
  if (b && b.kept) {
    return "ban recorded as event " + r.event_id + " (seq " + r.seq + ") and changes nothing: the ban in force (event " +
      b.event_id + ") ends later and was kept, " + (b.until_unix_nano && b.until_unix_nano !== "0" ? "until " + nanosToISO(b.until_unix_nano) : "with no expiry");
  }
  return verb + ": event " + r.event_id + " (seq " + r.seq + "), " + (r.sessions || 0) + " live session(s) addressed";
}

// action runs an Admin call from a form and shows the event it produced.
function action(formId, method, verb, build) {
  $(formId).addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = $(formId.replace("-form", "-result"));
    out.className = "";
    out.textContent = "…";
    try {
      const req = build();
      const r = await unary(ADMIN + method, req);
      out.className = "ok";
      out.textContent = describeAction(verb, r);
      out.dataset.eventId = r.event_id;
      await Promise.all([loadUserSessions(), loadBan(), loadTimeline()]);
      // A kick or ban returns once enforcement began; the sessions end a
      // moment later. Follow them until none is left ending (at most 15 s),
      // then show the ends in the timeline.
      const user = currentUser;
      for (let i = 0; i < 15 && pendingEnds > 0 && user === currentUser; i++) {
        await new Promise((done) => setTimeout(done, 1000));
        await loadUserSessions();
      }
      if (user === currentUser) {
        await loadTimeline();
      }
    } catch (e) {
      handleError(e, "/" + ADMIN + method, out);
    }
  });
}

function setupActions() {
  action("kick-form", "Kick", "kicked", () => {
    const req = { reason: $("kick-reason").value, mode: $("kick-mode").value, reconnect: $("kick-reconnect").value };
    const target = $("kick-target").value;
    if (target) {
      req.session_id = target;
    } else {
      req.user = currentUser;
      if ($("kick-device").value.trim()) {
        req.device = $("kick-device").value.trim();
      }
      if ($("kick-except-session").value) {
        req.except_session = $("kick-except-session").value;
      }
      if ($("kick-except-device").value.trim()) {
        req.except_device = $("kick-except-device").value.trim();
      }
    }
    if (req.reconnect === "RECONNECT_AFTER") {
      req.reconnect_after_ms = String(parseDuration($("kick-after").value.trim()));
    }
    return req;
  });
  action("ban-form", "Ban", "banned", () => {
    const req = { user: currentUser, reason: $("ban-reason").value };
    const dur = $("ban-for").value.trim();
    const until = $("ban-until").value;
    if (dur && until) {
      throw new RPCError("invalid_argument", "give For or Until, not both");
    }
    if (dur) {
      req.duration_ms = String(parseDuration(dur));
    }
    if (until) {
      req.until_unix_nano = (BigInt(Date.parse(until + "Z")) * 1000000n).toString();
    }
    return req;
  });
  action("unban-form", "Unban", "unbanned", () => ({ user: currentUser, reason: $("unban-reason").value }));
  action("notify-form", "Notify", "notified", () => {
    const payload = $("notify-payload").value;
    JSON.parse(payload); // refuse what is not JSON before sending
    const bytes = new TextEncoder().encode(payload);
    let bin = "";
    for (const b of bytes) {
      bin += String.fromCharCode(b);
    }
    return { target: "NOTIFY_TARGET_USER", user: currentUser, topic: $("notify-topic").value, payload: btoa(bin) };
  });
  action("revoke-form", "Revoke", "revoked", () => {
    const req = { reason: $("revoke-reason").value };
    const jti = $("revoke-jti").value.trim();
    if (jti) {
      req.token_id = jti; // one token, whoever holds it
    } else {
      req.user = currentUser; // every token of the user issued up to now
    }
    return req;
  });
}

// Ledger --------------------------------------------------------------------

async function loadLedger() {
  const dl = $("ledger-status");
  try {
    const st = await unary(ADMIN + "LedgerStatus", {});
    dl.replaceChildren();
    const row = (k, v) => dl.append(el("dt", {}, k), el("dd", {}, v));
    row("node", st.node || "");
    row("head seq", st.head_seq || "0");
    row("head hash", st.head_hash ? hex(st.head_hash) : "-");
    row("head event", st.head_id || "-");
    row("head time", nanosToISO(st.head_unix_nano));
    row("projections applied", st.applied_seq || "0");
    row("projection lag", (st.lag || "0") + " record(s)");
    row("live sessions on this node", st.live_sessions || "0");
    row("serving", st.not_serving ? "NO: " + st.not_serving : "yes");
  } catch (e) {
    handleError(e, "/" + ADMIN + "LedgerStatus");
  }
}

async function verify() {
  const out = $("verify-result");
  out.className = "";
  out.textContent = "verifying…";
  try {
    let result = null;
    await stream(AUDIT + "Verify", {}, (u) => {
      if (u.progress) {
        out.textContent = "verifying… seq " + u.progress.seq + " of " + u.progress.to_seq;
      }
      if (u.result) {
        result = u.result;
      }
    });
    if (!result) {
      throw new RPCError("unknown", "no result");
    }
    if (result.bad_seq && result.bad_seq !== "0") {
      out.className = "error";
      out.textContent = "BROKEN at seq " + result.bad_seq + ": " + result.reason;
    } else {
      out.className = "ok";
      out.textContent = "intact: " + (result.checked || 0) + " record(s) checked, seq " + (result.from_seq || 0) + " to " +
        (result.to_seq || 0) + "; head " + (result.head_seq || 0) + " hash " + hex(result.head_hash);
    }
  } catch (e) {
    handleError(e, "/" + AUDIT + "Verify", out);
  }
}

// Live tail -----------------------------------------------------------------

let tail = null;

function stopTail() {
  if (tail) {
    tail.abort();
    tail = null;
  }
  $("tail-toggle").textContent = "Start";
}

async function startTail() {
  tail = new AbortController();
  $("tail-toggle").textContent = "Stop";
  const tbody = $("tail-table").tBodies[0];
  const since = (BigInt(Date.now()) * 1000000n).toString();
  try {
    await stream(AUDIT + "Events", { filter: { since_unix_nano: since }, follow: true }, (m) => {
      const r = m.record || {};
      const ev = r.event || {};
      tbody.prepend(el("tr", {}, el("td", {}, r.seq), el("td", {}, nanosToISO(r.time_unix_nano)), el("td", {}, shortType(ev.type)),
        el("td", {}, ev.user ? userLink(ev.user) : ""), el("td", {}, ev.session || ""), el("td", {}, ev.actor || ""),
        el("td", { class: "text" }, ev.reason || "")));
      while (tbody.rows.length > 1000) {
        tbody.deleteRow(-1);
      }
    }, tail.signal);
  } catch (e) {
    if (e.name !== "AbortError") {
      handleError(e, "/" + AUDIT + "Events");
    }
  }
  stopTail();
}

// ---- start -----------------------------------------------------------------

document.addEventListener("DOMContentLoaded", async () => {
  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("signin-error").textContent = "";
    try {
      await signIn($("signin-token").value.trim());
      $("signin-token").value = "";
      if (!location.hash || location.hash === "#signin") {
        location.hash = "#sessions";
      }
      route();
    } catch (e) {
      $("signin-error").textContent = e instanceof RPCError && e.code === "unauthenticated" ?
        "The hub refused this token." : describeError(e);
    }
  });
  $("signout").addEventListener("click", () => signOut(""));
  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    pageToken = "";
    if (location.hash !== "#sessions") {
      location.hash = "#sessions";
    } else {
      loadSessions();
    }
  });
  $("open-user").addEventListener("click", () => {
    const u = $("q-user").value.trim();
    if (u) {
      location.hash = "#user/" + encodeURIComponent(u);
    }
  });
  $("next-page").addEventListener("click", () => {
    pageToken = $("next-page").dataset.token || "";
    loadSessions();
  });
  $("first-page").addEventListener("click", () => {
    pageToken = "";
    loadSessions();
  });
  $("ledger-refresh").addEventListener("click", loadLedger);
  $("verify").addEventListener("click", verify);
  $("tail-toggle").addEventListener("click", () => (tail ? stopTail() : startTail()));
  setupActions();
  window.addEventListener("hashchange", route);
  if (token()) {
    try {
      await signIn(token());
    } catch (e) {
      $("signin-error").textContent = describeError(e);
    }
  }
  route();
});
