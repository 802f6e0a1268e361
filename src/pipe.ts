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

/** A client connection joined to a master connection. */
export class Tunnel {
  readonly client: Deno.TcpConn;
  readonly upstream: Deno.TcpConn;
  readonly master: Address;
  #closed = false;

  constructor(client: Deno.TcpConn, upstream: Deno.TcpConn, master: Address) {
    this.client = client;
    this.upstream = upstream;
    this.master = master;
  }

  /** Whether {@linkcode Tunnel.close} has run. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Copies both ways until either side ends or fails; both sides are closed when it settles. */
  async run(bufferSize = DEFAULT_BUFFER_SIZE): Promise<void> {
    const close = () => this.close();
    await Promise.all([
      copyClientToMaster(this.client, this.upstream, new Uint8Array(bufferSize))
        .finally(close),
      copyMasterToClient(this.upstream, this.client, new Uint8Array(bufferSize))
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

/** Copies what the client sends to the master. */
function copyClientToMaster(
  client: Deno.Conn,
  master: Deno.Conn,
  buffer: Uint8Array,
): Promise<void> {
  return copyUntilEnd(client, master, buffer);
}

/** Copies what the master sends to the client. */
function copyMasterToClient(
  master: Deno.Conn,
  client: Deno.Conn,
  buffer: Uint8Array,
): Promise<void> {
  return copyUntilEnd(master, client, buffer);
}

/** Resolves when `from` ends or either side fails; a failure here is how a tunnel ends, not an error. */
async function copyUntilEnd(
  from: Deno.Conn,
  to: Deno.Conn,
  buffer: Uint8Array,
): Promise<void> {
  try {
    for (;;) {
      const n = await from.read(buffer);
      if (n === null) return;
      let written = await to.write(
        n === buffer.length ? buffer : buffer.subarray(0, n),
      );
      while (written < n) {
        written += await to.write(buffer.subarray(written, n));
      }
    }
  } catch {
    // Reset, broken pipe, or closed by the other direction or by a master change.
  }
}

/** Closes a connection that may already be closed. */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch (error) {
    if (!(error instanceof Deno.errors.BadResource)) throw error;
  }
}
