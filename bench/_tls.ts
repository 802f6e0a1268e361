/**
 * What the TLS section of the benchmark needs beside redis-benchmark: the
 * time a new connection takes to answer its first PING, over plain TCP or
 * TLS, and what a TLS node negotiates.
 *
 * ```ts
 * const plain = await timeConnects(6380, 200, { kind: "plain" });
 * const tls = await timeConnects(6379, 200, { kind: "tls", ca, cert, key });
 * ```
 *
 * TLS connections go through `node:tls`, the TLS client the tunnel uses for
 * its own dials, so that "direct TLS" pays the handshake in the same library
 * as "tunnel → TLS master" does.
 *
 * @module
 */
import { connect as connectTls } from "node:tls";

/** How {@linkcode timeConnects} connects. */
export type Dialer =
  | { kind: "plain" }
  | {
    kind: "tls";
    /** PEM CA certificates the server's certificate must chain to. */
    ca: string;
    /** PEM client certificate, for `tls-auth-clients yes`. */
    cert: string;
    /** PEM key of `cert`. */
    key: string;
    /**
     * The name the server's certificate must carry, and the SNI.
     * @default {the host connected to}
     */
    servername?: string;
  };

/** Options for {@linkcode timeConnects}. */
export interface TimeConnectsOptions {
  /**
   * How long one connection may take to answer, in milliseconds.
   * @default {5000}
   */
  timeoutMs?: number;
  /**
   * Aborts the measurement.
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * The address to connect to.
   * @default {"127.0.0.1"}
   */
  hostname?: string;
}

const PING = new TextEncoder().encode("PING\r\n");
const PONG = "+PONG\r\n";

/**
 * Opens `count` connections to 127.0.0.1:`port` (or `options.hostname`) one after the other; each
 * sends `PING` and is closed once `+PONG` is read. Returns the time from the
 * start of each connect to its `+PONG`, in milliseconds, in order: the close
 * is not timed.
 *
 * @throws {Error} when a connection fails, answers something else, or times out
 */
export async function timeConnects(
  port: number,
  count: number,
  dialer: Dialer,
  options: TimeConnectsOptions = {},
): Promise<number[]> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const hostname = options.hostname ?? "127.0.0.1";
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    options.signal?.throwIfAborted();
    const signal = options.signal
      ? AbortSignal.any([AbortSignal.timeout(timeoutMs), options.signal])
      : AbortSignal.timeout(timeoutMs);
    const started = performance.now();
    try {
      await (dialer.kind === "plain"
        ? pingPlain(hostname, port, signal)
        : pingTls(hostname, port, dialer, signal));
    } catch (error) {
      options.signal?.throwIfAborted();
      throw new Error(
        `Cannot time connection ${i + 1} of ${count} to port ${port} (${dialer.kind}): ${
          error instanceof Error ? error.message : String(error)
        }`,
        { cause: error },
      );
    }
    times.push(performance.now() - started);
  }
  return times;
}

/** Connect, PING, read PONG over plain TCP; the close happens after the answer. */
async function pingPlain(hostname: string, port: number, signal: AbortSignal): Promise<void> {
  const conn = await Deno.connect({ hostname, port, signal });
  const onAbort = () => conn.close();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    conn.setNoDelay(true);
    await conn.write(PING);
    const buffer = new Uint8Array(64);
    let reply = "";
    const decoder = new TextDecoder();
    while (!reply.includes("\r\n")) {
      const n = await conn.read(buffer);
      if (n === null) throw new Error(`the connection closed after "${reply}"`);
      reply += decoder.decode(buffer.subarray(0, n));
    }
    if (reply !== PONG) throw new Error(`PING answered ${JSON.stringify(reply)}`);
  } catch (error) {
    signal.throwIfAborted();
    throw error;
  } finally {
    signal.removeEventListener("abort", onAbort);
    try {
      conn.close();
    } catch { /* closed by the abort */ }
  }
}

/** Connect with `node:tls` (verifying the server), PING, read PONG; destroys the socket after. */
function pingTls(
  host: string,
  port: number,
  dialer: Extract<Dialer, { kind: "tls" }>,
  signal: AbortSignal,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connectTls({
      host,
      port,
      ...(dialer.servername === undefined ? {} : { servername: dialer.servername }),
      ca: dialer.ca,
      cert: dialer.cert,
      key: dialer.key,
    });
    let reply = "";
    const finish = (error?: unknown) => {
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      if (error === undefined) resolve();
      else reject(error);
    };
    const onAbort = () => finish(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("error", (error) => finish(error));
    socket.once("secureConnect", () => {
      socket.setNoDelay(true);
      socket.write(PING);
    });
    socket.on("data", (chunk: Uint8Array) => {
      reply += new TextDecoder().decode(chunk);
      if (!reply.includes("\r\n")) return;
      finish(reply === PONG ? undefined : new Error(`PING answered ${JSON.stringify(reply)}`));
    });
    socket.once("end", () => finish(new Error(`the connection closed after "${reply}"`)));
  });
}

/**
 * What a TLS server on 127.0.0.1:`port` negotiates with OpenSSL's client (as
 * redis-benchmark and HAProxy use): protocol, cipher suite, key exchange and
 * signature, as `openssl s_client -brief` reports them; `"unknown"` when
 * openssl prints none of it.
 */
export async function negotiated(
  port: number,
  files: { caFile: string; certFile: string; keyFile: string },
): Promise<string> {
  const output = await new Deno.Command("openssl", {
    args: [
      "s_client",
      "-connect",
      `127.0.0.1:${port}`,
      "-CAfile",
      files.caFile,
      "-cert",
      files.certFile,
      "-key",
      files.keyFile,
      "-brief",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(10_000),
  }).output();
  const text = new TextDecoder().decode(output.stderr) + new TextDecoder().decode(output.stdout);
  const field = (name: string) => new RegExp(`^${name}: (.+)$`, "m").exec(text)?.[1]?.trim();
  const parts = [
    field("Protocol version"),
    field("Ciphersuite"),
    field("Server Temp Key") && `key exchange ${field("Server Temp Key")}`,
    field("Signature type") && `${field("Signature type")} signatures`,
    field("Verification") && `verification ${field("Verification")}`,
  ].filter((part) => part !== undefined);
  return parts.length > 0 ? parts.join(", ") : "unknown";
}
