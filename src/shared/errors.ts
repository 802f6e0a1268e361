/**
 * The one place errors are sorted, by their types and the codes the system
 * gave them, never by their words: what an accept error means, whether it is
 * running out of descriptors, and how to name a network error for a person.
 * (Failures of calls to Redis and Sentinel carry their own kind:
 * `RedisCallError` in `control/redis_connection.ts`.)
 *
 * @module
 */

/** A port could not be opened. */
export class ListenError extends Error {
  override name = "ListenError";
}

/** The system's code of an error, such as `EMFILE` or `ECONNRESET`, when it has one. */
export function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** A short human description of a network error: "connection refused", "timed out after 500 ms". */
export function describeNetworkError(error: unknown): string {
  if (error instanceof Deno.errors.ConnectionRefused) {
    return "connection refused";
  }
  if (error instanceof Deno.errors.ConnectionReset) return "connection reset";
  if (error instanceof Deno.errors.ConnectionAborted) {
    return "connection aborted";
  }
  if (error instanceof Deno.errors.BrokenPipe) return "broken pipe";
  if (error instanceof Deno.errors.TimedOut) return "timed out";
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return "address not available";
  }
  if (error instanceof Deno.errors.NotFound) return "host not found";
  if (
    error instanceof Deno.errors.NotCapable ||
    error instanceof Deno.errors.PermissionDenied
  ) {
    return `not permitted: ${(error as Error).message}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * What an accept error means: `connection` for one that belongs to a single
 * client (it reset or aborted before it was accepted: skip it at once),
 * `exhaustion` for running out of descriptors, buffers or memory (back off),
 * `closed` for a listener that was closed.
 */
export type AcceptErrorKind = "connection" | "exhaustion" | "closed";

/**
 * One connection's trouble on Linux: ECONNABORTED, ECONNRESET, ENOTCONN, EPROTO, EHOSTUNREACH,
 * ENETUNREACH, ETIMEDOUT, and EPERM (a firewall refused it).
 */
const ONE_CONNECTION_CODES = new Set([
  "ECONNABORTED",
  "ECONNRESET",
  "ENOTCONN",
  "EPROTO",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
  "EPERM",
]);

/** Sorts an accept error; see {@linkcode AcceptErrorKind}. Unknown errors count as exhaustion. */
export function acceptErrorKind(error: unknown): AcceptErrorKind {
  if (error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted) {
    return "closed";
  }
  if (
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.NotConnected
  ) return "connection";
  const code = errorCode(error);
  return code !== undefined && ONE_CONNECTION_CODES.has(code) ? "connection" : "exhaustion";
}

/** Whether an error is the process (EMFILE) or the system (ENFILE) running out of file descriptors. */
export function isOutOfDescriptors(error: unknown): boolean {
  const code = errorCode(error);
  return code === "EMFILE" || code === "ENFILE";
}
