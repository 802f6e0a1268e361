/**
 * The data path: bytes copied both ways between a client and its master until
 * either side ends, then both sides closed. One small function per direction,
 * so that each shows up by name in a stack dump. No logging and no allocation
 * per chunk.
 *
 * Buffers adapt: each direction reads into a small buffer of its own, takes a
 * large one from a shared pool when a read fills the small one, and gives it
 * back when reads get small again. An idle connection therefore holds two
 * small buffers, while a large value still moves in large reads.
 *
 * Deno closes the whole connection when `readable` ends (denoland/deno#22258),
 * so there is no half-close here: when either direction ends, both close.
 *
 * @module
 */
import type { Address } from "../shared/address.ts";
import { closeQuietly } from "../shared/io.ts";

/** Buffer sizes for each direction of a tunnel. */
export interface BufferSizes {
  /** The buffer each direction owns and idles with. @default {1024} */
  small: number;
  /** The pooled buffer a busy direction reads into. @default {65536} */
  large: number;
}

/** The default {@linkcode BufferSizes}. */
export const DEFAULT_BUFFER_SIZES: BufferSizes = Object.freeze({ small: 1024, large: 64 * 1024 });

/** Where a tunnel counts the bytes it copies. */
export interface TrafficCounters {
  bytesClientToMaster: number;
  bytesMasterToClient: number;
}

/** Free buffers of one size; a few are kept for reuse, the rest left to the GC. */
class BufferPool {
  readonly size: number;
  readonly #free: Uint8Array[] = [];
  readonly #keep: number;

  constructor(size: number, keep: number) {
    this.size = size;
    this.#keep = keep;
  }

  take(): Uint8Array {
    return this.#free.pop() ?? new Uint8Array(this.size);
  }

  give(buffer: Uint8Array): void {
    if (this.#free.length < this.#keep) this.#free.push(buffer);
  }
}

/**
 * The buffers of every tunnel of a server: a small one for each direction,
 * and large ones lent to busy directions. Reusing them spares the allocator
 * and the GC on every new client.
 */
export class TunnelBuffers {
  readonly small: BufferPool;
  readonly large: BufferPool;

  constructor(sizes: BufferSizes = DEFAULT_BUFFER_SIZES) {
    this.small = new BufferPool(sizes.small, 256);
    this.large = new BufferPool(Math.max(sizes.large, sizes.small), 64);
  }
}

/** A client connection joined to a master connection. */
export class Tunnel {
  readonly client: Deno.TcpConn;
  readonly upstream: Deno.TcpConn;
  readonly master: Address;
  readonly counters: TrafficCounters;
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
    this.counters = counters;
  }

  /** Whether {@linkcode Tunnel.close} has run. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Copies both ways until either side ends or fails, then closes both sides. */
  run(buffers: TunnelBuffers): Promise<unknown> {
    return Promise.all([copyClientToMaster(this, buffers), copyMasterToClient(this, buffers)]);
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
async function copyClientToMaster(tunnel: Tunnel, buffers: TunnelBuffers): Promise<void> {
  const { client, upstream, counters } = tunnel;
  const own = buffers.small.take();
  let buffer = own;
  try {
    for (let n = await client.read(buffer); n !== null; n = await client.read(buffer)) {
      await writeAll(upstream, buffer, n);
      counters.bytesClientToMaster += n;
      buffer = nextBuffer(buffer, n, own, buffers);
    }
  } catch {
    /* the tunnel ends */
  } finally {
    tunnel.close();
    if (buffer !== own) buffers.large.give(buffer);
    buffers.small.give(own);
  }
}

/** Copies what the master sends to the client, until either side ends. */
async function copyMasterToClient(tunnel: Tunnel, buffers: TunnelBuffers): Promise<void> {
  const { client, upstream, counters } = tunnel;
  const own = buffers.small.take();
  let buffer = own;
  try {
    for (let n = await upstream.read(buffer); n !== null; n = await upstream.read(buffer)) {
      await writeAll(client, buffer, n);
      counters.bytesMasterToClient += n;
      buffer = nextBuffer(buffer, n, own, buffers);
    }
  } catch {
    /* the tunnel ends */
  } finally {
    tunnel.close();
    if (buffer !== own) buffers.large.give(buffer);
    buffers.small.give(own);
  }
}

/** Grows to a large buffer when a read filled the small one; shrinks back when reads fit the small one. */
function nextBuffer(
  buffer: Uint8Array,
  n: number,
  own: Uint8Array,
  buffers: TunnelBuffers,
): Uint8Array {
  if (buffer === own) {
    return n === own.length && buffers.large.size > own.length ? buffers.large.take() : own;
  }
  if (n <= own.length) {
    buffers.large.give(buffer);
    return own;
  }
  return buffer;
}

/** Writes the first `n` bytes of `buffer`; a view is made only when they are not the whole buffer. */
async function writeAll(to: Deno.Conn, buffer: Uint8Array, n: number): Promise<void> {
  let written = await to.write(n === buffer.length ? buffer : buffer.subarray(0, n));
  while (written < n) written += await to.write(buffer.subarray(written, n));
}
