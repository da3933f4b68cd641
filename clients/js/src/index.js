// sessionledger's JavaScript client: one session with hubd over its
// WebSocket transport (subprotocol sessionledger.v1+json: hub.proto's
// ClientFrame and ServerFrame in the canonical protobuf JSON mapping, one
// per text message). No dependencies; runs in browsers and in Node (22+,
// or 20 with --experimental-websocket; or pass a WebSocket implementation).
//
// What it does, as docs/api.md describes for every client: sends Hello
// (a token, or a user name on a hubd without JWTs), answers pings, acks
// notifications, resumes after a drop with the last acked seq (the server
// redelivers what was missed), honours the server's reconnect advice
// (never after "do not reconnect", never sooner than the advised delay,
// with jitter), and tells the application how each session ended: the
// Disconnect's code, reason, actor and event id.

/** The WebSocket subprotocol this client speaks. */
export const SUBPROTOCOL = "sessionledger.v1+json";

/** Close codes (docs/api.md, WebSocket close codes). */
export const CloseCodes = Object.freeze({
  NORMAL: 1000,
  PROTOCOL: 1002,
  WRONG_TYPE: 1003,
  ABNORMAL: 1006,
  MALFORMED: 1007,
  TOO_LARGE: 1009,
  INTERNAL: 1011,
  ENDED_BASE: 4000,
  REFUSED_BASE: 4100,
  NOT_ALLOWED_ADD: 500,
});

const causeByCode = {
  DISCONNECT_CODE_KICKED: "kicked",
  DISCONNECT_CODE_BANNED: "banned",
  DISCONNECT_CODE_SUPERSEDED: "superseded",
  DISCONNECT_CODE_IDLE_TIMEOUT: "idle_timeout",
  DISCONNECT_CODE_SERVER_SHUTDOWN: "server_shutdown",
  DISCONNECT_CODE_SLOW_CONSUMER: "slow_consumer",
  DISCONNECT_CODE_REVOKED: "revoked",
  DISCONNECT_CODE_TOKEN_EXPIRED: "token_expired",
  DISCONNECT_CODE_DRAINED: "drained",
  DISCONNECT_CODE_LOST: "lost",
};
// By close code - 4000 (or - 4500): a session the server ended.
const causeByCloseOffset = ["", "kicked", "banned", "superseded", "idle_timeout", "server_shutdown", "slow_consumer",
  "revoked", "token_expired", "drained", "lost"];
// By close code - 4100 (or - 4600): a refused connect, for a client that
// only sees the close.
const rejectByCloseOffset = ["", "rate_limited", "node_full", "resume_refused", "banned", "shutting_down", "unavailable",
  "unauthenticated", "no_hello", "revoked", "kicked", "draining"];

/**
 * Whether a client that knows several URLs tries the next one after this
 * end: its node is gone, stopping or drained, or will not take it (full,
 * draining, unable to record). As the Go client does.
 */
export function movesOn(d) {
  switch (d.cause) {
    case "lost":
    case "server_shutdown":
    case "drained":
      return true;
    case "rejected":
      return ["node_full", "draining", "unavailable", "shutting_down"].includes(d.rejectCode);
  }
  return false;
}
const reconnectNames = {
  RECONNECT_ALLOWED: "allowed",
  RECONNECT_NOT_ALLOWED: "not_allowed",
  RECONNECT_AFTER: "after",
};

/**
 * Whether a close code tells the client not to come back: 4500–4999, and
 * errors of the protocol itself (the client is broken: retrying the same
 * frames would fail the same way).
 */
export function closeForbidsReconnect(code) {
  return (code >= 4500 && code <= 4999) || [1002, 1003, 1007, 1009].includes(code);
}

function num(v) {
  // int64 fields arrive as strings in the protobuf JSON mapping.
  if (v === undefined || v === null || v === "") return 0;
  return typeof v === "number" ? v : Number(v);
}

function decodeBase64(s) {
  if (!s) return new Uint8Array(0);
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const utf8 = new TextDecoder();

/**
 * A session with hubd that lasts across drops: create it, call connect(),
 * and listen with the on* options (or addEventListener on the client:
 * "welcome", "notification", "disconnect", "state").
 */
export class Client extends EventTarget {
  /**
   * @param {string | string[]} url ws:// or wss:// URL of hubd's /connect
   *   endpoint, or several (the nodes of a cluster): the client starts at
   *   the first and moves to the next when its node is gone, drained or
   *   full, still honouring the reconnect advice it was given.
   * @param {import("./index").ClientOptions} [options]
   */
  constructor(url, options = {}) {
    super();
    this.urls = Array.isArray(url) ? [...url] : [url];
    if (this.urls.length === 0) throw new Error("no URL to connect to");
    this.url = this.urls[0];
    this.urlIndex = 0;
    this.pendingRefresh = []; // resolvers of refresh() calls, in order
    this.opts = {
      autoAck: true,
      reconnect: true,
      backoff: { baseMs: 250, maxMs: 30000, jitter: 0.5 },
      helloTimeoutMs: 30000,
      ...options,
    };
    this.opts.backoff = { baseMs: 250, maxMs: 30000, jitter: 0.5, ...(options.backoff || {}) };
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    if (!this.WebSocket) {
      throw new Error("no WebSocket implementation: pass options.WebSocket (Node 20: run with --experimental-websocket)");
    }
    this.random = options.random || Math.random;
    this.state = "idle"; // idle, connecting, open, waiting, closed
    this.session = null; // the current Welcome, as returned by onWelcome
    this.resumeInfo = options.resume ? { ...options.resume } : null;
    this.lastAcked = this.resumeInfo ? num(this.resumeInfo.lastAckedSeq) : 0;
    this.lastDelivered = this.lastAcked;
    this.ackSent = 0; // the highest ack sent on this connection
    this.ackTimer = null;
    this.attempt = 0; // failed connects in a row
    this.sessionStart = 0;
    this.ws = null;
    this.timer = null;
    this.silenceTimer = null;
    this.closedByUser = false;
    this.stats = { connects: 0, resumes: 0, delivered: 0, redelivered: 0, duplicates: 0, failedAttempts: 0 };
  }

  /** Opens the first connection. */
  connect() {
    if (this.state !== "idle") throw new Error("connect: already " + this.state);
    this.open();
  }

  /**
   * Acknowledges notifications up to seq (acks are cumulative); the next
   * resume asks for what came after the highest one.
   */
  ack(seq) {
    seq = num(seq);
    if (seq <= this.lastAcked) return;
    this.lastAcked = seq;
    // Acks are cumulative: by default the highest goes out with the next
    // Pong (or Goodbye), so a burst of notifications costs no message of
    // its own; ackDelayMs sends it that long after the first unacked one
    // instead, and 0 one per notification.
    const delay = this.opts.ackDelayMs;
    if (delay === 0) {
      this.flushAck();
    } else if (delay > 0 && !this.ackTimer) {
      this.ackTimer = setTimeout(() => this.flushAck(), delay);
    }
  }

  flushAck() {
    clearTimeout(this.ackTimer);
    this.ackTimer = null;
    if (this.lastAcked > this.ackSent) {
      this.ackSent = this.lastAcked;
      this.send({ ack: { seq: String(this.lastAcked) } });
    }
  }

  /**
   * Ends the session (Goodbye, recorded as client_closed) and does not
   * reconnect.
   */
  close(reason = "client closed") {
    this.closedByUser = true;
    clearTimeout(this.timer);
    this.clearSilence();
    if (this.ws && this.ws.readyState === 1) {
      this.flushAck();
      this.send({ goodbye: { reason } });
      this.ws.close(1000, "goodbye");
    } else if (this.ws) {
      this.ws.close();
    }
    if (!this.ws || this.ws.readyState === 3) this.setState("closed");
  }

  /**
   * Sends a fresher client token (Refresh) for the session to hold, before
   * the one it holds expires. Resolves with the server's answer: { ok,
   * reason, tokenExpires (Date or null), eventId }; with ok the token is
   * also the one the next connect sends. Rejects if the connection is not
   * open or ends first.
   */
  refresh(token) {
    if (!this.ws || this.ws.readyState !== 1 || this.state !== "open") {
      return Promise.reject(new Error("refresh: the session is not open"));
    }
    return new Promise((resolve, reject) => {
      this.pendingRefresh.push({ token, resolve, reject, ws: this.ws });
      this.send({ refresh: { token } });
    });
  }

  refreshed(r) {
    const p = this.pendingRefresh.shift();
    const ans = {
      ok: !!r.ok,
      reason: r.reason || "",
      tokenExpires: num(r.tokenExpiresUnixNano) ? new Date(num(r.tokenExpiresUnixNano) / 1e6) : null,
      eventId: r.eventId || "",
    };
    if (ans.ok && p) this.opts.token = p.token;
    if (this.session) this.session.tokenExpires = ans.tokenExpires;
    this.emit("refreshed", ans, this.opts.onRefreshed);
    if (p) p.resolve(ans);
  }

  failRefreshes(ws) {
    const keep = [];
    for (const p of this.pendingRefresh) {
      if (p.ws === ws) p.reject(new Error("refresh: the connection ended before the answer"));
      else keep.push(p);
    }
    this.pendingRefresh = keep;
  }

  /**
   * What a later client needs to resume this session (for example across
   * a page reload): { sessionId, secret, lastAckedSeq }.
   */
  resume() {
    return this.resumeInfo ? { ...this.resumeInfo, lastAckedSeq: this.lastAcked } : null;
  }

  // --- internals ---

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.emit("state", s, this.opts.onState);
  }

  emit(type, detail, cb) {
    if (cb) {
      try {
        cb(detail);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
    const ev = new Event(type);
    ev.detail = detail;
    this.dispatchEvent(ev);
  }

  send(frame) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(frame));
  }

  open() {
    this.setState("connecting");
    let ws;
    try {
      ws = new this.WebSocket(this.url, [SUBPROTOCOL]);
    } catch (e) {
      this.ended({ closeCode: CloseCodes.ABNORMAL, closeReason: String(e && e.message ? e.message : e) }, null);
      return;
    }
    this.ws = ws;
    this.ackSent = 0;
    clearTimeout(this.ackTimer);
    this.ackTimer = null;
    const conn = { disconnect: null, rejected: null, welcomed: false, closed: false };
    const helloTimer = setTimeout(() => {
      if (!conn.welcomed) ws.close(4000, "no welcome");
    }, this.opts.helloTimeoutMs);
    ws.onopen = () => {
      const hello = {};
      if (this.opts.token) hello.token = this.opts.token;
      if (this.opts.user) hello.user = this.opts.user;
      if (this.opts.device) hello.device = this.opts.device;
      if (this.resumeInfo) {
        hello.resume = {
          sessionId: this.resumeInfo.sessionId,
          secret: this.resumeInfo.secret,
          lastAckedSeq: String(this.lastAcked),
        };
      }
      ws.send(JSON.stringify({ hello }));
    };
    ws.onmessage = (m) => {
      if (ws !== this.ws) return;
      let f;
      try {
        f = JSON.parse(typeof m.data === "string" ? m.data : utf8.decode(m.data));
      } catch {
        ws.close(1007, "server frame is not JSON");
        return;
      }
      this.heard();
      if (f.welcome) {
        conn.welcomed = true;
        clearTimeout(helloTimer);
        this.welcome(f.welcome);
      } else if (f.notification) {
        this.notification(f.notification);
      } else if (f.ping) {
        this.flushAck();
        this.send({ pong: { nonce: f.ping.nonce || "0" } });
      } else if (f.disconnect) {
        conn.disconnect = f.disconnect;
      } else if (f.rejected) {
        conn.rejected = f.rejected;
      } else if (f.refreshed) {
        this.refreshed(f.refreshed);
      }
    };
    const closed = (code, reason) => {
      clearTimeout(helloTimer);
      if (conn.closed || ws !== this.ws) return;
      conn.closed = true;
      this.clearSilence();
      this.ws = null;
      this.failRefreshes(ws);
      this.ended({ closeCode: code, closeReason: reason, welcomed: conn.welcomed }, conn);
    };
    ws.onclose = (ev) => closed(ev.code, ev.reason);
    ws.onerror = () => {
      // onclose follows with the code; but some implementations (Node
      // 20's) report a connection that could not be opened with an error
      // alone and stay CONNECTING: that is an abnormal close.
      setTimeout(() => {
        if (ws.readyState === 0 || ws.readyState === 3) {
          try {
            ws.close();
          } catch {}
          closed(CloseCodes.ABNORMAL, "connection failed");
        }
      }, 100);
    };
  }

  welcome(w) {
    const prev = this.resumeInfo;
    this.session = {
      id: w.sessionId,
      resumedFrom: w.resumedFrom || "",
      eventId: w.eventId || "",
      seq: num(w.seq),
      heartbeatIntervalMs: num(w.heartbeatIntervalMs),
      redelivering: num(w.redelivering),
      oldestRedeliveredSeq: num(w.oldestRedeliveredSeq),
      // Notifications may have been lost to this client: the resume could
      // not redeliver all, or this is a fresh session after an earlier one.
      redeliveryIncomplete: !!w.redeliveryTruncated || (!!prev && !w.resumedFrom),
      // When the token the session holds expires (null: none); refresh()
      // before then, or the session ends with token_expired.
      tokenExpires: num(w.tokenExpiresUnixNano) ? new Date(num(w.tokenExpiresUnixNano) / 1e6) : null,
      url: this.url,
    };
    if (!prev || !w.resumedFrom) {
      // A fresh session: resumes start from its connect.
      this.lastAcked = Math.max(this.lastAcked, this.session.seq);
      this.lastDelivered = Math.max(this.lastDelivered, this.session.seq);
    }
    this.resumeInfo = { sessionId: w.sessionId, secret: w.resumeSecret };
    this.stats.connects++;
    if (w.resumedFrom) this.stats.resumes++;
    this.sessionStart = Date.now();
    this.attempt = 0;
    this.setState("open");
    this.heard();
    this.emit("welcome", this.session, this.opts.onWelcome);
  }

  notification(n) {
    const seq = num(n.seq);
    if (seq <= this.lastDelivered) {
      this.stats.duplicates++;
      return;
    }
    this.lastDelivered = seq;
    const payload = decodeBase64(n.payload);
    const note = {
      seq,
      topic: n.topic || "",
      payload,
      get text() {
        return utf8.decode(payload);
      },
      eventId: n.eventId || "",
      time: new Date(num(n.timeUnixNano) / 1e6),
      redelivered: !!n.redelivered,
    };
    this.stats.delivered++;
    if (note.redelivered) this.stats.redelivered++;
    this.emit("notification", note, this.opts.onNotification);
    if (this.opts.autoAck) this.ack(seq);
  }

  // heard restarts the silence timer: nothing from the server for three
  // heartbeat intervals means the connection is dead (a half-open TCP
  // connection never closes by itself).
  heard() {
    const hb = this.session ? this.session.heartbeatIntervalMs : 0;
    if (!hb || !this.ws) return;
    this.clearSilence();
    const ws = this.ws;
    this.silenceTimer = setTimeout(() => {
      if (ws === this.ws) ws.close(4000, "server silent for 3 heartbeats");
    }, 3 * hb);
  }

  clearSilence() {
    clearTimeout(this.silenceTimer);
    this.silenceTimer = null;
  }

  // ended decides what a closed connection means and whether, and when, to
  // come back, then tells the application.
  ended(close, conn) {
    const d = {
      code: close.closeCode,
      closeReason: close.closeReason || "",
      cause: "lost",
      reason: close.closeReason || "connection lost",
      actor: "",
      eventId: "",
      reconnect: "allowed",
      reconnectAfterMs: 0,
      supersededBy: "",
      rejectCode: "",
      bannedUntil: null,
      fromFrame: false,
      session: close.welcomed && this.session ? this.session.id : "",
      url: this.url,
      willReconnect: false,
      delayMs: 0,
      attempt: 0,
    };
    const dis = conn && conn.disconnect;
    const rej = conn && conn.rejected;
    if (this.closedByUser) {
      d.cause = "closed";
      d.reason = "closed by the application";
    } else if (dis) {
      d.fromFrame = true;
      d.cause = causeByCode[dis.code] || "unknown";
      d.reason = dis.reason || "";
      d.actor = dis.actor || "";
      d.eventId = dis.eventId || "";
      d.reconnect = reconnectNames[dis.reconnect] || "allowed";
      d.reconnectAfterMs = num(dis.reconnectAfterMs);
      d.supersededBy = dis.supersededBy || "";
    } else if (rej) {
      d.fromFrame = true;
      d.cause = "rejected";
      d.rejectCode = rej.code || "";
      d.reason = rej.reason || "";
      d.reconnect = reconnectNames[rej.reconnect] || "allowed";
      d.reconnectAfterMs = num(rej.reconnectAfterMs);
      if (num(rej.untilUnixNano)) d.bannedUntil = new Date(num(rej.untilUnixNano) / 1e6);
    } else if (d.code >= 4000 && d.code <= 4999) {
      // No frame arrived (a client that only sees the close): the code
      // carries the meaning.
      const off = d.code % 500;
      if (off < 100) d.cause = causeByCloseOffset[off] || "unknown";
      else {
        d.cause = "rejected";
        d.rejectCode = rejectByCloseOffset[off - 100] || "";
      }
      if (d.code >= 4500) d.reconnect = "not_allowed";
    } else if ([1002, 1003, 1007, 1009].includes(d.code)) {
      d.cause = "protocol_error";
      d.reconnect = "not_allowed";
    }
    if (closeForbidsReconnect(d.code) && d.reconnect !== "not_allowed") d.reconnect = "not_allowed";

    if (d.session) this.attempt = 0;
    else if (d.cause !== "closed") {
      this.attempt++;
      this.stats.failedAttempts++;
    }
    d.attempt = d.session ? 0 : this.attempt;

    let come = this.opts.reconnect && d.cause !== "closed";
    if (d.reconnect === "not_allowed" || d.cause === "superseded") come = false;
    if (d.rejectCode === "resume_refused" && d.reconnect !== "not_allowed") {
      // The resume is refused but connecting afresh is allowed: nothing
      // from the gap will be redelivered (welcome says redeliveryIncomplete).
      this.resumeInfo = null;
    }
    if (this.opts.maxAttempts && this.attempt >= this.opts.maxAttempts) come = false;
    if (come) {
      d.delayMs = this.delay(d);
      if (this.opts.maxWaitMs && d.delayMs > this.opts.maxWaitMs) come = false;
    }
    if (come && this.urls.length > 1 && movesOn(d)) {
      this.urlIndex = (this.urlIndex + 1) % this.urls.length;
      this.url = this.urls[this.urlIndex];
    }
    d.willReconnect = come;
    d.nextURL = come ? this.url : "";
    this.emit("disconnect", d, this.opts.onDisconnect);
    if (come) {
      this.setState("waiting");
      this.timer = setTimeout(() => {
        if (!this.closedByUser) this.open();
      }, d.delayMs);
    } else {
      this.setState("closed");
    }
  }

  // delay is the wait before the next attempt: the backoff for this
  // attempt (base·2ⁿ up to max, the jitter fraction random), and never
  // less than the server's advice: after a, max(a, backoff) plus up to a
  // fifth of that at random, so clients told the same delay spread out.
  delay(d) {
    const { baseMs, maxMs, jitter } = this.opts.backoff;
    const n = Math.max(0, this.attempt - 1);
    let b = Math.min(maxMs, baseMs * 2 ** n);
    if (jitter > 0) b = b * (1 - jitter) + b * jitter * this.random();
    // A session that the server ended soon after it began does not restart
    // the backoff (repeated kicks, a slow-consumer loop).
    if (d.session && Date.now() - this.sessionStart < maxMs) b = Math.max(b, baseMs);
    if (d.reconnect === "after" || d.reconnectAfterMs > 0) {
      const a = d.reconnectAfterMs;
      const m = Math.max(a, b);
      return m + (m / 5) * this.random();
    }
    return b;
  }
}
