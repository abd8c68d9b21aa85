// A TypeScript consumer of the packed "mpush-client-wasm" package: check.sh compiles it with
// `tsc --noEmit` after installing the npm pack tarball into a fresh directory. The lines under
// "expect-error" directives must fail to type-check: the typings are neither too loose nor too strict.
import init, {
  ERROR_CODES,
  MPushClient,
  MPushMessage,
  isMPushError,
  type BindInfo,
  type ConnectInfo,
  type MPushClientOptions,
  type MPushError,
  type MPushErrorCode,
  type MPushSharing,
  type MPushState,
  type ReconnectingInfo,
} from "mpush-client-wasm";

export async function main(): Promise<void> {
  await init();
  await init({ module_or_path: new URL("./mpush_client_wasm_bg.wasm", import.meta.url) });

  const options: MPushClientOptions = {
    url: "wss://push.example.com/mpush",
    publicKey: "MIGfMA0G...",
    osVersion: navigator.userAgent,
    userId: "user-42",
    tags: "vip",
    storage: { get: (k) => localStorage.getItem(k), set: (k, v) => localStorage.setItem(k, v), remove: (k) => localStorage.removeItem(k) },
    reconnect: { minDelay: 500, maxDelay: 20000 },
    requestTimeout: 10000,
  };
  const client = new MPushClient(options);
  new MPushClient({ url: "ws://127.0.0.1:8080/mpush", publicKey: "k", storage: "session", reconnect: false });
  // @ts-expect-error publicKey is required
  new MPushClient({ url: "ws://x" });
  // @ts-expect-error storage names are fixed
  new MPushClient({ url: "ws://x", publicKey: "k", storage: "disk" });

  client.on("state", (s: MPushState) => console.log(s));
  // Tab sharing: the role, its event, and the opt-out.
  const stopSharing: () => void = client.on("sharing", (r: MPushSharing) => console.log(r === "leader"));
  stopSharing();
  client.once("connect", (c) => console.log(c.fast));
  const role: MPushSharing = client.sharing;
  console.log(role);
  new MPushClient({ url: "ws://127.0.0.1:8080/mpush", publicKey: "k", share: false });
  // @ts-expect-error share is a boolean
  new MPushClient({ url: "ws://x", publicKey: "k", share: "yes" });
  // @ts-expect-error not a sharing role
  const notARole: MPushSharing = "primary";
  console.log(notARole);
  client.on("connect", ({ fast, heartbeat }) => console.log(fast ? "fast" : "full", heartbeat.toFixed()));
  client.on("push", (m: MPushMessage) => {
    const bytes: Uint8Array = m.content;
    const text: string = m.text();
    const data = m.json<{ n: number }>();
    if (m.ackMode === "biz") m.ack();
    console.log(bytes.length, text, data.n, m.id);
  });
  client.on("kick", (k) => console.log(k.userId, k.deviceId));
  client.on("bind", (b: BindInfo) => console.log(b.userId, b.rebind));
  client.on("error", (e) => console.log(e.code, e.serverCode, e.message));
  client.on("disconnect", (d) => console.log(d.code, d.reason));
  // The lifecycle explains itself: attempts, delays, close codes, the failed attempt's error.
  client.on("reconnecting", (r: ReconnectingInfo) => console.log(r.attempt, r.delay, r.code, r.reason, r.error?.code));
  const offline: MPushState = "offline";
  console.log(offline, client.userId?.length);
  new MPushClient({ url: "ws://x", publicKey: "k", reconnect: { maxAttempts: 5 } });
  // @ts-expect-error maxAttempts is a number
  new MPushClient({ url: "ws://x", publicKey: "k", reconnect: { maxAttempts: "5" } });
  try {
    await new MPushClient({ url: "ws://x", publicKey: "k", reconnect: { maxAttempts: 2 } }).connect();
  } catch (e) {
    if (isMPushError(e, "ATTEMPT_LIMIT") && isMPushError(e.cause, "CONNECT_FAILED")) console.log(e.cause.message);
  }
  // @ts-expect-error push payloads are messages, not strings
  client.on("push", (m: string) => m);
  // @ts-expect-error unknown event
  client.on("message", () => {});

  const info: ConnectInfo = await client.connect();
  console.log(info.fast, client.state, client.heartbeat, client.lastConnectWasFast, client.deviceId);
  const bound: BindInfo = await client.bind("user-42", "vip");
  console.log(bound.rebind);
  const token = "v1.1800000000.mac-from-the-backend";
  await client.bind("user-42", { token, tags: "vip" });
  await client.bind("user-42", { alias: "a" });
  new MPushClient({ url: "ws://x", publicKey: "k", userId: "user-42", bindToken: token });
  // @ts-expect-error token and alias are both the bind's data
  await client.bind("user-42", { token, alias: "a" });
  // @ts-expect-error the bind token is a string
  new MPushClient({ url: "ws://x", publicKey: "k", userId: "u", bindToken: 42 });
  try {
    await client.bind("user-42", { token });
  } catch (e) {
    if (isMPushError(e, "BIND_REFUSED")) console.log("fetch a fresh token", e.serverReason);
  }
  await client.unbind();
  await client.push("hello", { ack: "auto" });
  await client.push(new Uint8Array([1, 2, 3]));
  // @ts-expect-error MPUSH never acks biz upstream pushes
  await client.push("x", { ack: "biz" });
  client.ack(7);

  const res: Response = await client.fetch("http://api.internal/v1/me", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ a: 1 }),
    timeout: 5000,
  });
  console.log(res.status, await res.text());
  await client.fetch(new URL("http://api.internal/"), { headers: [["a", "b"]], body: new Uint8Array(2) });
  const viaRequest: Response = await client.fetch(new Request("http://api.internal/x", { method: "PUT", body: "b" }), { timeout: 2000 });
  console.log(viaRequest.url);
  await client.fetch("http://api.internal/slow", { signal: AbortSignal.timeout(3000) });
  await client.fetch("http://api.internal/slow", { signal: null });
  // @ts-expect-error a signal is an AbortSignal
  await client.fetch("http://api.internal/slow", { signal: "soon" });
  // @ts-expect-error PATCH cannot be carried by MPUSH
  await client.fetch("http://api.internal/", { method: "PATCH" });

  try {
    await client.bind("u");
  } catch (e) {
    if (isMPushError(e, "NOT_CONNECTED")) {
      const err: MPushError = e;
      const code: MPushErrorCode = err.code;
      console.log(code, ERROR_CODES.includes(code));
    }
  }
  client.close();
  client.free();
}
