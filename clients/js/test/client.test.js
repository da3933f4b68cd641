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
  const rep = hubd.hubctlJSON("notify", "--user", "ann", "--topic", "chat", "--data", '{"text":"hello"}');
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
  hubd.hubctl("notify", "--user", "bea", "--topic", "t", "--data", '"one"');
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
  const missed = hubd.hubctlJSON("notify", "--user", "bea", "--topic", "t", "--data", '"two"');
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
