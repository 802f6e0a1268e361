/**
 * Idle connections through a proxy: how much memory each one costs the proxy
 * process, and whether every one of them still gets answers.
 *
 * @module
 */
import { closeQuietly } from "../src/shared/io.ts";
import { sleep } from "./_wait.ts";

/** What {@linkcode measureIdleConnections} found. */
export interface IdleResult {
  /** Connections asked for. */
  requested: number;
  /** Connections that opened and answered a first PING. */
  opened: number;
  /** The proxy's resident memory before opening any, in KiB. */
  rssBeforeKb: number;
  /** The proxy's resident memory with all of them open and idle, in KiB. */
  rssAfterKb: number;
  /** Connections that answered a second PING once all were open. */
  answered: number;
  /** Failures by message, with how many times each happened. */
  errors: Map<string, number>;
}

/** Options for {@linkcode measureIdleConnections}. */
export interface IdleOptions {
  /**
   * How many connections are opened or pinged at once.
   * @default {64}
   */
  concurrency?: number;
  /**
   * How long one PING may wait for its PONG, in milliseconds.
   * @default {10000}
   */
  replyTimeoutMs?: number;
  /**
   * How long to wait with every connection open before reading the memory,
   * in milliseconds.
   * @default {2000}
   */
  settleMs?: number;
  /**
   * Aborts the measurement; every connection is closed.
   * @default {undefined}
   */
  signal?: AbortSignal;
}

const PING = new TextEncoder().encode("PING\r\n");
const PONG = "+PONG\r\n";

/**
 * The resident memory of process `pid` in KiB (`VmRSS` in `/proc/PID/status`).
 *
 * @throws {Error} when the process is gone or the field is missing
 */
export async function readRssKb(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!match?.[1]) throw new Error(`No VmRSS in /proc/${pid}/status`);
  return Number(match[1]);
}

/**
 * Opens `count` connections to 127.0.0.1:`port`, each sending one PING so that
 * the proxy has dialled its upstream, reads the memory of the proxy process
 * `pid` before and after, then sends PING on every connection again and counts
 * the answers. Every connection is closed before it returns.
 */
export async function measureIdleConnections(
  port: number,
  pid: number,
  count: number,
  options: IdleOptions = {},
): Promise<IdleResult> {
  const { concurrency = 64, replyTimeoutMs = 10_000, settleMs = 2000, signal } = options;
  const open = new Set<Deno.TcpConn>();
  const errors = new Map<string, number>();
  const fail = (conn: Deno.TcpConn | undefined, error: unknown) => {
    if (conn) {
      open.delete(conn);
      closeQuietly(conn);
    }
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    errors.set(message, (errors.get(message) ?? 0) + 1);
  };
  try {
    const rssBeforeKb = await readRssKb(pid);
    await forEachLimited(count, concurrency, signal, async () => {
      let conn: Deno.TcpConn | undefined;
      try {
        conn = await Deno.connect({ hostname: "127.0.0.1", port });
        open.add(conn);
        await ping(conn, replyTimeoutMs);
      } catch (error) {
        fail(conn, error);
      }
    });
    const opened = open.size;
    await sleep(settleMs, signal);
    const rssAfterKb = await readRssKb(pid);
    const conns = [...open];
    let answered = 0;
    await forEachLimited(conns.length, concurrency * 4, signal, async (i) => {
      const conn = conns[i]!;
      try {
        await ping(conn, replyTimeoutMs);
        answered++;
      } catch (error) {
        fail(conn, error);
      }
    });
    return { requested: count, opened, rssBeforeKb, rssAfterKb, answered, errors };
  } finally {
    for (const conn of open) closeQuietly(conn);
  }
}

/** Sends PING and reads `+PONG`; on a timeout the connection is closed, which ends the read. */
async function ping(conn: Deno.TcpConn, timeoutMs: number): Promise<void> {
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    closeQuietly(conn);
  }, timeoutMs);
  try {
    await conn.write(PING);
    const buffer = new Uint8Array(64);
    let length = 0;
    while (length < PONG.length) {
      const n = await conn.read(buffer.subarray(length));
      if (n === null) throw new Error("closed by the proxy before answering PING");
      length += n;
    }
    const reply = new TextDecoder().decode(buffer.subarray(0, length));
    if (reply !== PONG) throw new Error(`PING answered ${JSON.stringify(reply)}`);
  } catch (error) {
    if (timedOut) throw new Error(`no answer to PING within ${timeoutMs} ms`);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `task(0)` … `task(count - 1)`, at most `limit` at a time, stopping early when `signal` aborts. */
async function forEachLimited(
  count: number,
  limit: number,
  signal: AbortSignal | undefined,
  task: (index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      signal?.throwIfAborted();
      await task(next++);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
}
