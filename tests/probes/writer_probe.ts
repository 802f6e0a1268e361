/**
 * Run inside a test bed host (tests/_network.ts): writers that record which
 * Redis node acknowledged each write. Each of `connections` loops connects to
 * `host:port` (the tunnel's local port), asks the node it reached once with
 * `CONFIG GET bind port` (the tunnel joins a connection to one node for its
 * whole life, so that is the node of every reply on it), then SETs unique keys
 * until the connection fails, and then reconnects after `retryMs`.
 *
 * Prints one JSON line on stdout per event (`at` and `sent` are `Date.now()`):
 *
 * - `{"type":"connect","conn":0,"node":"10.1.2.2:6379","at":N}`
 * - `{"type":"write","conn":0,"key":"w:0:17","node":"10.1.2.2:6379","sent":N,"at":N}`,
 *   printed once the node answered `+OK`
 * - `{"type":"error","conn":0,"phase":"connect"|"identify"|"write","node"?:..,"key"?:..,"error":"..","at":N}`
 *   (a write that timed out may or may not have been applied)
 * - `{"type":"end","at":N}` on SIGTERM, after which it exits at once; writes in
 *   flight then are not reported.
 *
 * Usage: deno run -A writer_probe.ts '<WriterProbeOptions as JSON>'
 */
import { message, print, sleep } from "./_probe.ts";

/** The probe's options, as a JSON argument. */
interface WriterProbeOptions {
  port: number;
  /** @default {"127.0.0.1"} */
  host?: string;
  /** @default {1} */
  connections?: number;
  /** Pause between two writes on a connection. @default {10} */
  intervalMs?: number;
  /** @default {1000} */
  connectTimeoutMs?: number;
  /** @default {1000} */
  replyTimeoutMs?: number;
  /** Pause before reconnecting after a failure. @default {100} */
  retryMs?: number;
  /** Key prefix. @default {"w"} */
  prefix?: string;
}

type Resp = string | number | null | RespError | Resp[];

class RespError {
  constructor(readonly message: string) {}
}

const options = JSON.parse(Deno.args[0] ?? "{}") as WriterProbeOptions;
const {
  port,
  host = "127.0.0.1",
  connections = 1,
  intervalMs = 10,
  connectTimeoutMs = 1000,
  replyTimeoutMs = 1000,
  retryMs = 100,
  prefix = "w",
} = options;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Parses one RESP2 value at `offset`; undefined when more bytes are needed. */
function parse(bytes: Uint8Array, offset: number): { value: Resp; next: number } | undefined {
  const end = bytes.indexOf(13, offset);
  if (end === -1 || end + 1 >= bytes.length) return undefined;
  const line = decoder.decode(bytes.subarray(offset + 1, end));
  const next = end + 2;
  switch (bytes[offset]) {
    case 43: // +
      return { value: line, next };
    case 45: // -
      return { value: new RespError(line), next };
    case 58: // :
      return { value: Number(line), next };
    case 36: { // $
      const length = Number(line);
      if (length < 0) return { value: null, next };
      if (bytes.length < next + length + 2) return undefined;
      return {
        value: decoder.decode(bytes.subarray(next, next + length)),
        next: next + length + 2,
      };
    }
    case 42: { // *
      const count = Number(line);
      if (count < 0) return { value: null, next };
      const items: Resp[] = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parse(bytes, at);
        if (item === undefined) return undefined;
        items.push(item.value);
        at = item.next;
      }
      return { value: items, next: at };
    }
    default:
      throw new SyntaxError(`Cannot parse RESP: unexpected "${line.slice(0, 40)}"`);
  }
}

/** One connection with a reply deadline on every call. */
class Client {
  #conn: Deno.TcpConn;
  #pending = new Uint8Array(0);
  #chunk = new Uint8Array(16 * 1024);

  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  async call(args: string[]): Promise<Resp> {
    let command = `*${args.length}\r\n`;
    for (const arg of args) command += `$${encoder.encode(arg).length}\r\n${arg}\r\n`;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no reply within ${replyTimeoutMs} ms`)),
        replyTimeoutMs,
      );
    });
    const reply = this.#call(encoder.encode(command));
    // After a timeout the call fails later, when the connection is closed: that is no news.
    reply.catch(() => {});
    try {
      return await Promise.race([reply, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #call(command: Uint8Array): Promise<Resp> {
    await this.#conn.write(command);
    for (;;) {
      const parsed = parse(this.#pending, 0);
      if (parsed !== undefined) {
        this.#pending = this.#pending.slice(parsed.next);
        return parsed.value;
      }
      const n = await this.#conn.read(this.#chunk);
      if (n === null) throw new Error("connection closed");
      const joined = new Uint8Array(this.#pending.length + n);
      joined.set(this.#pending);
      joined.set(this.#chunk.subarray(0, n), this.#pending.length);
      this.#pending = joined;
    }
  }

  close(): void {
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }
}

/** `CONFIG GET bind port` to `ip:port`, the node's address as Sentinel names it. */
function nodeOf(reply: Resp): string {
  if (reply instanceof RespError) throw new Error(reply.message);
  if (!Array.isArray(reply)) {
    throw new Error(`unexpected CONFIG GET reply ${JSON.stringify(reply)}`);
  }
  const config = new Map<string, string>();
  for (let i = 0; i + 1 < reply.length; i += 2) config.set(String(reply[i]), String(reply[i + 1]));
  const bind = (config.get("bind") ?? "").split(" ")[0] || "?";
  return `${bind}:${config.get("port") ?? "?"}`;
}

async function writer(index: number): Promise<never> {
  let seq = 0;
  for (;;) {
    let client: Client;
    try {
      client = new Client(
        await Deno.connect({ hostname: host, port, signal: AbortSignal.timeout(connectTimeoutMs) }),
      );
    } catch (error) {
      print({
        type: "error",
        conn: index,
        phase: "connect",
        error: message(error),
        at: Date.now(),
      });
      await sleep(retryMs);
      continue;
    }
    let node: string | undefined;
    let key: string | undefined;
    try {
      node = nodeOf(await client.call(["CONFIG", "GET", "bind", "port"]));
      print({ type: "connect", conn: index, node, at: Date.now() });
      for (;;) {
        key = `${prefix}:${index}:${seq++}`;
        const sent = Date.now();
        const reply = await client.call(["SET", key, String(sent)]);
        if (reply !== "OK") {
          throw new Error(reply instanceof RespError ? reply.message : JSON.stringify(reply));
        }
        print({ type: "write", conn: index, key, node, sent, at: Date.now() });
        key = undefined;
        await sleep(intervalMs);
      }
    } catch (error) {
      print({
        type: "error",
        conn: index,
        phase: node === undefined ? "identify" : "write",
        ...(node === undefined ? {} : { node }),
        ...(key === undefined ? {} : { key }),
        error: message(error),
        at: Date.now(),
      });
      client.close();
      await sleep(retryMs);
    }
  }
}

Deno.addSignalListener("SIGTERM", () => {
  print({ type: "end", at: Date.now() });
  Deno.exit(0);
});
for (let i = 0; i < connections; i++) writer(i);
