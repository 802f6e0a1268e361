/**
 * The one way the tunnel keeps a repeated event from flooding its log: the
 * first occurrence is logged at once, repeats within `intervalMs` of the last
 * line are held back and counted, and the first repeat after the interval is
 * logged with that count. An occurrence of another kind (another key) is new:
 * it is logged at once, and the count starts again.
 *
 * ```ts ignore
 * const throttle = new LogThrottle(30_000);
 * const admitted = throttle.admit(`${kind} ${detail}`);
 * if (admitted) log.warn("check failed: {detail}{repeats}", { detail, repeats: admitted.held });
 * ```
 *
 * (The log sink folds lines repeated word for word as a last line of defence,
 * `ops/log.ts`; this is what the code that writes a line decides.)
 *
 * @module
 */

/** An occurrence to log now, and how many of its kind were held back since the last line. */
export interface Admitted {
  readonly held: number;
}

/** Decides, for one stream of events, which to log; see the module doc. */
export class LogThrottle {
  readonly #intervalMs: number;
  #key: string | undefined;
  #loggedAt = -Infinity;
  #held = 0;

  /** @param intervalMs the least time between two lines of one kind */
  constructor(intervalMs: number) {
    this.#intervalMs = intervalMs;
  }

  /** How many occurrences are held back, not yet in any line. */
  get held(): number {
    return this.#held;
  }

  /** When (`performance.now()`) an occurrence of the last kind is logged again. */
  get nextLineAt(): number {
    return this.#loggedAt + this.#intervalMs;
  }

  /** Whether the occurrence of `key` is logged now; `undefined` holds it back (counted). */
  admit(key: string, now: number = performance.now()): Admitted | undefined {
    if (key !== this.#key || now - this.#loggedAt >= this.#intervalMs) {
      const held = key === this.#key ? this.#held : 0;
      this.#key = key;
      this.#loggedAt = now;
      this.#held = 0;
      return { held };
    }
    this.#held++;
    return undefined;
  }

  /**
   * Takes the count held back, for a summary line written now: the next
   * occurrence waits for the interval from this line.
   */
  flush(now: number = performance.now()): number {
    const held = this.#held;
    this.#held = 0;
    if (held > 0) this.#loggedAt = now;
    return held;
  }

  /** Forgets the last kind: its next occurrence is new. */
  reset(): void {
    this.#key = undefined;
    this.#held = 0;
  }
}
