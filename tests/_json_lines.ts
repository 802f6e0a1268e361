/**
 * Test utility: JSON lines read from a process's stream as they come (a
 * tunnel's logs, a probe's records), with a wait for a matching one.
 *
 * @module
 */

/** A log line of the tunnel, parsed; a line that is not JSON is kept as `level: "RAW"`. */
export function parseLogLine(
  line: string,
): Record<string, unknown> & { message?: string; level?: string } {
  try {
    return JSON.parse(line);
  } catch {
    return { message: line, level: "RAW" };
  }
}

/** JSON lines read from a stream as they come, with a wait for a match. */
export class JsonLines<T> {
  readonly records: T[] = [];
  readonly done: Promise<void>;
  #changed = Promise.withResolvers<void>();
  #ended = false;

  constructor(stream: ReadableStream<Uint8Array>, parse: (line: string) => T) {
    this.done = (async () => {
      let pending = "";
      try {
        for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
          pending += chunk;
          let newline;
          while ((newline = pending.indexOf("\n")) !== -1) {
            const line = pending.slice(0, newline).trim();
            pending = pending.slice(newline + 1);
            if (line === "") continue;
            this.records.push(parse(line));
            this.#changed.resolve();
            this.#changed = Promise.withResolvers();
          }
        }
      } catch { /* the process is gone */ }
      this.#ended = true;
      this.#changed.resolve();
    })();
  }

  /** The first record that matches, waiting up to `timeoutMs`; throws naming `what` and the last lines. */
  async waitFor(match: (record: T) => boolean, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.records.find(match);
      if (found !== undefined) return found;
      const remaining = deadline - Date.now();
      if (remaining <= 0 || this.#ended) {
        const tail = this.records.slice(-30).map((r) => JSON.stringify(r)).join("\n");
        throw new Error(
          `No matching ${what} within ${timeoutMs} ms${
            this.#ended ? " (the process ended)" : ""
          }; last lines:\n${tail}`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#changed.promise,
        new Promise((resolve) => timer = setTimeout(resolve, Math.min(remaining, 200))),
      ]);
      clearTimeout(timer);
    }
  }
}
