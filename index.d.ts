// Type definitions for the npm package "mpush-client-wasm" (hand-checked against
// client-wasm/src; tests/consumer-ts/check.sh compiles a consumer against the packed package).

/** What `init()` accepts: where to load the `.wasm` from, or the module itself. */
export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

/**
 * Loads the WebAssembly module; call (and await) once before `new MPushClient(...)`.
 * Without an argument it fetches `mpush_client_wasm_bg.wasm` next to the package's JS via
 * `new URL(..., import.meta.url)` (works in plain ES-module pages, Vite and webpack 5).
 */
export default function init(
  moduleOrPath?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>,
): Promise<unknown>;

/** Synchronous variant of `init()` for bytes or a compiled module you already have. */
export function initSync(module: { module: BufferSource | WebAssembly.Module } | BufferSource | WebAssembly.Module): unknown;

/**
 * Connection states, in the order a connection goes through them. "offline": the browser
 * reports no network; nothing is tried until it is back, and then at once (an open connection
 * is kept and probed with a heartbeat).
 */
export type MPushState = "connecting" | "handshaking" | "ready" | "reconnecting" | "offline" | "closed";

/** How a push is acknowledged: not at all, by the client automatically, or by the app (`ack()`). */
export type AckMode = "none" | "auto" | "biz";

/** A key-value store for the device id and the resumable session. Methods must be synchronous. */
export interface MPushStorageAdapter {
  get(key: string): string | null | undefined;
  set(key: string, value: string): void;
  remove(key: string): void;
}

/** Reconnect delays: attempt n waits minDelay + random * min(maxDelay, minDelay * 2^n), at most maxDelay. */
export interface ReconnectOptions {
  /** ms, default 500 */
  minDelay?: number;
  /** ms, default 20000 */
  maxDelay?: number;
  /**
   * Failed reconnect attempts in a row (after a lost connection, or after the first attempt
   * failed) before the client gives up: state "closed", and `connect()` rejects with
   * `ATTEMPT_LIMIT` whose `cause` is the last attempt's error. Default: no limit.
   */
  maxAttempts?: number;
}

export interface MPushClientOptions {
  /** The mpush-proxy WebSocket URL, `ws://` or `wss://`. */
  url: string;
  /** The MPUSH server's RSA public key, base64 X.509 (`mp.security.public-key`). */
  publicKey: string;
  /** Device id (no commas). Default: a random id persisted in `storage`. */
  deviceId?: string;
  /** Default "web" (MPUSH client type WEB). Commas are removed. */
  osName?: string;
  /** Commas are removed (MPUSH's session format cannot hold them). */
  osVersion?: string;
  /** Commas are removed. */
  clientVersion?: string;
  /** Bind this user after connecting; it stays bound across reconnects. */
  userId?: string;
  /** Tags for the `userId` bind. */
  tags?: string;
  /** Alias for the `userId` bind (MPUSH's bind `data`; not together with `bindToken`). */
  alias?: string;
  /**
   * Bind token for the `userId` bind, from your backend (mpush-gateway: `POST /bind-token`);
   * sent as the bind's data. A gateway with bind tokens refuses a bind without a valid one
   * ("error" event with `BIND_REFUSED`, and the user is not bound again automatically).
   */
  bindToken?: string;
  /** Smallest acceptable heartbeat, ms (>= 2000; default 180000, or maxHeartbeat if lower). */
  minHeartbeat?: number;
  /** Largest acceptable heartbeat, ms (default 180000, or minHeartbeat if higher). */
  maxHeartbeat?: number;
  /**
   * Where the device id and the fast-connect session live. Default "local" ("session" when
   * `share` is false: a device per tab).
   */
  storage?: "local" | "session" | "memory" | MPushStorageAdapter;
  /** Prefix of the storage keys. Default "mpush:". */
  storageKey?: string;
  /** Reconnect with backoff (default `{ minDelay: 500, maxDelay: 20000 }`), or `false` for never. */
  reconnect?: ReconnectOptions | boolean;
  /**
   * Timeout of bind, unbind, acked pushes and the handshake, ms; also the time a `fetch` waits
   * beyond its `readTimeout`. Default 10000.
   */
  requestTimeout?: number;
  /** Time allowed for opening the WebSocket plus handshake, ms. Default 10000. */
  connectTimeout?: number;
  /**
   * The server's `mp.core.max-packet-size`: the largest body the client sends, in bytes, after
   * compression (bodies over 1024 bytes are zlib-compressed) and encryption. Larger pushes,
   * binds and `fetch` requests reject with `PAYLOAD_TOO_LARGE` without being sent (MPUSH would
   * close the connection on them). Default 10240, at least 1024.
   */
  maxPacketSize?: number;
  /**
   * Share one connection among the tabs of this origin that use the same `url`, `publicKey`
   * and `storageKey` (Web Locks + BroadcastChannel; see `MPushClient.sharing`). Default true,
   * false with `storage` "session" or "memory". The tab holding the connection uses its own
   * options; a tab taking over binds the user bound at the time.
   */
  share?: boolean;
}

/** Result of `connect()` and payload of the "connect" event. */
export interface ConnectInfo {
  /** Whether the stored session was resumed (fast connect) instead of a full handshake. */
  fast: boolean;
  /** The negotiated heartbeat, ms. */
  heartbeat: number;
}

/**
 * Payload of the "heartbeat" event: the client sent a heartbeat (MPUSH's one-byte packet),
 * after `heartbeat - 1 s` without writing anything else, or as a liveness probe (page shown
 * again, network back online).
 */
export interface HeartbeatInfo {
  /** When it was sent, `Date.now()` ms. */
  at: number;
}

/** The options form of `bind()`: tags, and either a bind token or an alias (both are the bind's data). */
export type BindOptions =
  | { tags?: string | null; token: string; alias?: never }
  | { tags?: string | null; alias?: string | null; token?: never };

/** Result of `bind()` and payload of the "bind" event. */
export interface BindInfo {
  userId: string;
  /** True for the automatic re-bind after a reconnect. */
  rebind: boolean;
}

/**
 * Payload of the "kick" event: another connection bound the same user. The connection stays
 * open; the user is no longer bound here, and is not bound again after reconnects until you
 * call `bind()` (which takes it back, kicking the other connection).
 */
export interface KickInfo {
  deviceId: string;
  userId: string;
}

/** Payload of the "reconnecting" event: a reconnect attempt is scheduled. */
export interface ReconnectingInfo {
  /** Which attempt in a row this will be: 1 after a lost connection or a failed first attempt. */
  attempt: number;
  /** ms until it starts (backoff with jitter). */
  delay: number;
  /** Close code of the connection (or attempt) that ended: 1006 for one that never opened. */
  code: number;
  /** Its close reason ("" when the browser gives none). */
  reason: string;
  /** Why the last attempt failed (`CONNECT_FAILED`, `TIMEOUT`, ...); undefined after an established connection was lost. */
  error?: MPushError;
}

/** Payload of the "disconnect" event. */
export interface DisconnectInfo {
  /** WebSocket close code (4000: the client gave up on the connection). */
  code: number;
  reason: string;
}

/** The stable `code` of an `MPushError`. */
export type MPushErrorCode =
  | "INVALID_OPTION"
  | "INVALID_ARGUMENT"
  | "NOT_CONNECTED"
  | "NOT_BOUND"
  | "TIMEOUT"
  | "SERVER_ERROR"
  | "CONNECTION_LOST"
  | "CLOSED"
  | "PROTOCOL_ERROR"
  | "HTTP_METHOD_UNSUPPORTED"
  | "UNSUPPORTED"
  | "PAYLOAD_TOO_LARGE"
  | "HANDSHAKE_REFUSED"
  /** The server refused the bind (MPUSH's "bind failed": a missing, expired or wrong bind token). */
  | "BIND_REFUSED"
  /**
   * A connection attempt failed before the WebSocket opened; the browser does not say why, so
   * the message names the usual causes: the proxy does not allow the page's origin, the URL path
   * is not the proxy's WebSocket path, or the proxy is down or unreachable.
   */
  | "CONNECT_FAILED"
  /** `reconnect.maxAttempts` failed attempts in a row: the client gave up (`cause`: the last failure). */
  | "ATTEMPT_LIMIT";

/** Every error this package throws or rejects with is an `Error` with `name` "MPushError". */
export interface MPushError extends Error {
  name: "MPushError";
  code: MPushErrorCode;
  /**
   * MPUSH's error code, for `SERVER_ERROR` and `HANDSHAKE_REFUSED` (e.g. 1 offline, 101
   * unsupported command, 100 for a handshake the server could not decrypt: a wrong `publicKey`).
   */
  serverCode?: number;
  /** MPUSH's reason text, when the server sent one (`SERVER_ERROR`, `HANDSHAKE_REFUSED`). */
  serverReason?: string;
  /** For `ATTEMPT_LIMIT`: the last attempt's error. */
  cause?: unknown;
}

/** The stable error codes, as a frozen list. */
export const ERROR_CODES: readonly MPushErrorCode[];

/** Whether `e` is an `MPushError`, optionally with the given code. */
export function isMPushError(e: unknown, code?: MPushErrorCode): e is MPushError;

/** A push from the server. */
export class MPushMessage {
  private constructor();
  /** The content bytes. */
  readonly content: Uint8Array;
  /** The push id (for `client.ack(id)`). */
  readonly id: number;
  /** "auto" pushes were already acknowledged when the event fired; "biz" pushes need `ack()`. */
  readonly ackMode: AckMode;
  /** The content as UTF-8 text. */
  text(): string;
  /** The content parsed as JSON (throws `SyntaxError` if it is not JSON). */
  json<T = unknown>(): T;
  /**
   * Acknowledges a "biz" push; `false` when no ack is needed, it was sent already (with a
   * shared connection: also by another tab), or the push came on a connection since lost.
   * Throws `NOT_CONNECTED` while disconnected.
   */
  ack(): boolean;
  /** Does nothing: the push lives in JS (kept for compatibility). */
  free(): void;
}

/**
 * This tab's part in connection sharing: "leader" (holds the shared connection), "follower"
 * (uses another tab's), "pending" (shared, but not connected or between leaders), "off"
 * (`share: false`: its own connection) or "unsupported" (no Web Locks or BroadcastChannel, e.g.
 * a page that is not a secure context: its own connection).
 */
export type MPushSharing = "leader" | "follower" | "pending" | "off" | "unsupported";

/** Event names and their payloads. */
export interface MPushEventMap {
  /** This tab's new `sharing` role. */
  sharing: MPushSharing;
  state: MPushState;
  connect: ConnectInfo;
  reconnecting: ReconnectingInfo;
  heartbeat: HeartbeatInfo;
  push: MPushMessage;
  kick: KickInfo;
  bind: BindInfo;
  unbind: Record<string, never>;
  error: MPushError;
  disconnect: DisconnectInfo;
}

/** `fetch` init for the HTTP tunnel: MPUSH carries GET, POST, PUT and DELETE only. */
export interface MPushFetchInit {
  method?: "GET" | "POST" | "PUT" | "DELETE" | "get" | "post" | "put" | "delete";
  headers?: HeadersInit;
  body?: string | ArrayBuffer | ArrayBufferView | URLSearchParams | null;
  /**
   * How long the server waits for the upstream answer, ms (MPUSH's `readTimeout` header, which
   * it replaces; default 10000). Without any answer `requestTimeout` after that, the promise
   * resolves with a 408 "Request Timeout" `Response`, as the Java client answers.
   */
  timeout?: number;
  /**
   * Rejects the promise with the signal's reason (an "AbortError" `DOMException` for a plain
   * `abort()`) as `fetch` does; a `Request`'s signal counts when `init` has none. MPUSH cannot
   * cancel a request already sent: the server still performs it and its answer is dropped.
   */
  signal?: AbortSignal | null;
}

export interface PushOptions {
  /** "auto": resolve when the server acknowledges; "none" (default): resolve when sent. */
  ack?: "none" | "auto";
}

export class MPushClient {
  /** Checks the options (throws `INVALID_OPTION`); does not connect yet. */
  constructor(options: MPushClientOptions);
  /**
   * Adds a listener (once: adding it again does nothing); returns a function that removes it.
   * Exceptions thrown by listeners are logged, never propagated. Unknown events and
   * non-functions throw `INVALID_ARGUMENT`.
   */
  on<K extends keyof MPushEventMap>(event: K, listener: (payload: MPushEventMap[K]) => void): () => void;
  /** Like `on`, but the listener is removed before its first call. */
  once<K extends keyof MPushEventMap>(event: K, listener: (payload: MPushEventMap[K]) => void): () => void;
  /** Removes a listener added with `on` or `once`. */
  off<K extends keyof MPushEventMap>(event: K, listener: (payload: MPushEventMap[K]) => void): void;
  /**
   * Connects and keeps the connection (reconnecting with backoff, fast connect, re-bind).
   * Resolves once a session is established. Rejects, with the state "closed", on `close()`;
   * with the attempt's error when it fails and `reconnect` is false (`CONNECT_FAILED` for a
   * WebSocket that never opened); with `ATTEMPT_LIMIT` after `reconnect.maxAttempts` failed
   * attempts; with `HANDSHAKE_REFUSED` when the server refuses the handshake (a wrong
   * `publicKey`: no retries). Every failed attempt is also an "error" event.
   */
  connect(): Promise<ConnectInfo>;
  /**
   * Binds a user; bound again automatically after reconnects until `unbind()` or a kick.
   * Another user bound on this connection is unbound first. Rejects with `TIMEOUT` when the
   * server does not answer in time; the user stays wanted (bound again on the next connect)
   * and a late answer still fires "bind".
   */
  bind(userId: string, tags?: string | null, alias?: string | null): Promise<BindInfo>;
  /**
   * `bind()` with options: `token` is a bind token from your backend (sent as the bind's data,
   * so not together with `alias`). Rejects with `BIND_REFUSED` when the server refuses it (the
   * server then closes the connection; the client reconnects without binding this user).
   */
  bind(userId: string, options: BindOptions): Promise<BindInfo>;
  /** Unbinds the bound user (`NOT_BOUND` if there is none, also after a kick). */
  unbind(): Promise<void>;
  /** Pushes bytes or UTF-8 text to the server. */
  push(content: string | ArrayBuffer | ArrayBufferView, options?: PushOptions): Promise<void>;
  /**
   * Acknowledges a "biz" push by id (throws `NOT_CONNECTED` without a connection,
   * `INVALID_ARGUMENT` for an id that is not waiting for an ack on this connection). With a
   * shared connection any tab may ack; the ack is sent once, whichever tabs ask.
   */
  ack(pushId: number): void;
  /**
   * An HTTP request the MPUSH server performs for you, answered with a real `Response` (its
   * `url` is the request's); a 408 one when no answer arrives in time (see
   * `MPushFetchInit.timeout`). A `Request` is read as `fetch` reads it, `init` overriding it;
   * an aborted `signal` rejects it with the signal's reason.
   */
  fetch(input: string | URL | Request, init?: MPushFetchInit): Promise<Response>;
  /**
   * Closes and stops reconnecting; the stored session is kept for the next `connect()`. With a
   * shared connection only this tab leaves: the connection stays up for the other tabs (handed
   * over to one of them if this tab held it).
   */
  close(): void;
  /** Releases the client now (closes it) instead of at garbage collection. */
  free(): void;
  readonly state: MPushState;
  /** The negotiated heartbeat, ms; undefined before the first connect. */
  readonly heartbeat: number | undefined;
  /** When the client last sent a heartbeat (`Date.now()` ms, on any connection); undefined before the first. */
  readonly lastHeartbeatAt: number | undefined;
  readonly lastConnectWasFast: boolean;
  readonly deviceId: string;
  /** The user the server confirmed bound on the current connection; undefined when none (also while disconnected). */
  readonly userId: string | undefined;
  /** This tab's part in connection sharing ("sharing" event on changes). */
  readonly sharing: MPushSharing;
}
