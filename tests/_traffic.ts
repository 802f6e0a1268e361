/**
 * Client traffic through the tunnel, as a plain Redis client that knows
 * nothing of Sentinel would send it. Each connection first asks
 * `CONFIG GET port` (`tls-port` on TLS-only nodes, whose `port` is 0), so every acknowledged write is known to come from one
 * node: that is how the tests count writes acknowledged by a demoted master.
 *
 * @module
 */
import { RedisConnection } from "../src/control/redis_connection.ts";
import { RespErrorReply, type RespValue } from "../src/control/resp.ts";

/** One acknowledged write. */
export interface Ack {
  readonly key: string;
  /** The port of the node that acknowledged it. */
  readonly node: number;
  /** `performance.now()` when the reply arrived. */
  readonly at: number;
}

/** Options for {@linkcode runWriters}. */
export interface WriterOptions {
  /** The tunnel's local port. */
  port: number;
  /** How many concurrent connections write. @default {4} */
  clients?: number;
  /** The key prefix. @default {"w"} */
  prefix?: string;
  /** Sent with AUTH on each connection. */
  password?: string;
  /** The setting that tells the nodes apart: `"tls-port"` on TLS-only nodes. @default {"port"} */
  portParameter?: "port" | "tls-port";
  /** The wait between writes on one connection, in ms. @default {0} */
  pauseMs?: number;
  /** Closes each connection after this many writes and opens the next; 1 is a connection per write. */
  writesPerConnection?: number;
  /** Called on each acknowledged write. */
  onAck?: (ack: Ack) => void;
  /** Called when a connection fails or is closed. */
  onError?: (message: string) => void;
  /** Stops the writers. */
  signal: AbortSignal;
}

/** What the writers saw. */
export interface WriterReport {
  acks: Ack[];
  /** Connections that failed or were closed under a writer, by message. */
  errors: Map<string, number>;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Writes unique keys through the tunnel until `signal` aborts, reconnecting after every failure. */
export async function runWriters(
  options: WriterOptions,
): Promise<WriterReport> {
  const report: WriterReport = { acks: [], errors: new Map() };
  const recordError = (message: string) => {
    const short = message.replace(/\d+\.\d+\.\d+\.\d+:\d+/g, "ADDR").slice(
      0,
      160,
    );
    report.errors.set(short, (report.errors.get(short) ?? 0) + 1);
    options.onError?.(message);
  };
  const writer = async (client: number) => {
    let sequence = 0;
    while (!options.signal.aborted) {
      let connection: RedisConnection | undefined;
      try {
        connection = await RedisConnection.open({
          hostname: "127.0.0.1",
          port: options.port,
        }, {
          connectTimeoutMs: 2000,
          // Long on purpose: the tunnel, not the client, should cut a client off a demoted master.
          replyTimeoutMs: 15_000,
          ...(options.password ? { auth: { password: options.password } } : {}),
        });
        const parameter = options.portParameter ?? "port";
        const node = nodePort(await connection.call(["CONFIG", "GET", parameter]), parameter);
        let written = 0;
        while (!options.signal.aborted && written++ !== options.writesPerConnection) {
          const key = `${options.prefix ?? "w"}:${client}:${sequence++}`;
          const reply = await connection.call(["SET", key, String(sequence)]);
          if (reply !== "OK") {
            throw new Error(`SET answered ${describe(reply)}`);
          }
          const ack = { key, node, at: performance.now() };
          report.acks.push(ack);
          options.onAck?.(ack);
          if (options.pauseMs) await delay(options.pauseMs);
        }
      } catch (error) {
        if (!options.signal.aborted) recordError((error as Error).message);
        await delay(10);
      } finally {
        connection?.close();
      }
    }
  };
  await Promise.all(
    Array.from({ length: options.clients ?? 4 }, (_, i) => writer(i)),
  );
  return report;
}

function nodePort(reply: RespValue, parameter: string): number {
  if (Array.isArray(reply) && reply[0] === parameter) return Number(reply[1]);
  throw new Error(`CONFIG GET ${parameter} answered ${describe(reply)}`);
}

function describe(reply: RespValue): string {
  return reply instanceof RespErrorReply ? `-${reply.message}` : JSON.stringify(reply);
}

/** The keys among `keys` that `port` does not hold, checked with MGET in batches. */
export async function missingKeys(
  port: number,
  keys: readonly string[],
  password?: string,
): Promise<string[]> {
  using connection = await RedisConnection.open(
    { hostname: "127.0.0.1", port },
    {
      connectTimeoutMs: 2000,
      replyTimeoutMs: 10_000,
      ...(password ? { auth: { password } } : {}),
    },
  );
  const missing: string[] = [];
  for (let i = 0; i < keys.length; i += 500) {
    const batch = keys.slice(i, i + 500);
    const values = await connection.call(["MGET", ...batch]);
    if (!Array.isArray(values)) {
      throw new Error(`MGET answered ${describe(values)}`);
    }
    values.forEach((value, j) => {
      if (value === null) missing.push(batch[j]!);
    });
  }
  return missing;
}

/** The median of some numbers. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
