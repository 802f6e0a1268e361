/**
 * Small waits shared by the benchmark: a sleep that honours a signal, and a
 * check that a proxy's port leads to a given Redis node.
 *
 * @module
 */
import { oneCommand } from "../tests/_tunnel.ts";

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * The port of the Redis node a new connection to 127.0.0.1:`port` reaches:
 * `CONFIG GET port`, or `CONFIG GET tls-port` for a TLS-only node (whose
 * `port` is 0).
 */
export async function nodeBehind(
  port: number,
  parameter: "port" | "tls-port" = "port",
): Promise<number> {
  const reply = await oneCommand(port, ["CONFIG", "GET", parameter], 2000);
  if (Array.isArray(reply) && reply[0] === parameter) return Number(reply[1]);
  throw new Error(`CONFIG GET ${parameter} through port ${port} answered ${JSON.stringify(reply)}`);
}

/** Options for {@linkcode waitRoutesTo}. */
export interface WaitRoutesToOptions {
  /**
   * How many new connections in a row must reach the node. A round-robin
   * balancer over three servers needs at least three to be trusted.
   * @default {4}
   */
  consecutive?: number;
  /**
   * Deadline in milliseconds.
   * @default {30000}
   */
  timeoutMs?: number;
  /**
   * The node's setting that holds `nodePort`: `"tls-port"` for a TLS-only node.
   * @default {"port"}
   */
  parameter?: "port" | "tls-port";
  /**
   * Aborts the wait.
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * Waits until new connections to 127.0.0.1:`port` reach the node on
 * `nodePort`, `consecutive` times in a row.
 *
 * @throws {Error} naming what the connections reached when the deadline passes
 */
export async function waitRoutesTo(
  port: number,
  nodePort: number,
  options: WaitRoutesToOptions = {},
): Promise<void> {
  const { consecutive = 4, timeoutMs = 30_000, parameter = "port", signal } = options;
  const deadline = performance.now() + timeoutMs;
  let inARow = 0;
  let last = "nothing yet";
  while (performance.now() < deadline) {
    signal?.throwIfAborted();
    try {
      const reached = await nodeBehind(port, parameter);
      last = `node ${reached}`;
      inARow = reached === nodePort ? inARow + 1 : 0;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
      inARow = 0;
    }
    if (inARow >= consecutive) return;
    await sleep(inARow > 0 ? 0 : 100, signal);
  }
  throw new Error(
    `Port ${port} does not lead to node ${nodePort} after ${timeoutMs} ms: last reached ${last}`,
  );
}
