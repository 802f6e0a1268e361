/**
 * Timing probe of the round-trip section, run inside the application
 * namespace (`ip netns exec <ns> deno run --allow-net --allow-read
 * bench/_rtt_probe.ts '<json>'`), where the benchmark process itself cannot
 * connect. Prints one JSON line: `{"times": [ms, ...]}`, or `{"error": "..."}`
 * and exit code 1.
 *
 * The JSON argument is a {@linkcode ProbeRequest}:
 *
 * - `connect`: `count` TCP connects one after the other, each timed to the
 *   end of the handshake (one round trip), then closed;
 * - `ping`: one connection, then `count` PINGs one after the other, each timed
 *   to its `+PONG` (a round trip plus Redis's reply);
 * - `connect-ping`: `count` new connections, each timed from the start of its
 *   connect to the `+PONG` of its first PING, over plain TCP or TLS (see
 *   bench/_tls.ts).
 *
 * @module
 */
import { type Dialer, timeConnects } from "./_tls.ts";

/** What to measure. */
export interface ProbeRequest {
  mode: "connect" | "ping" | "connect-ping";
  hostname: string;
  port: number;
  count: number;
  /** For `connect-ping` over TLS: PEM files, and the name the certificate must carry. */
  tls?: { caFile: string; certFile: string; keyFile: string; servername: string };
}

const PING = new TextEncoder().encode("PING\r\n");
const TIMEOUT_MS = 5000;

async function connectTimes(request: ProbeRequest): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < request.count; i++) {
    const started = performance.now();
    const conn = await Deno.connect({
      hostname: request.hostname,
      port: request.port,
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    times.push(performance.now() - started);
    conn.close();
  }
  return times;
}

async function pingTimes(request: ProbeRequest): Promise<number[]> {
  const conn = await Deno.connect({
    hostname: request.hostname,
    port: request.port,
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  try {
    conn.setNoDelay(true);
    const buffer = new Uint8Array(64);
    const times: number[] = [];
    for (let i = 0; i < request.count; i++) {
      const started = performance.now();
      await conn.write(PING);
      let reply = "";
      while (!reply.includes("\r\n")) {
        const n = await conn.read(buffer);
        if (n === null) throw new Error(`the connection closed after "${reply}"`);
        reply += new TextDecoder().decode(buffer.subarray(0, n));
      }
      if (reply !== "+PONG\r\n") throw new Error(`PING answered ${JSON.stringify(reply)}`);
      times.push(performance.now() - started);
    }
    return times;
  } finally {
    conn.close();
  }
}

async function connectPingTimes(request: ProbeRequest): Promise<number[]> {
  let dialer: Dialer = { kind: "plain" };
  if (request.tls) {
    const [ca, cert, key] = await Promise.all(
      [request.tls.caFile, request.tls.certFile, request.tls.keyFile].map((path) =>
        Deno.readTextFile(path)
      ),
    );
    dialer = { kind: "tls", ca: ca!, cert: cert!, key: key!, servername: request.tls.servername };
  }
  return await timeConnects(request.port, request.count, dialer, {
    hostname: request.hostname,
    timeoutMs: TIMEOUT_MS,
  });
}

async function main(): Promise<number> {
  try {
    const request = JSON.parse(Deno.args[0] ?? "") as ProbeRequest;
    const times = request.mode === "connect"
      ? await connectTimes(request)
      : request.mode === "ping"
      ? await pingTimes(request)
      : await connectPingTimes(request);
    console.log(JSON.stringify({ times }));
    return 0;
  } catch (error) {
    console.log(JSON.stringify({ error: error instanceof Error ? error.message : String(error) }));
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main());
