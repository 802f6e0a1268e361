/**
 * Run inside a network namespace whose /etc/hosts names "redis.test" as ::1
 * first and 127.0.0.1 second (`ip netns exec` mounts /etc/netns/<ns>/hosts):
 * a server listens on 127.0.0.1 only, and connectTo() must reach it by name,
 * over TCP and over TLS, through the system resolver. Prints one JSON line.
 *
 * Usage: deno run -A dual_stack_probe.ts <caFile> <certFile> <keyFile>
 */
import { lookup } from "node:dns/promises";
import { connectTo } from "../../src/shared/connect.ts";

const [caFile, certFile, keyFile] = Deno.args as [string, string, string];
const plain = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const secure = Deno.listenTls({
  hostname: "127.0.0.1",
  port: 0,
  cert: Deno.readTextFileSync(certFile),
  key: Deno.readTextFileSync(keyFile),
});
const serve = async (listener: Deno.Listener) => {
  for await (const conn of listener) {
    conn.write(new TextEncoder().encode("+PONG\r\n")).catch(() => {}).finally(() => conn.close());
  }
};
const serving = [serve(plain), serve(secure)];
const order = (await lookup("redis.test", { all: true, verbatim: true })).map((a) => a.address);
const result: Record<string, unknown> = { order };
async function attempt(name: string, port: number, tls: boolean) {
  try {
    const stream = await connectTo({ hostname: "redis.test", port }, {
      timeoutMs: 3000,
      ...(tls ? { tls: { ca: Deno.readTextFileSync(caFile), caFile, verify: true } } : {}),
    });
    const buffer = new Uint8Array(16);
    const n = await stream.read(buffer);
    result[name] = n === null ? "EOF" : new TextDecoder().decode(buffer.subarray(0, n)).trim();
    stream.close();
  } catch (error) {
    result[name] = `error: ${(error as Error).message}`;
  }
}
await attempt("tcp", plain.addr.port, false);
await attempt("tls", secure.addr.port, true);
plain.close();
secure.close();
await Promise.allSettled(serving);
console.log(JSON.stringify(result));
