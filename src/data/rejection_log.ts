/**
 * Logs the clients a database turns away without letting a flood of them
 * flood the log: the first of a burst is logged in full, then at most one
 * summary a second says how many more there were and why the last one was.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { LogThrottle } from "../shared/log_throttle.ts";

const log = getLogger(["sentinel-tunnel", "listener"]);

/** Options for {@linkcode RejectionLog}. */
export interface RejectionLogOptions {
  /** The least time between two lines. @default {1000} */
  intervalMs?: number;
}

/** The rejection log of one database. */
export class RejectionLog {
  readonly #database: string;
  readonly #throttle: LogThrottle;
  #lastReason = "";
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(database: string, options: RejectionLogOptions = {}) {
    this.#database = database;
    this.#throttle = new LogThrottle(options.intervalMs ?? 1000);
  }

  /** Notes a rejected client: logged now, or counted into the next summary. */
  rejected(client: string, reason: string): void {
    const admitted = this.#throttle.admit("rejected");
    if (admitted) {
      // A summary still due (its timer late) comes first.
      if (admitted.held > 0) this.#summarize(admitted.held);
      log.warn("Database {database}: rejected client {client}: {reason}", {
        database: this.#database,
        client,
        reason,
      });
      return;
    }
    this.#lastReason = reason;
    if (this.#timer === undefined) {
      const timer = setTimeout(
        () => this.flush(),
        Math.max(0, this.#throttle.nextLineAt - performance.now()),
      );
      // A pending summary must not keep a process that is otherwise done alive.
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
  }

  /** Logs the summary of the rejections not logged yet, if any. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const held = this.#throttle.flush();
    if (held > 0) this.#summarize(held);
  }

  #summarize(count: number): void {
    log.warn(
      "Database {database}: rejected {count} more clients since the last line; the last: {reason}",
      { database: this.#database, count, reason: this.#lastReason },
    );
  }
}
