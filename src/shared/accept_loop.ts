/**
 * The one accept loop, for the database ports and the admin port alike. An
 * accept error that belongs to one connection (it reset or aborted before it
 * was accepted) is skipped at once: a backoff would stall the port for
 * everyone behind it. Running out of file descriptors, buffers or memory is
 * an episode: reported once, retried with a backoff from 5 ms doubling to 1 s,
 * and reported again once accepts succeed for longer than an episode lasts.
 * Nothing a client does ends the loop; only its owner closing the listener
 * does.
 *
 * @module
 */
import { acceptErrorKind, describeNetworkError } from "./errors.ts";
import { sleep } from "./io.ts";

/**
 * Accept failures for lack of descriptors, buffers or memory closer together
 * than this are one episode, reported once: longer than the longest backoff,
 * so that accepts which flap between failing and succeeding report no more.
 */
export const EXHAUSTION_EPISODE_MS = 5000;

/** What the loop tells its owner. */
export interface AcceptHandlers {
  /** A connection accepted: serve it (not awaited, so that it must not throw). */
  onConnection(conn: Deno.TcpConn): void;
  /** A connection that reset or aborted before it was accepted, skipped. */
  onSkipped?(error: unknown): void;
  /** An episode of exhaustion began with `error`. */
  onExhausted(error: unknown): void;
  /** Accepts have succeeded for an episode's length again, after `failures` failed ones. */
  onRecovered(failures: number): void;
  /** Whether the owner closed the listener: an accept that fails then ends the loop quietly. */
  closed(): boolean;
}

/** The listener failed although nobody closed it: its owner may open the port again. */
export class ListenerFailedError extends Error {
  override name = "ListenerFailedError";
}

/**
 * Accepts until `signal` aborts or the owner closes the listener.
 *
 * @throws {ListenerFailedError} when the listener fails although nobody closed it
 */
export async function acceptLoop(
  listener: Deno.Listener<Deno.TcpConn>,
  handlers: AcceptHandlers,
  signal: AbortSignal,
): Promise<void> {
  let backoff = 0;
  let failures = 0;
  let lastFailure = -Infinity;
  while (!signal.aborted) {
    let conn: Deno.TcpConn;
    try {
      conn = await listener.accept();
    } catch (error) {
      if (signal.aborted || handlers.closed()) return;
      const kind = acceptErrorKind(error);
      if (kind === "closed" && error instanceof Deno.errors.Interrupted) continue;
      if (kind === "closed") {
        throw new ListenerFailedError(describeNetworkError(error), { cause: error });
      }
      if (kind === "connection") {
        handlers.onSkipped?.(error);
        continue;
      }
      backoff = backoff === 0 ? 5 : Math.min(backoff * 2, 1000);
      const now = performance.now();
      if (now - lastFailure > EXHAUSTION_EPISODE_MS) {
        failures = 0;
        handlers.onExhausted(error);
      }
      failures++;
      lastFailure = now;
      await sleep(backoff, signal);
      continue;
    }
    backoff = 0;
    if (failures > 0 && performance.now() - lastFailure > EXHAUSTION_EPISODE_MS) {
      handlers.onRecovered(failures);
      failures = 0;
    }
    handlers.onConnection(conn);
  }
}
