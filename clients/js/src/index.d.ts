// Types of @sessionledger/client (src/index.js).

/** The WebSocket subprotocol the client speaks. */
export declare const SUBPROTOCOL: "sessionledger.v1+json";

/** WebSocket close codes hubd uses (docs/api.md). */
export declare const CloseCodes: Readonly<{
  NORMAL: 1000;
  PROTOCOL: 1002;
  WRONG_TYPE: 1003;
  ABNORMAL: 1006;
  MALFORMED: 1007;
  TOO_LARGE: 1009;
  INTERNAL: 1011;
  ENDED_BASE: 4000;
  REFUSED_BASE: 4100;
  NOT_ALLOWED_ADD: 500;
}>;

/** True for close codes after which a client must not reconnect. */
export declare function closeForbidsReconnect(code: number): boolean;

export type Reconnect = "allowed" | "not_allowed" | "after";

export type Cause =
  | "closed"
  | "kicked"
  | "banned"
  | "superseded"
  | "idle_timeout"
  | "server_shutdown"
  | "slow_consumer"
  | "revoked"
  | "token_expired"
  | "drained"
  | "rejected"
  | "protocol_error"
  | "lost"
  | "unknown";

/** A session's Welcome. */
export interface Session {
  id: string;
  resumedFrom: string;
  eventId: string;
  seq: number;
  heartbeatIntervalMs: number;
  redelivering: number;
  oldestRedeliveredSeq: number;
  /** Notifications may have been lost to this client: resync. */
  redeliveryIncomplete: boolean;
  /** When the session's client token expires (null: none); refresh() before. */
  tokenExpires: Date | null;
  /** The URL this session is connected to. */
  url: string;
}

/** The server's answer to refresh(). */
export interface Refreshed {
  ok: boolean;
  /** Why it was refused ("" when ok). */
  reason: string;
  /** When the token the session now holds expires. */
  tokenExpires: Date | null;
  /** The ledger event: the refresh, or its refusal. */
  eventId: string;
}

export interface Notification {
  /** The ledger seq: what ack() takes. */
  seq: number;
  topic: string;
  payload: Uint8Array;
  /** The payload as UTF-8 text. */
  readonly text: string;
  eventId: string;
  time: Date;
  redelivered: boolean;
}

/** How a session ended, or why a connect attempt failed. */
export interface Disconnect {
  /** The WebSocket close code (docs/api.md). */
  code: number;
  closeReason: string;
  cause: Cause;
  reason: string;
  /** Who ordered it: an operator, "system", or the user. */
  actor: string;
  /** The ledger event behind the end (the kick, the ban, the superseding connect). */
  eventId: string;
  reconnect: Reconnect;
  reconnectAfterMs: number;
  supersededBy: string;
  /**
   * For cause "rejected": banned, rate_limited, node_full, resume_refused,
   * revoked, kicked, draining (from the Rejected frame), or, when only the
   * close code told, also shutting_down, unavailable, unauthenticated,
   * no_hello.
   */
  rejectCode: string;
  bannedUntil: Date | null;
  /** False when only the close code told the client. */
  fromFrame: boolean;
  /** The session that ended; "" for a connect attempt that failed. */
  session: string;
  willReconnect: boolean;
  delayMs: number;
  /** Failed connect attempts in a row, this one included (0 for a session's end). */
  attempt: number;
  /** The URL the connection was to. */
  url: string;
  /** The URL of the next attempt ("" when none): the next one after a movesOn end. */
  nextURL: string;
}

/** Whether a client that knows several URLs moves to the next after d. */
export declare function movesOn(d: Disconnect): boolean;

export interface ResumeInfo {
  sessionId: string;
  secret: string;
  lastAckedSeq?: number;
}

export interface ClientOptions {
  /**
   * A client JWT (hubd --jwt-secret-file, --jwt-public-key-file or
   * --jwt-jwks-file); or user (and device) on a hubd without keys.
   */
  token?: string;
  user?: string;
  device?: string;
  /** Ack each notification once its callback returned (default true). */
  autoAck?: boolean;
  /**
   * Acks are cumulative. By default the highest is sent with the next Pong
   * (and with Goodbye); a number sends it that long after the first
   * unacked notification instead; 0 sends one per notification.
   */
  ackDelayMs?: number;
  /** Reconnect as the server advises (default true). */
  reconnect?: boolean;
  backoff?: { baseMs?: number; maxMs?: number; jitter?: number };
  /** Give up after this many failed connects in a row (default: never). */
  maxAttempts?: number;
  /** Give up instead of waiting longer than this (default: any wait). */
  maxWaitMs?: number;
  /** Resume a session saved with resume(). */
  resume?: ResumeInfo;
  /** How long to wait for the Welcome (default 30 s). */
  helloTimeoutMs?: number;
  onWelcome?: (s: Session) => void;
  onNotification?: (n: Notification) => void;
  onDisconnect?: (d: Disconnect) => void;
  onState?: (s: ClientState) => void;
  onRefreshed?: (r: Refreshed) => void;
  /** A WebSocket implementation (default globalThis.WebSocket). */
  WebSocket?: typeof WebSocket;
  /** Random numbers in [0, 1) for the jitter (tests). */
  random?: () => number;
}

export type ClientState = "idle" | "connecting" | "open" | "waiting" | "closed";

export interface Stats {
  connects: number;
  resumes: number;
  delivered: number;
  redelivered: number;
  duplicates: number;
  failedAttempts: number;
}

/**
 * One session with hubd that lasts across drops. Events (also as on*
 * options): "welcome", "notification", "disconnect", "state", "refreshed"; each
 * Event's detail is the value.
 */
export declare class Client extends EventTarget {
  /** url: one /connect URL, or several (a cluster's nodes). */
  constructor(url: string | string[], options?: ClientOptions);
  readonly state: ClientState;
  readonly session: Session | null;
  readonly stats: Stats;
  connect(): void;
  ack(seq: number): void;
  close(reason?: string): void;
  resume(): ResumeInfo | null;
  /** Sends a fresher token; resolves with the server's answer. */
  refresh(token: string): Promise<Refreshed>;
}
