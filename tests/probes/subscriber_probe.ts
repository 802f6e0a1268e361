/**
 * Run inside a test bed host (tests/_network.ts): idle clients, to see when a
 * silent link ends their connections. Each of `connections` loops connects to
 * `host:port` (the tunnel's local port), asks the node it reached once with
 * `CONFIG GET bind port`, then SUBSCRIBEs to a channel and only reads: the
 * connection carries no byte either way until it ends. Then it reconnects
 * after `retryMs`.
 *
 * Idle is the point: TCP keepalive probes only a connection with nothing
 * unacknowledged in flight, so a client waiting for a reply to a command it
 * sent is not one of these (see the writer probe).
 *
 * Prints one JSON line on stdout per event (`at` is `Date.now()`):
 *
 * - `{"type":"connect","conn":0,"node":"10.1.2.2:6379","at":N}`, once subscribed
 * - `{"type":"closed","conn":0,"node":"10.1.2.2:6379","error"?:"..","at":N}`
 *   when a subscribed connection ends (end of stream, or the error)
 * - `{"type":"error","conn":0,"phase":"connect"|"identify"|"subscribe","error":"..","at":N}`
 *   (a RESP error reply is given as its text, such as `ERR sentinel-tunnel: ...`)
 * - `{"type":"end","at":N}` on SIGTERM, after which it exits at once.
 *
 * Usage: deno run -A subscriber_probe.ts '<SubscriberProbeOptions as JSON>'
 */
import { message, print, sleep } from "./_probe.ts";

/** The probe's options, as a JSON argument. */
interface SubscriberProbeOptions {
  port: number;
  /** @default {"127.0.0.1"} */
  host?: string;
  /** @default {1} */
  connections?: number;
  /** @default {1000} */
  connectTimeoutMs?: number;
  /** For `CONFIG GET` and `SUBSCRIBE` only; the subscription then waits forever. @default {1000} */
  replyTimeoutMs?: number;
  /** Pause before reconnecting. @default {100} */
  retryMs?: number;
  /** @default {"idle"} */
  channel?: string;
}

const options = JSON.parse(Deno.args[0] ?? "{}") as SubscriberProbeOptions;
const {
  port,
  host = "127.0.0.1",
  connections = 1,
  connectTimeoutMs = 1000,
  replyTimeoutMs = 1000,
  retryMs = 100,
  channel = "idle",
} = options;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function command(args: string[]): Uint8Array {
  let text = `*${args.length}\r\n`;
  for (const arg of args) text += `$${encoder.encode(arg).length}\r\n${arg}\r\n`;
  return encoder.encode(text);
}

/**
 * Reads until `done(text)` says the reply is whole, under a deadline; throws
 * with the text of a RESP error reply, or when the connection ends first.
 */
async function reply(conn: Deno.TcpConn, done: (text: string) => boolean): Promise<string> {
  const chunk = new Uint8Array(4096);
  let text = "";
  let late = false;
  const timer = setTimeout(() => {
    late = true;
    conn.close();
  }, replyTimeoutMs);
  try {
    while (!done(text)) {
      if (text.startsWith("-") && text.includes("\r\n")) break;
      const n = await conn.read(chunk).catch(() => null);
      if (late) throw new Error(`no reply within ${replyTimeoutMs} ms`);
      if (n === null) throw new Error(text === "" ? "connection closed" : `closed after "${text}"`);
      text += decoder.decode(chunk.subarray(0, n));
    }
  } finally {
    clearTimeout(timer);
  }
  if (text.startsWith("-")) throw new Error(text.slice(1, text.indexOf("\r\n")));
  return text;
}

/** `ip:port` from the RESP text of `CONFIG GET bind port` (a flat array of bulk strings). */
function nodeOf(text: string): string {
  const parts = text.split("\r\n").filter((line) => line !== "" && !/^[*$]/.test(line));
  const config = new Map<string, string>();
  for (let i = 0; i + 1 < parts.length; i += 2) config.set(parts[i]!, parts[i + 1]!);
  return `${(config.get("bind") ?? "?").split(" ")[0]}:${config.get("port") ?? "?"}`;
}

async function subscriber(index: number): Promise<never> {
  for (;;) {
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({
        hostname: host,
        port,
        signal: AbortSignal.timeout(connectTimeoutMs),
      });
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
    let phase = "identify";
    try {
      await conn.write(command(["CONFIG", "GET", "bind", "port"]));
      const node = nodeOf(await reply(conn, (t) => (t.match(/\r\n/g) ?? []).length >= 9));
      phase = "subscribe";
      await conn.write(command(["SUBSCRIBE", channel]));
      await reply(conn, (t) => (t.match(/\r\n/g) ?? []).length >= 6);
      print({ type: "connect", conn: index, node, at: Date.now() });
      phase = "subscribed";
      const chunk = new Uint8Array(4096);
      let error: string | undefined;
      try {
        while (await conn.read(chunk) !== null) { /* messages: none are published */ }
      } catch (caught) {
        error = message(caught);
      }
      print({
        type: "closed",
        conn: index,
        node,
        ...(error === undefined ? {} : { error }),
        at: Date.now(),
      });
    } catch (error) {
      print({ type: "error", conn: index, phase, error: message(error), at: Date.now() });
    }
    try {
      conn.close();
    } catch { /* already closed */ }
    await sleep(retryMs);
  }
}

Deno.addSignalListener("SIGTERM", () => {
  print({ type: "end", at: Date.now() });
  Deno.exit(0);
});
for (let i = 0; i < connections; i++) subscriber(i);
