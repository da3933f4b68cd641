// The demo page's script: one Client, its events shown as they come.
import { Client } from "./client.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
if (params.get("user")) $("user").value = params.get("user");
if (params.get("device")) $("device").value = params.get("device");

let client = null;
// What the page shows, for tests and curious readers: window.demo.
window.demo = { state: "idle", notifications: [], disconnects: [], connects: 0 };

function show(state) {
  window.demo.state = state;
  $("state").textContent = state;
  $("state").className = state;
}

function start(e) {
  e.preventDefault();
  if (client) return;
  const wsURL = new URL("/connect", location.href);
  wsURL.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  $("ended").style.display = "none";
  client = new Client(wsURL.href, {
    user: $("user").value.trim(),
    device: $("device").value.trim() || "browser",
    token: $("token").value.trim() || undefined,
    onState: show,
    onWelcome(s) {
      window.demo.connects++;
      $("session").textContent = "session " + s.id + (s.resumedFrom ? " (resumed " + s.resumedFrom + ")" : "");
    },
    onNotification(n) {
      window.demo.notifications.push({ seq: n.seq, topic: n.topic, text: n.text });
      const li = document.createElement("li");
      li.innerHTML = "<code></code> <span></span><div class=meta></div>";
      li.querySelector("code").textContent = n.topic;
      li.querySelector("span").textContent = n.text;
      li.querySelector(".meta").textContent = "seq " + n.seq + " · " + n.time.toISOString() + (n.redelivered ? " · redelivered" : "");
      $("notes").appendChild(li);
    },
    onDisconnect(d) {
      window.demo.disconnects.push(d);
      if (d.willReconnect) {
        $("session").textContent = d.cause + ": reconnecting in " + Math.round(d.delayMs) + " ms";
        return;
      }
      $("ended").style.display = "block";
      $("ended-title").textContent = d.cause === "closed" ? "You left" : "Disconnected: " + d.cause.replace("_", " ");
      $("ended-reason").textContent = d.reason || "—";
      $("ended-actor").textContent = d.actor || "—";
      $("ended-event").textContent = d.eventId || "—";
      $("ended-code").textContent = String(d.code);
      $("ended-reconnect").textContent = d.reconnect === "not_allowed" ? "not allowed: this page will not reconnect" :
        d.reconnect === "after" ? "after " + d.reconnectAfterMs + " ms" : "allowed";
      $("session").textContent = "";
      $("connect").disabled = false;
      $("leave").disabled = true;
      client = null;
    },
  });
  $("connect").disabled = true;
  $("leave").disabled = false;
  client.connect();
}

$("form").addEventListener("submit", start);
$("leave").addEventListener("click", () => client && client.close("left the demo page"));
if (params.get("autoconnect") === "1" && $("user").value) $("form").requestSubmit();
