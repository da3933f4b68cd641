// A minimal WebSocket client (RFC 6455) with the browser's interface, for
// the tests on a Node without a global WebSocket (Debian's Node 18): what
// the client in src/ uses — new WebSocket(url, protocols), readyState,
// protocol, send(string), close(code, reason), onopen, onmessage, onclose,
// onerror. Text and binary messages, masking, fragments, ping/pong and the
// close handshake; no extensions.
import { request } from "node:http";
import { randomBytes, createHash } from "node:crypto";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export class NodeWebSocket {
  constructor(url, protocols = []) {
    this.url = url;
    this.readyState = 0;
    this.protocol = "";
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this.buf = Buffer.alloc(0);
    this.fragments = null;
    this.closeSent = false;
    this.closeInfo = null;
    const u = new URL(url);
    if (u.protocol !== "ws:") throw new Error("NodeWebSocket: ws:// only");
    const key = randomBytes(16).toString("base64");
    const req = request({
      host: u.hostname,
      port: u.port || 80,
      path: u.pathname + u.search,
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
        ...(protocols.length ? { "Sec-WebSocket-Protocol": [].concat(protocols).join(", ") } : {}),
      },
    });
    req.on("upgrade", (res, socket, head) => {
      const want = createHash("sha1").update(key + GUID).digest("base64");
      if (res.headers["sec-websocket-accept"] !== want) {
        socket.destroy();
        this.fail();
        return;
      }
      this.protocol = res.headers["sec-websocket-protocol"] || "";
      this.socket = socket;
      this.readyState = 1;
      socket.on("data", (d) => this.data(d));
      socket.on("close", () => this.closed());
      socket.on("error", () => {});
      this.onopen && this.onopen({});
      if (head && head.length) this.data(head);
    });
    req.on("response", (res) => {
      res.resume();
      this.fail();
    });
    req.on("error", () => this.fail());
    req.end();
  }

  fail() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onerror && this.onerror({});
    this.onclose && this.onclose({ code: 1006, reason: "", wasClean: false });
  }

  send(data) {
    if (this.readyState !== 1) return;
    const text = typeof data === "string";
    this.frame(text ? 0x1 : 0x2, text ? Buffer.from(data, "utf8") : Buffer.from(data));
  }

  close(code = 1000, reason = "") {
    if (this.readyState >= 2) return;
    if (this.readyState === 0) {
      this.fail();
      return;
    }
    this.readyState = 2;
    this.sendClose(code, reason);
  }

  sendClose(code, reason) {
    if (this.closeSent) return;
    this.closeSent = true;
    const r = Buffer.from(reason, "utf8");
    const p = Buffer.alloc(2 + r.length);
    p.writeUInt16BE(code, 0);
    r.copy(p, 2);
    this.frame(0x8, p);
  }

  frame(op, payload) {
    const n = payload.length;
    const head = n < 126 ? Buffer.alloc(2) : n < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
    head[0] = 0x80 | op;
    if (n < 126) head[1] = 0x80 | n;
    else if (n < 65536) {
      head[1] = 0x80 | 126;
      head.writeUInt16BE(n, 2);
    } else {
      head[1] = 0x80 | 127;
      head.writeBigUInt64BE(BigInt(n), 2);
    }
    const mask = randomBytes(4);
    const body = Buffer.alloc(n);
    for (let i = 0; i < n; i++) body[i] = payload[i] ^ mask[i & 3];
    this.socket.write(Buffer.concat([head, mask, body]));
  }

  data(d) {
    this.buf = Buffer.concat([this.buf, d]);
    for (;;) {
      if (this.buf.length < 2) return;
      const fin = (this.buf[0] & 0x80) !== 0;
      const op = this.buf[0] & 0x0f;
      let n = this.buf[1] & 0x7f;
      let off = 2;
      if (n === 126) {
        if (this.buf.length < 4) return;
        n = this.buf.readUInt16BE(2);
        off = 4;
      } else if (n === 127) {
        if (this.buf.length < 10) return;
        n = Number(this.buf.readBigUInt64BE(2));
        off = 10;
      }
      if (this.buf.length < off + n) return;
      const payload = this.buf.subarray(off, off + n);
      this.buf = this.buf.subarray(off + n);
      this.control(op, fin, Buffer.from(payload));
    }
  }

  control(op, fin, payload) {
    switch (op) {
      case 0x8: {
        const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        const reason = payload.length > 2 ? payload.subarray(2).toString("utf8") : "";
        this.closeInfo = { code, reason };
        this.sendClose(code === 1005 ? 1000 : code, "");
        this.readyState = 2;
        this.socket.end();
        return;
      }
      case 0x9:
        this.frame(0xa, payload);
        return;
      case 0xa:
        return;
      case 0x0:
        if (!this.fragments) return;
        this.fragments.parts.push(payload);
        break;
      default:
        this.fragments = { op, parts: [payload] };
    }
    if (!fin) return;
    const { op: mop, parts } = this.fragments;
    this.fragments = null;
    const all = Buffer.concat(parts);
    if (this.readyState === 1 && this.onmessage) {
      this.onmessage({ data: mop === 0x1 ? all.toString("utf8") : new Uint8Array(all).buffer });
    }
  }

  closed() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    const c = this.closeInfo || { code: 1006, reason: "" };
    this.onclose && this.onclose({ code: c.code, reason: c.reason, wasClean: !!this.closeInfo });
  }
}
