/**
 * The data path: bytes copied both ways between a client and its master until
 * either side ends, then both sides closed. One small function per direction,
 * so that each shows up by name in a stack dump. No per-chunk logging or
 * buffer allocation.
 *
 * Deno closes the whole connection when `readable` ends (denoland/deno#22258),
 * so there is no half-close here: when either direction ends, both close.
 *
 * @module
 */
import type { Address } from "./address.ts";

/** The buffer size for each direction of a tunnel. */
export const DEFAULT_BUFFER_SIZE = 16 * 1024;

/** Where a tunnel counts the bytes it copies. */
export interface TrafficCounters {
  bytesClientToMaster: number;
  bytesMasterToClient: number;
}

/** A client connection joined to a master connection. */
export class Tunnel {
  readonly client: Deno.TcpConn;
  readonly upstream: Deno.TcpConn;
  readonly master: Address;
  readonly #counters: TrafficCounters;
  #closed = false;

  constructor(
    client: Deno.TcpConn,
    upstream: Deno.TcpConn,
    master: Address,
    counters: TrafficCounters,
  ) {
    this.client = client;
    this.upstream = upstream;
    this.master = master;
    this.#counters = counters;
  }

  /** Whether {@linkcode Tunnel.close} has run. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Copies both ways until either side ends or fails; both sides are closed when it settles. */
  async run(bufferSize = DEFAULT_BUFFER_SIZE): Promise<void> {
    const close = () => this.close();
    await Promise.all([
      copyClientToMaster(this.client, this.upstream, new Uint8Array(bufferSize), this.#counters)
        .finally(close),
      copyMasterToClient(this.upstream, this.client, new Uint8Array(bufferSize), this.#counters)
        .finally(close),
    ]);
  }

  /** Closes both sides, once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.client);
    closeQuietly(this.upstream);
  }
}

// A failure in either loop (reset, broken pipe, or a close from the other
// direction or a master change) is how a tunnel ends, not an error.

/** Copies what the client sends to the master, until either side ends. */
async function copyClientToMaster(
  client: Deno.Conn,
  master: Deno.Conn,
  buffer: Uint8Array,
  counters: TrafficCounters,
): Promise<void> {
  try {
    for (let n = await client.read(buffer); n !== null; n = await client.read(buffer)) {
      await writeAll(master, buffer, n);
      counters.bytesClientToMaster += n;
    }
  } catch { /* the tunnel ends */ }
}

/** Copies what the master sends to the client, until either side ends. */
async function copyMasterToClient(
  master: Deno.Conn,
  client: Deno.Conn,
  buffer: Uint8Array,
  counters: TrafficCounters,
): Promise<void> {
  try {
    for (let n = await master.read(buffer); n !== null; n = await master.read(buffer)) {
      await writeAll(client, buffer, n);
      counters.bytesMasterToClient += n;
    }
  } catch { /* the tunnel ends */ }
}

/** Writes the first `n` bytes of `buffer`; a view is made only when they are not the whole buffer. */
async function writeAll(to: Deno.Conn, buffer: Uint8Array, n: number): Promise<void> {
  let written = await to.write(n === buffer.length ? buffer : buffer.subarray(0, n));
  while (written < n) written += await to.write(buffer.subarray(written, n));
}

/** Closes a connection that may already be closed. */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch (error) {
    if (!(error instanceof Deno.errors.BadResource)) throw error;
  }
}
