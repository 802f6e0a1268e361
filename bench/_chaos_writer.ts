/**
 * One writer group of the chaos section (bench/_chaos.ts), run in its own
 * process on the application host, so that one client's stall cannot slow
 * another's. `loops` loops write unique keys (`prefix:loop:seq`) through one
 * client, each pausing `intervalMs` between writes, and record every
 * acknowledged write with the node that acknowledged it.
 *
 * Every write is one transaction, `MULTI`, `SET key key`, `CONFIG GET bind
 * port`, `EXEC`: the node answers the SET and names itself in the same atomic
 * reply, so the attribution holds whatever the client does underneath (a pool,
 * a reconnection, a queued or resent command). The nodes of the bed bind one
 * address each (tests/_network_deployment.ts), so `bind:port` is the address
 * Sentinel names.
 *
 * Clients (`driver`):
 * - `ioredis`: ioredis to a plain `host:port` (the tunnel's or HAProxy's port),
 *   with the settings the README gives for the tunnel (its defaults: reconnect,
 *   offline queue, resend of the commands cut in flight) and a command timeout
 *   above the tunnel's `clientWaitMs`;
 * - `ioredis-sentinel`: ioredis with `sentinels`, `role: "master"` and its
 *   `failoverDetector` (reconnect on `+switch-master`), same timeout;
 * - `node-redis-sentinel`: node-redis `createSentinel`, same timeout.
 *
 * Writes one JSON line per event to `out` (flushed every 200 ms and on SIGTERM):
 * `{"ack":"key","node":"ip:port","sent":N,"at":N}` or
 * `{"error":"message","at":N}` (`Date.now()` values). A failed write is not
 * retried by the loop: the next write has a new key.
 *
 * Usage: deno run -A bench/_chaos_writer.ts '<ChaosWriterOptions as JSON>'
 *
 * @module
 */
import { Redis } from "ioredis";
import { createSentinel } from "redis";

/** The writer's options, as its one JSON argument. */
export interface ChaosWriterOptions {
  driver: "ioredis" | "ioredis-sentinel" | "node-redis-sentinel";
  /** For `ioredis`: the port on the host's 127.0.0.1. */
  port?: number;
  /** For the Sentinel clients: `"ip:port"` of each Sentinel. */
  sentinels?: string[];
  /** The Sentinel master name. */
  masterName: string;
  /** Key prefix, unique to the group. */
  prefix: string;
  loops: number;
  intervalMs: number;
  /** Per-command timeout of every client. */
  commandTimeoutMs: number;
  /** The JSON-lines file to append to. */
  out: string;
}

/** One write: resolves with the acknowledging node's `"ip:port"`. */
type WriteOnce = (key: string) => Promise<string>;

const options = JSON.parse(Deno.args[0] ?? "{}") as ChaosWriterOptions;
const encoder = new TextEncoder();
const file = await Deno.open(options.out, { write: true, create: true, append: true });
let pending: string[] = [];
let stopping = false;

function record(line: Record<string, unknown>): void {
  pending.push(JSON.stringify(line));
}

async function flush(): Promise<void> {
  if (pending.length === 0) return;
  const text = pending.join("\n") + "\n";
  pending = [];
  await file.write(encoder.encode(text));
}

/** `CONFIG GET bind port` as a flat array or a map (RESP3), as `"ip:port"`. */
function nodeOf(reply: unknown): string {
  let pairs: Map<string, string>;
  if (Array.isArray(reply)) {
    pairs = new Map();
    for (let i = 0; i + 1 < reply.length; i += 2) pairs.set(String(reply[i]), String(reply[i + 1]));
  } else if (reply instanceof Map) {
    pairs = new Map([...reply].map(([k, v]) => [String(k), String(v)]));
  } else if (reply && typeof reply === "object") {
    pairs = new Map(Object.entries(reply).map(([k, v]) => [k, String(v)]));
  } else {
    throw new Error(`Cannot read the node from CONFIG GET's reply ${JSON.stringify(reply)}`);
  }
  const bind = pairs.get("bind")?.split(" ")[0];
  const port = pairs.get("port");
  if (!bind || !port) throw new Error(`CONFIG GET bind port answered ${JSON.stringify(reply)}`);
  return `${bind}:${port}`;
}

function sentinelAddresses(): { host: string; port: number }[] {
  return (options.sentinels ?? []).map((address) => {
    const colon = address.lastIndexOf(":");
    return { host: address.slice(0, colon), port: Number(address.slice(colon + 1)) };
  });
}

/** Builds the client of `driver` and its write; `close` ends it. */
async function connect(): Promise<{ write: WriteOnce; close: () => Promise<void> }> {
  const timeout = options.commandTimeoutMs;
  if (options.driver === "node-redis-sentinel") {
    const sentinel = createSentinel({
      name: options.masterName,
      sentinelRootNodes: sentinelAddresses(),
      commandOptions: { timeout },
    });
    sentinel.on(
      "error",
      (error: Error) => record({ error: `client: ${error.message}`, at: Date.now() }),
    );
    await sentinel.connect();
    return {
      write: async (key) => {
        const replies = await sentinel.multi()
          .set(key, key)
          .addCommand(false, ["CONFIG", "GET", "bind", "port"])
          .exec();
        if (String(replies[0]) !== "OK") {
          throw new Error(`SET answered ${JSON.stringify(replies[0])}`);
        }
        return nodeOf(replies[1]);
      },
      close: async () => {
        await sentinel.close().catch(() => {});
      },
    };
  }
  const redis = options.driver === "ioredis"
    ? new Redis({ host: "127.0.0.1", port: options.port!, commandTimeout: timeout })
    : new Redis({
      sentinels: sentinelAddresses(),
      name: options.masterName,
      role: "master",
      failoverDetector: true,
      commandTimeout: timeout,
    });
  redis.on(
    "error",
    (error: Error) => record({ error: `client: ${error.message}`, at: Date.now() }),
  );
  return {
    write: async (key) => {
      const replies = await redis.multi().set(key, key).config("GET", "bind", "port").exec();
      if (!replies) throw new Error("EXEC answered null (the transaction was discarded)");
      const [set, config] = replies;
      if (set?.[0]) throw set[0];
      if (config?.[0]) throw config[0];
      if (set?.[1] !== "OK") throw new Error(`SET answered ${JSON.stringify(set?.[1])}`);
      return nodeOf(config?.[1]);
    },
    close: async () => {
      redis.disconnect();
      await Promise.resolve();
    },
  };
}

const client = await connect();

async function loop(index: number): Promise<void> {
  for (let seq = 0; !stopping; seq++) {
    const key = `${options.prefix}:${index}:${seq}`;
    const sent = Date.now();
    try {
      const node = await client.write(key);
      if (!stopping) record({ ack: key, node, sent, at: Date.now() });
    } catch (error) {
      record({ error: error instanceof Error ? error.message : String(error), at: Date.now() });
      // A client that fails at once must not spin.
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
  }
}

const flusher = setInterval(() => flush().catch(() => {}), 200);
const stopped = Promise.withResolvers<void>();
Deno.addSignalListener("SIGTERM", () => stopped.resolve());
record({ started: options.driver, at: Date.now() });
const loops = Array.from({ length: options.loops }, (_, i) => loop(i));
await stopped.promise;
// Writes in flight now are not reported: an ack counts only when recorded before the stop.
stopping = true;
clearInterval(flusher);
record({ end: true, at: Date.now() });
await flush();
file.close();
await Promise.race([
  Promise.allSettled(loops),
  new Promise((resolve) => setTimeout(resolve, 500)),
]);
await client.close();
Deno.exit(0);
