/**
 * Run inside a test bed host (tests/_network.ts): connects to a Redis-speaking
 * server and tells how the attempt ended, to show whether a link is up, refused
 * or silent. Prints one JSON line per event on stdout:
 *
 * - `{"event":"connect","result":"ok"|"timeout"|"refused"|"error","ms":N,"error"?:"..."}`
 * - then, for each line read on stdin, one `PING` on the same connection:
 *   `{"event":"ping","result":"ok"|"timeout"|"closed"|"error","reply"?:"+PONG","ms":N}`
 *
 * Exits at the end of stdin (or at once when the connect failed). A connect
 * that times out is a silent link: no RST, no ICMP.
 *
 * Usage: deno run -A tcp_probe.ts <host> <port> <timeoutMs>
 */
const [hostname = "", portText = "", timeoutText = "1000"] = Deno.args;
const port = Number(portText);
const timeoutMs = Number(timeoutText);

function print(record: Record<string, unknown>): void {
  console.log(JSON.stringify(record));
}

function classify(error: unknown): { result: string; error: string } {
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  if (error instanceof DOMException && error.name === "TimeoutError") {
    return { result: "timeout", error: message };
  }
  if (error instanceof Deno.errors.ConnectionRefused) return { result: "refused", error: message };
  return { result: "error", error: message };
}

let start = performance.now();
let conn: Deno.TcpConn;
try {
  conn = await Deno.connect({ hostname, port, signal: AbortSignal.timeout(timeoutMs) });
  print({ event: "connect", result: "ok", ms: Math.round(performance.now() - start) });
} catch (error) {
  print({ event: "connect", ...classify(error), ms: Math.round(performance.now() - start) });
  Deno.exit(0);
}

const buffer = new Uint8Array(256);
for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  for (const _ of chunk.matchAll(/\n/g)) await ping();
}
Deno.exit(0);

async function ping(): Promise<void> {
  start = performance.now();
  try {
    await conn.write(new TextEncoder().encode("PING\r\n"));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      conn.read(buffer),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new DOMException(`No reply within ${timeoutMs} ms`, "TimeoutError")),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    const ms = Math.round(performance.now() - start);
    if (n === null) print({ event: "ping", result: "closed", ms });
    else {
      const reply = new TextDecoder().decode(buffer.subarray(0, n)).trim();
      print({ event: "ping", result: "ok", reply, ms });
    }
  } catch (error) {
    print({ event: "ping", ...classify(error), ms: Math.round(performance.now() - start) });
    // A read may still be pending on a silent link: leave rather than wait for TCP to give up.
    Deno.exit(0);
  }
}
