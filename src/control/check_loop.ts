/**
 * When a control plane checks: one check at a time, then a sleep that a wake
 * cuts short. An urgent wake (clients were just cut off) runs the next check
 * at once; any other wake, no sooner than {@linkcode MIN_CHECK_GAP_MS} after
 * the last check, so that a flood of wakes costs little. Whoever waits for a
 * check to end (a client that could not connect) waits on
 * {@linkcode CheckLoop.nextResolution}.
 *
 * A check that throws ends {@linkcode CheckLoop.run}: restarting it after a
 * backoff is `supervise()`'s job, the one place crashes are handled.
 *
 * @module
 */
import { sleep, untilAborted } from "../shared/io.ts";

/** Checks that no event made urgent run at least this far apart. */
export const MIN_CHECK_GAP_MS = 100;

/** The timing of one control plane's checks; see the module doc. */
export class CheckLoop {
  #wake: (() => void) | undefined;
  #wakePending = false;
  #urgent = false;
  #lastCheckAt = -Infinity;
  #ended = Promise.withResolvers<void>();

  /**
   * Runs `check`, then `housekeeping` (which waiters do not wait for), sleeps
   * `sleepMs()` or until woken, and again, until `signal` aborts. Rejects with
   * the error of a check that throws.
   */
  async run(
    { check, housekeeping, sleepMs }: {
      check: (signal: AbortSignal) => Promise<void>;
      housekeeping?: (signal: AbortSignal) => Promise<void>;
      sleepMs: () => number;
    },
    signal: AbortSignal,
  ): Promise<void> {
    while (!signal.aborted) {
      this.#urgent = false;
      try {
        await check(signal);
      } finally {
        this.#lastCheckAt = performance.now();
        this.#ended.resolve();
        this.#ended = Promise.withResolvers<void>();
      }
      if (signal.aborted) break;
      await housekeeping?.(signal);
      if (signal.aborted) break;
      await this.#sleep(sleepMs(), signal);
    }
  }

  /**
   * Runs the next check soon: at once when `urgent`, else no sooner than
   * {@linkcode MIN_CHECK_GAP_MS} after the last one. Called during a check,
   * the next one follows it without the usual sleep: a check whose findings
   * went stale calls it.
   */
  wake(urgent = false): void {
    if (urgent) this.#urgent = true;
    if (this.#wake) this.#wake();
    else this.#wakePending = true;
  }

  /** Waits up to `timeoutMs` for the check under way, or the next one, to end. */
  async nextResolution(timeoutMs: number, signal: AbortSignal): Promise<void> {
    const deadline = AbortSignal.any([AbortSignal.timeout(timeoutMs), signal]);
    if (deadline.aborted) return;
    await Promise.race([this.#ended.promise, untilAborted(deadline)]);
  }

  /** Sleeps `ms`, or until woken; a wake that is not urgent still keeps the gap between checks. */
  async #sleep(ms: number, signal: AbortSignal): Promise<void> {
    const until = performance.now() + ms;
    try {
      while (!signal.aborted) {
        const gapLeft = this.#lastCheckAt + MIN_CHECK_GAP_MS - performance.now();
        if (this.#wakePending && (this.#urgent || gapLeft <= 0)) break;
        const left = this.#wakePending ? gapLeft : until - performance.now();
        if (left <= 0) break;
        const woken = new AbortController();
        this.#wake = () => woken.abort();
        try {
          await sleep(left, AbortSignal.any([signal, woken.signal]));
        } finally {
          this.#wake = undefined;
        }
        if (woken.signal.aborted) this.#wakePending = true;
      }
    } finally {
      this.#wakePending = false;
    }
  }
}
