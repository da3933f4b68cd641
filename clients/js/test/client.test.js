// The JavaScript client against a real hubd: connect, notifications and
// acks, resume with redelivery after a drop, the server's reconnect advice
// (never after "do not reconnect", never before the advised delay), and
// the Disconnect surfaced to the application.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Client, closeForbidsReconnect } from "../src/index.js";
import { startHubd, jwtSecretFile, next, sleep, WebSocketImpl } from "../testing/hubd.js";

let hubd;
before(async () => {
  console.log("WebSocket implementation: " + (WebSocketImpl === globalThis.WebSocket ? "Node's own" : "testing/ws.js"));
  hubd = await startHubd(["--one-per-device"]);
});
after(async () => {
  await hubd?.stop();
});

function client(user, opts = {}) {
  const c = new Client(hubd.wsURL, { user, device: "node", backoff: { baseMs: 100, maxMs: 2000, jitter: 0.5 }, WebSocket: WebSocketImpl, ...opts });
  return c;
}

test("connects, receives a notification sent with hubctl, and acks it", async () => {
  const c = client("ann");
  const welcomed = next(c, "welcome");
  c.connect();
  const s = await welcomed;
  assert.match(s.id, /^[0-9A-Z]{26}$/);
  assert.equal(s.resumedFrom, "");
  const got = next(c, "notification");
  const rep = hubd.hubctlJSON("notify", "--user", "ann", "--topic", "chat", "--payload", '{"text":"hello"}');
  const n = await got;
  assert.equal(n.topic, "chat");
  assert.equal(n.text, '{"text":"hello"}');
  assert.equal(n.seq, Number(rep.seq));
  assert.equal(n.eventId, rep.event_id);
  assert.equal(n.redelivered, false);
  c.close();
  const d = await next(c, "disconnect");
  assert.equal(d.cause, "closed");
  assert.equal(d.willReconnect, false);
});

test("a kick that allows reconnecting is resumed, and what was sent meanwhile is redelivered", async () => {
  const c = client("bea", { backoff: { baseMs: 1500, maxMs: 3000, jitter: 0 } });
  const welcomed = next(c, "welcome");
  c.connect();
  const first = await welcomed;
  const got = next(c, "notification");
  hubd.hubctl("notify", "--user", "bea", "--topic", "t", "--payload", '"one"');
  assert.equal((await got).text, '"one"');

  const ended = next(c, "disconnect");
  const kick = hubd.hubctlJSON("kick", "--user", "bea", "--reason", "rebalancing");
  const d = await ended;
  assert.equal(d.cause, "kicked");
  assert.equal(d.reason, "rebalancing");
  assert.equal(d.eventId, kick.event_id);
  assert.equal(d.code, 4001);
  assert.equal(d.willReconnect, true);
  assert.ok(d.delayMs >= 1500, "backoff " + d.delayMs);
  // Sent while the client is away: the resume must redeliver it.
  const missed = hubd.hubctlJSON("notify", "--user", "bea", "--topic", "t", "--payload", '"two"');
  const resumed = next(c, "welcome", 10000);
  const redelivered = next(c, "notification", 10000);
  const w = await resumed;
  assert.equal(w.resumedFrom, first.id);
  assert.equal(w.redelivering, 1);
  const n = await redelivered;
  assert.equal(n.text, '"two"');
  assert.equal(n.seq, Number(missed.seq));
  assert.equal(n.redelivered, true);
  assert.equal(c.stats.duplicates, 0);
  c.close();
});

test("a kick that forbids reconnecting is surfaced with its code, reason, actor and event id, and the client stays away", async () => {
  const c = client("cal");
  const welcomed = next(c, "welcome");
  c.connect();
  await welcomed;
  const ended = next(c, "disconnect");
  const kick = hubd.hubctlJSON("kick", "--user", "cal", "--reason", "terms of service", "--no-reconnect");
  const d = await ended;
  assert.deepEqual(
    { code: d.code, cause: d.cause, reason: d.reason, actor: d.actor, eventId: d.eventId, reconnect: d.reconnect, willReconnect: d.willReconnect, fromFrame: d.fromFrame },
    { code: 4501, cause: "kicked", reason: "terms of service", actor: "admin", eventId: kick.event_id, reconnect: "not_allowed", willReconnect: false, fromFrame: true },
  );
  await sleep(1000);
  assert.equal(c.state, "closed");
  assert.equal(c.stats.connects, 1, "the client came back");
});

test("reconnect advice: the client waits at least the advised delay", async () => {
  const c = client("dot");
  const welcomed = next(c, "welcome");
  c.connect();
  await welcomed;
  const ended = next(c, "disconnect");
  hubd.hubctl("kick", "--user", "dot", "--reason", "maintenance", "--reconnect-after", "2s");
  const d = await ended;
  const t0 = Date.now();
  assert.equal(d.reconnect, "after");
  assert.equal(d.reconnectAfterMs, 2000);
  assert.ok(d.delayMs >= 2000 && d.delayMs <= 2400 * 1.2, "delay " + d.delayMs);
  const w = await next(c, "welcome", 10000);
  assert.ok(Date.now() - t0 >= 1990, "came back after " + (Date.now() - t0) + " ms");
  assert.ok(w.resumedFrom);
  c.close();
});

test("a banned user is told why and does not retry", async () => {
  hubd.hubctl("ban", "--user", "eve", "--reason", "fraud");
  const c = client("eve");
  const ended = next(c, "disconnect");
  c.connect();
  const d = await ended;
  assert.equal(d.cause, "rejected");
  assert.equal(d.rejectCode, "banned");
  assert.equal(d.reason, "fraud");
  assert.equal(d.code, 4604);
  assert.equal(d.willReconnect, false);
  assert.equal(d.session, "");
});

test("superseded by a login on the same device: never reconnects", async () => {
  const a = client("fin");
  const wa = next(a, "welcome");
  a.connect();
  await wa;
  const ended = next(a, "disconnect");
  const b = client("fin");
  const wb = next(b, "welcome");
  b.connect();
  const sb = await wb;
  const d = await ended;
  assert.equal(d.cause, "superseded");
  assert.equal(d.supersededBy, sb.id);
  assert.equal(d.code, 4503);
  assert.equal(d.willReconnect, false);
  b.close();
});

test("close codes alone carry the advice", () => {
  assert.equal(closeForbidsReconnect(4501), true);
  assert.equal(closeForbidsReconnect(4604), true);
  assert.equal(closeForbidsReconnect(4001), false);
  assert.equal(closeForbidsReconnect(4105), false);
  assert.equal(closeForbidsReconnect(1006), false);
  assert.equal(closeForbidsReconnect(1009), true);
});

test("connects with a token on a hubd that checks JWTs", async () => {
  const secret = jwtSecretFile();
  const h = await startHubd(["--jwt-secret-file", secret]);
  try {
    const token = h.token("gil", "web", secret);
    const c = new Client(h.wsURL, { token, reconnect: false, WebSocket: WebSocketImpl });
    const welcomed = next(c, "welcome");
    c.connect();
    const s = await welcomed;
    // hubctl sessions --json: one JSON object per line.
    const list = h.hubctl("sessions", "--user", "gil", "--json").trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(list.length, 1);
    assert.equal(list[0].session_id, s.id);
    assert.equal(list[0].transport, "websocket+json");
    c.close();

    const bad = new Client(h.wsURL, { token: token.slice(0, -3) + "AAA", reconnect: true, WebSocket: WebSocketImpl });
    const refused = next(bad, "disconnect");
    bad.connect();
    const d = await refused;
    assert.equal(d.code, 4607);
    assert.equal(d.willReconnect, false);
  } finally {
    await h.stop();
  }
});

test("tokens: refresh moves the expiry, expiry ends the session, a revocation ends it and refuses the token, a kick refuses the device", async () => {
  const secret = jwtSecretFile();
  const h = await startHubd(["--jwt-secret-file", secret, "--no-reconnect-window", "1m"]);
  try {
    const t1 = h.tokenJSON("hal", "web", secret, "2s");
    const c = new Client(h.wsURL, { token: t1.token, reconnect: false, WebSocket: WebSocketImpl });
    const welcomed = next(c, "welcome");
    c.connect();
    const s = await welcomed;
    assert.equal(s.tokenExpires.getTime(), Date.parse(t1.exp));
    const other = h.tokenJSON("ida", "web", secret, "1h");
    const no = await c.refresh(other.token);
    assert.equal(no.ok, false);
    assert.match(no.reason, /not the session's/);
    assert.match(no.eventId, /^[0-9A-Z]{26}$/);
    const t2 = h.tokenJSON("hal", "web", secret, "4s");
    const yes = await c.refresh(t2.token);
    assert.equal(yes.ok, true);
    assert.equal(yes.tokenExpires.getTime(), Date.parse(t2.exp));
    assert.equal(c.session.tokenExpires.getTime(), Date.parse(t2.exp));
    // The refreshed token expires: the session ends, reconnecting allowed
    // (with a fresh token).
    const d = await next(c, "disconnect", 10000);
    assert.ok(Date.now() >= Date.parse(t1.exp), "ended before the first token's expiry");
    assert.deepEqual({ cause: d.cause, code: d.code, reconnect: d.reconnect }, { cause: "token_expired", code: 4008, reconnect: "allowed" });

    const t3 = h.tokenJSON("hal", "web", secret, "1h");
    const r = new Client(h.wsURL, { token: t3.token, WebSocket: WebSocketImpl });
    const rw = next(r, "welcome");
    r.connect();
    await rw;
    const ended = next(r, "disconnect");
    const rev = JSON.parse(h.hubctl("revoke", "--jti", t3.jti, "--reason", "laptop stolen", "--json"));
    const rd = await ended;
    assert.deepEqual(
      { cause: rd.cause, code: rd.code, reason: rd.reason, eventId: rd.eventId, willReconnect: rd.willReconnect },
      { cause: "revoked", code: 4507, reason: "laptop stolen", eventId: rev.event_id, willReconnect: false },
    );
    const again = new Client(h.wsURL, { token: t3.token, WebSocket: WebSocketImpl });
    const refused = next(again, "disconnect");
    again.connect();
    const ad = await refused;
    assert.deepEqual(
      { cause: ad.cause, rejectCode: ad.rejectCode, code: ad.code, willReconnect: ad.willReconnect },
      { cause: "rejected", rejectCode: "revoked", code: 4609, willReconnect: false },
    );

    const t4 = h.tokenJSON("hal", "web", secret, "1h");
    const k = new Client(h.wsURL, { token: t4.token, WebSocket: WebSocketImpl });
    const kw = next(k, "welcome");
    k.connect();
    await kw;
    const kended = next(k, "disconnect");
    const kick = h.hubctlJSON("kick", "--user", "hal", "--reason", "abuse", "--no-reconnect");
    assert.equal((await kended).code, 4501);
    const t5 = h.tokenJSON("hal", "web", secret, "1h");
    const kc = new Client(h.wsURL, { token: t5.token, WebSocket: WebSocketImpl });
    const kr = next(kc, "disconnect");
    kc.connect();
    const kd = await kr;
    assert.deepEqual(
      { cause: kd.cause, rejectCode: kd.rejectCode, code: kd.code, willReconnect: kd.willReconnect },
      { cause: "rejected", rejectCode: "kicked", code: 4610, willReconnect: false },
    );
    assert.equal(kick.event_id.length, 26);
  } finally {
    await h.stop();
  }
});

test("several URLs: a client moves past a node that is down, and to the next node when its node is drained", async () => {
  const a = await startHubd();
  const b = await startHubd();
  try {
    // A port nothing listens on: a's, once a is stopped, is not known yet;
    // take one from a server that is gone.
    const gone = await startHubd();
    const deadURL = gone.wsURL;
    await gone.stop();
    const c = new Client([deadURL, a.wsURL, b.wsURL], { user: "jo", device: "web", backoff: { baseMs: 100, maxMs: 1000, jitter: 0 }, WebSocket: WebSocketImpl });
    const first = next(c, "disconnect");
    const welcomed = next(c, "welcome", 15000);
    c.connect();
    const lost = await first;
    assert.deepEqual({ cause: lost.cause, url: lost.url, nextURL: lost.nextURL }, { cause: "lost", url: deadURL, nextURL: a.wsURL });
    const s = await welcomed;
    assert.equal(s.url, a.wsURL);

    const drained = next(c, "disconnect");
    const rep = JSON.parse(a.hubctl("drain", "--reason", "upgrade", "--window", "1s", "--json"));
    const d = await drained;
    assert.deepEqual(
      { cause: d.cause, code: d.code, reason: d.reason, eventId: d.eventId, reconnect: d.reconnect, willReconnect: d.willReconnect, nextURL: d.nextURL },
      { cause: "drained", code: 4009, reason: "upgrade", eventId: rep.event_id, reconnect: "after", willReconnect: true, nextURL: b.wsURL },
    );
    // b has another log: it refuses the resume (the client then connects
    // afresh) or takes a fresh connect; either way the session is on b.
    let w;
    for (let i = 0; i < 3; i++) {
      w = await next(c, "welcome", 15000);
      if (w.url === b.wsURL) break;
    }
    assert.equal(w.url, b.wsURL);
    c.close();

    // A fresh client that lists the drained node first is refused there
    // (draining) and moves on.
    const f = new Client([a.wsURL, b.wsURL], { user: "kim", device: "web", backoff: { baseMs: 100, maxMs: 1000, jitter: 0 }, WebSocket: WebSocketImpl });
    const refused = next(f, "disconnect");
    const fw = next(f, "welcome", 15000);
    f.connect();
    const fd = await refused;
    assert.deepEqual({ cause: fd.cause, rejectCode: fd.rejectCode, code: fd.code, nextURL: fd.nextURL }, { cause: "rejected", rejectCode: "draining", code: 4111, nextURL: b.wsURL });
    assert.equal((await fw).url, b.wsURL);
    f.close();
  } finally {
    await a.stop();
    await b.stop();
  }
});
