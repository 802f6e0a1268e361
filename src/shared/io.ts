/**
 * Helpers every plane uses: sleeping (always with a signal), closing a socket
 * exactly once, and naming a network error for a person.
 *
 * @module
 */

/** Waits `ms`, or less if `signal` aborts. Never rejects. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Settles when `signal` aborts (at once if it has); never rejects. */
export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
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

/** Closes a connection that may already be closed. */
export function closeQuietly(conn: { close(): void }): void {
  try {
    conn.close();
  } catch (error) {
    if (!(error instanceof Deno.errors.BadResource)) throw error;
  }
}

/** A database's port could not be opened. */
export class ListenError extends Error {
  override name = "ListenError";
}

/**
 * What an accept error means: `connection` for one that belongs to a single
 * client (it reset or aborted before it was accepted: skip it at once),
 * `exhaustion` for running out of descriptors, buffers or memory (back off),
 * `closed` for a listener that was closed.
 */
export type AcceptErrorKind = "connection" | "exhaustion" | "closed";

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
  const code = /\(os error (\d+)\)/.exec(error instanceof Error ? error.message : "")?.[1];
  // ECONNABORTED 103, ECONNRESET 104, ENOTCONN 107, EPROTO 71, EHOSTUNREACH 113, ENETUNREACH 101,
  // ETIMEDOUT 110, EPERM 1 (a firewall refused it): one connection's trouble on Linux.
  if (code !== undefined && ["103", "104", "107", "71", "113", "101", "110", "1"].includes(code)) {
    return "connection";
  }
  return "exhaustion";
}

/** Options for {@linkcode supervise}. */
export interface SuperviseOptions {
  /** Told of each unexpected failure and the wait before the restart. */
  onFailure: (error: unknown, restartInMs: number) => void;
  /** The first wait before a restart; it doubles up to `maxBackoffMs`. @default {100} */
  backoffMs?: number;
  /** @default {5000} */
  maxBackoffMs?: number;
}

/**
 * Runs `loop` until it returns or `signal` aborts; when it throws, reports the
 * error and runs it again after a backoff, so that one part's bug never ends
 * the process. Never rejects. The backoff starts again after a run that
 * lasted longer than the longest backoff.
 */
export async function supervise(
  loop: (signal: AbortSignal) => Promise<void>,
  signal: AbortSignal,
  options: SuperviseOptions,
): Promise<void> {
  const first = options.backoffMs ?? 100;
  const max = options.maxBackoffMs ?? 5000;
  let backoff = first;
  while (!signal.aborted) {
    const started = performance.now();
    try {
      await loop(signal);
      return;
    } catch (error) {
      if (signal.aborted) return;
      if (performance.now() - started > max) backoff = first;
      try {
        options.onFailure(error, backoff);
      } catch { /* a report that fails must not stop the restarts */ }
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, max);
    }
  }
}
