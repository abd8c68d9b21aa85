// Entry point of the npm package "mpush-client-wasm".
//
// `init()` (the default export) loads the WebAssembly module. Without an argument it fetches
// `mpush_client_wasm_bg.wasm` next to this file via `new URL(..., import.meta.url)`, which
// plain `<script type="module">` pages, Vite and webpack 5 all understand. Pass a URL,
// Response or WebAssembly.Module to load it from elsewhere; `initSync` takes bytes or a module.
export { default, initSync } from "./mpush_client_wasm.js";
// The client class is the JS facade in shared.js: tabs of one origin share one connection
// (option `share`), over the wasm client it builds.
export { MPushClient, MPushMessage } from "./shared.js";

/** The stable `code` values of errors raised by this package. */
export const ERROR_CODES = Object.freeze([
  "INVALID_OPTION",
  "INVALID_ARGUMENT",
  "NOT_CONNECTED",
  "NOT_BOUND",
  "TIMEOUT",
  "SERVER_ERROR",
  "CONNECTION_LOST",
  "CLOSED",
  "PROTOCOL_ERROR",
  "HTTP_METHOD_UNSUPPORTED",
  "UNSUPPORTED",
  "PAYLOAD_TOO_LARGE",
  "HANDSHAKE_REFUSED",
  "BIND_REFUSED",
  "CONNECT_FAILED",
  "ATTEMPT_LIMIT",
]);

/** Whether `e` is an error raised by this package (optionally with the given code). */
export function isMPushError(e, code) {
  return e instanceof Error && e.name === "MPushError" && (code === undefined || e.code === code);
}
