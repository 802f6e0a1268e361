/**
 * How log lines say counts: plural forms right, and a count of nothing left
 * out rather than written as "closed 0 ...".
 *
 * @module
 */

/** `1 client connection`, `2 client connections`. */
export function plural(count: number, noun: string, nouns = `${noun}s`): string {
  return `${count} ${count === 1 ? noun : nouns}`;
}

/** Clients closed on each port, by port label (`port 6380`), only the ports with some. */
export type ClosedByPort = Readonly<Record<string, number>>;

/**
 * `; closed 2 client connections to the old master (1 on port 6380, 1 on port
 * 6382)`, or nothing at all when none was closed.
 */
export function closedClause(byPort: ClosedByPort, what: string): string {
  const ports = Object.entries(byPort).filter(([, n]) => n > 0);
  const closed = ports.reduce((sum, [, n]) => sum + n, 0);
  if (closed === 0) return "";
  const where = ports.length === 1
    ? ports[0]![0]
    : ports.map(([port, n]) => `${n} on ${port}`).join(", ");
  return `; closed ${plural(closed, "client connection")}${what} (${where})`;
}
