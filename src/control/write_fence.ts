/**
 * The write fence's clock: when no majority of the configured Sentinels has
 * named the master for `fence.afterMs` (the tunnel is cut off from them, or
 * left with a minority of them), the fence closes and the master is used no
 * more until a majority names a master again. The time runs from the last
 * check in which a majority named the master in use, or from the first
 * confirmation when none has yet. What closing does (cutting the master's
 * clients) is the master watcher's; this keeps the time.
 *
 * @module
 */
import type { FenceConfig } from "../shared/settings.ts";

/** The fence of one master name; see the module doc. */
export class WriteFence {
  readonly #settings: () => FenceConfig | undefined;
  readonly #onExpired: (afterMs: number) => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When it closed (ms since the epoch), while it is closed. */
  #closedSince: number | undefined;
  /** Where the time runs from (`performance.now()`). */
  #from: number | undefined;

  /**
   * `settings` is read whenever the clock is set, so a reload applies.
   * `onExpired` runs when the time is up; it calls {@linkcode WriteFence.close}
   * if there is a master to fence off.
   */
  constructor(settings: () => FenceConfig | undefined, onExpired: (afterMs: number) => void) {
    this.#settings = settings;
    this.#onExpired = onExpired;
  }

  /** When the fence closed (ms since the epoch), while it is closed. */
  get closedSince(): number | undefined {
    return this.#closedSince;
  }

  /** A majority of the configured Sentinels named the master: the time starts again. Returns whether it was closed. */
  renew(): boolean {
    this.#from = performance.now();
    const wasClosed = this.#closedSince !== undefined;
    this.#closedSince = undefined;
    this.#schedule();
    return wasClosed;
  }

  /** A master was confirmed without a majority: the time runs on, started if it was not. */
  runOn(): void {
    if (this.#timer === undefined) this.#schedule();
  }

  /** Closes the fence (the time is up, and a master was fenced off). */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#closedSince = Date.now();
  }

  /**
   * The fence's settings changed (a reload): turned off, a closed fence
   * opens; added or changed, the time runs from the last majority's word.
   */
  settingsChanged(): void {
    if (!this.#settings()) this.#closedSince = undefined;
    this.#schedule();
  }

  /** Stops the clock (the checks stop). */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Starts the clock again after a stop, from where the time runs, if it had started. */
  resume(): void {
    if (this.#from !== undefined) this.#schedule();
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const fence = this.#settings();
    if (!fence || this.#closedSince !== undefined) return;
    const from = this.#from ??= performance.now();
    const left = Math.max(0, from + fence.afterMs - performance.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#onExpired(fence.afterMs);
    }, left);
  }
}
