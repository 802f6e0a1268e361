/**
 * Helpers every plane uses: sleeping (always with a signal), closing a socket
 * exactly once, and restarting a loop that fails (`supervise`).
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

/** Closes a connection that may already be closed. */
export function closeQuietly(conn: { close(): void }): void {
  try {
    conn.close();
  } catch (error) {
    if (!(error instanceof Deno.errors.BadResource)) throw error;
  }
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
