/**
 * Logs the clients a database turns away without letting a flood of them
 * flood the log: the first of a burst is logged in full, then at most one
 * summary a second says how many more there were and why the last one was.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";

const log = getLogger(["sentinel-tunnel", "listener"]);

/** Options for {@linkcode RejectionLog}. */
export interface RejectionLogOptions {
  /** The least time between two lines. @default {1000} */
  intervalMs?: number;
}

/** The rejection log of one database. */
export class RejectionLog {
  readonly #database: string;
  readonly #intervalMs: number;
  /** Until when a rejection is counted instead of logged. */
  #quietUntil = -Infinity;
  #unlogged = 0;
  #lastReason = "";
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(database: string, options: RejectionLogOptions = {}) {
    this.#database = database;
    this.#intervalMs = options.intervalMs ?? 1000;
  }

  /** Notes a rejected client: logged now, or counted into the next summary. */
  rejected(client: string, reason: string): void {
    const now = performance.now();
    if (this.#unlogged === 0 && now >= this.#quietUntil) {
      this.#quietUntil = now + this.#intervalMs;
      log.warn("Database {database}: rejected client {client}: {reason}", {
        database: this.#database,
        client,
        reason,
      });
      return;
    }
    this.#unlogged++;
    this.#lastReason = reason;
    if (this.#timer === undefined) {
      const timer = setTimeout(() => this.flush(), Math.max(0, this.#quietUntil - now));
      // A pending summary must not keep a process that is otherwise done alive.
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
  }

  /** Logs the summary of the rejections not logged yet, if any. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#unlogged === 0) return;
    log.warn(
      "Database {database}: rejected {count} more clients since the last line; the last: {reason}",
      { database: this.#database, count: this.#unlogged, reason: this.#lastReason },
    );
    this.#unlogged = 0;
    this.#quietUntil = performance.now() + this.#intervalMs;
  }
}
