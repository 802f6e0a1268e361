/**
 * The Deno floor: the least a TCP proxy written in Deno can do, for the
 * benchmark's "Deno floor" column. It accepts on 127.0.0.1:PORT, dials one
 * fixed upstream per client, and copies both ways with `read()`/`write()`
 * into one buffer per direction, allocated per connection; when either
 * direction ends, both sockets close. No Sentinel, no caps, no timers, no
 * logging, no half-close, no keepalive. It does set `TCP_NODELAY` on both
 * sockets, as the tunnel and HAProxy do: Deno 2.9 leaves Nagle on for
 * accepted and dialled sockets.
 *
 * ```sh
 * deno run --quiet --allow-net bench/floor_proxy.ts 7100 127.0.0.1:6379
 * deno run --quiet --allow-net bench/floor_proxy.ts 7101 127.0.0.1:6379 1024
 * ```
 *
 * @module
 */

/**
 * The size of each direction's buffer, unless the command line gives one: the
 * tunnel's large buffer. 1 KiB (the tunnel's small one) makes 100 KB values
 * ten times slower; 64 KiB costs about 90 KiB of RSS per idle connection.
 */
const DEFAULT_BUFFER_BYTES = 64 * 1024;

/** Copies `from` to `to` until `from` ends or either fails. */
async function copy(from: Deno.Conn, to: Deno.Conn, bufferBytes: number): Promise<void> {
  const buffer = new Uint8Array(bufferBytes);
  try {
    for (let n = await from.read(buffer); n !== null; n = await from.read(buffer)) {
      let written = 0;
      while (written < n) written += await to.write(buffer.subarray(written, n));
    }
  } catch {
    // A reset or a close by the other direction ends the copy.
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** Where clients go, and how. */
interface Upstream {
  hostname: string;
  port: number;
  bufferBytes: number;
}

/** Joins one client to a new connection to the upstream. */
async function serve(client: Deno.TcpConn, upstream: Upstream): Promise<void> {
  let master: Deno.TcpConn;
  try {
    master = await Deno.connect({ hostname: upstream.hostname, port: upstream.port });
  } catch {
    closeQuietly(client);
    return;
  }
  client.setNoDelay(true);
  master.setNoDelay(true);
  const end = () => {
    closeQuietly(client);
    closeQuietly(master);
  };
  await Promise.all([
    copy(client, master, upstream.bufferBytes).finally(end),
    copy(master, client, upstream.bufferBytes).finally(end),
  ]);
}

/** Parses `PORT HOST:PORT [BUFFER_BYTES]` and proxies until killed. */
async function main(args: readonly string[]): Promise<void> {
  const [listenPort, address, size = String(DEFAULT_BUFFER_BYTES)] = args;
  const colon = address?.lastIndexOf(":") ?? -1;
  const port = Number(listenPort);
  const upstream: Upstream = {
    hostname: address?.slice(0, colon) ?? "",
    port: Number(address?.slice(colon + 1)),
    bufferBytes: Number(size),
  };
  if (
    !Number.isInteger(port) || colon < 1 || !Number.isInteger(upstream.port) ||
    !Number.isInteger(upstream.bufferBytes) || upstream.bufferBytes < 1
  ) {
    console.error("Usage: floor_proxy.ts LISTEN_PORT UPSTREAM_HOST:UPSTREAM_PORT [BUFFER_BYTES]");
    Deno.exit(2);
  }
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  for await (const client of listener) void serve(client, upstream);
}

if (import.meta.main) await main(Deno.args);
