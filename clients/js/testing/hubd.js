// Test helper: a real hubd (the binary in $SL_HUBD, or built from this
// repository with go build) on 127.0.0.1 with a fresh data directory, and
// hubctl ($SL_HUBCTL, or built) to notify, kick and ban through its Admin
// API. Nothing here is mocked.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { NodeWebSocket } from "./ws.js";

/**
 * The WebSocket implementation the tests give the client: Node's own where
 * it has one (22+, or 20 with --experimental-websocket), else the minimal
 * one in ws.js (Debian's Node 18). SL_NODE_WS=1 forces ws.js.
 */
export const WebSocketImpl = process.env.SL_NODE_WS === "1" || typeof WebSocket === "undefined" ? NodeWebSocket : WebSocket;

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
let built = null;

function binaries() {
  if (process.env.SL_HUBD && process.env.SL_HUBCTL) return { hubd: process.env.SL_HUBD, hubctl: process.env.SL_HUBCTL };
  if (!built) {
    const dir = mkdtempSync(join(tmpdir(), "sl-js-bin-"));
    execFileSync("go", ["build", "-o", dir + "/", "./cmd/hubd", "./cmd/hubctl"], { cwd: repo, stdio: "inherit" });
    built = { hubd: join(dir, "hubd"), hubctl: join(dir, "hubctl") };
  }
  return built;
}

/** Starts hubd; extra are more flags. Returns { wsURL, hubctl(args), stop() }. */
export async function startHubd(extra = []) {
  const bin = binaries();
  const data = mkdtempSync(join(tmpdir(), "sl-js-data-"));
  const args = ["--data", data, "--listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0", "--metrics", "off",
    "--log-format", "json", "--shutdown-timeout", "5s", ...extra];
  const proc = spawn(bin.hubd, args, { stdio: ["ignore", "ignore", "pipe"] });
  const log = [];
  const addrs = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("hubd did not start within 30s:\n" + log.join("\n"))), 30000);
    const lines = createInterface({ input: proc.stderr });
    lines.on("line", (line) => {
      log.push(line);
      try {
        const l = JSON.parse(line);
        if (l.msg === "hubd listening") {
          clearTimeout(timer);
          resolve({ grpc: l.grpc, ws: l.websocket });
        }
      } catch {}
    });
    proc.on("exit", (code) => reject(new Error("hubd exited with " + code + ":\n" + log.join("\n"))));
  });
  const hubctl = (...a) =>
    execFileSync(bin.hubctl, [...a, "--addr", addrs.grpc, "--data", data], { encoding: "utf8", timeout: 20000 });
  return {
    wsURL: "ws://" + addrs.ws + "/connect",
    data,
    log,
    hubctl,
    /** hubctl with --json, parsed. */
    hubctlJSON: (...a) => JSON.parse(hubctl(...a, "--json")),
    token(user, device, secretFile) {
      return execFileSync(bin.hubctl, ["token", "--user", user, "--device", device, "--secret-file", secretFile], { encoding: "utf8" }).trim();
    },
    /** A token with its claims ({ token, jti, exp, ... }), valid for ttl (a Go duration). */
    tokenJSON(user, device, secretFile, ttl = "1h") {
      return JSON.parse(execFileSync(bin.hubctl, ["token", "--user", user, "--device", device, "--secret-file", secretFile, "--ttl", ttl, "--json"], { encoding: "utf8" }));
    },
    async stop() {
      proc.kill("SIGTERM");
      await new Promise((r) => (proc.exitCode !== null ? r() : proc.on("exit", r)));
      rmSync(data, { recursive: true, force: true });
    },
  };
}

/** A 32-byte JWT secret file in a fresh directory. */
export function jwtSecretFile() {
  const dir = mkdtempSync(join(tmpdir(), "sl-js-jwt-"));
  const f = join(dir, "jwt.key");
  writeFileSync(f, "0123456789abcdef0123456789abcdef-test-secret\n", { mode: 0o600 });
  return f;
}

/** Resolves with the next event of type from client, or rejects after ms. */
export function next(client, type, ms = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.removeEventListener(type, on);
      reject(new Error("no " + type + " within " + ms + " ms"));
    }, ms);
    const on = (ev) => {
      clearTimeout(timer);
      client.removeEventListener(type, on);
      resolve(ev.detail);
    };
    client.addEventListener(type, on);
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
