/**
 * The data path: bytes copied both ways between a client and its master. A
 * side that half-closes (sends FIN) has its half-close forwarded to the other
 * side with `closeWrite()`, as `cat commands | nc` and bulk loads need: the
 * tunnel ends when both directions have ended, or at once when either fails.
 * One small function per direction, so that each shows up by name in a stack
 * dump. No logging and no allocation per chunk.
 *
 * Buffers adapt: each direction reads into a small buffer of its own, takes a
 * large one from a shared pool when a read fills the small one, and gives it
 * back when reads get small again. An idle connection therefore holds two
 * small buffers, while a large value still moves in large reads.
 *
 * The loops use `read()`/`write()`, not streams: Deno closes the whole
 * connection when `readable` ends (denoland/deno#22258), which would lose the
 * half-close.
 *
 * @module
 */
import type { Address } from "../shared/address.ts";
import { closeQuietly } from "../shared/io.ts";
import type { ByteStream } from "../shared/connect.ts";

/** Buffer sizes for each direction of a tunnel. */
export interface BufferSizes {
  /** The buffer each direction owns and idles with. @default {1024} */
  small: number;
  /** The pooled buffer a busy direction reads into. @default {65536} */
  large: number;
}

/** The default {@linkcode BufferSizes}. */
export const DEFAULT_BUFFER_SIZES: BufferSizes = Object.freeze({ small: 1024, large: 64 * 1024 });

/** Where a tunnel counts the bytes it copies, and an idle close. */
export interface TrafficCounters {
  bytesClientToMaster: number;
  bytesMasterToClient: number;
  connectionsIdleClosed: number;
}

/** Options for {@linkcode Tunnel.run}. */
export interface TunnelRunOptions {
  /** Closes the tunnel once it has carried no byte either way for this long; 0 is off. @default {0} */
  idleMs?: number;
  /**
   * A read of the client already under way (or done) into `bytes`, made while
   * the client waited for a master: its bytes go to the master first.
   */
  firstRead?: { read: Promise<number | null>; bytes: Uint8Array };
  /**
   * A read of the master already under way into `bytes`, a small buffer of the
   * tunnels' pool (a ready connection's): it is the first read of the master,
   * and `bytes` becomes that direction's own buffer.
   */
  masterRead?: { read: Promise<number | null>; bytes: Uint8Array };
}

/**
 * After the master's end has reached the client, how long the client may go on
 * before the tunnel closes. Redis never half-closes: it closes (its `timeout`,
 * `CLIENT KILL`, a restart), and a pooled client that does not notice until its
 * next use must not hold the tunnel and its slot meanwhile.
 */
export const MASTER_END_GRACE_MS = 1000;

/** Idle checks per `idleMs`: an idle tunnel closes between `idleMs` and 1.25 times it. */
const IDLE_CHECKS = 4;

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
  readonly client: ByteStream;
  readonly upstream: ByteStream;
  readonly master: Address;
  readonly counters: TrafficCounters;
  /** Set by the copy loops on every read, cleared by the idle check: one store per chunk. */
  moved = false;
  #closed = false;
  /** Directions that ended with a forwarded half-close. */
  #halfClosed = 0;
  #idleTimer: ReturnType<typeof setInterval> | undefined;
  #graceTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    client: ByteStream,
    upstream: ByteStream,
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

  /**
   * Copies both ways, forwarding a half-close, until both directions have
   * ended or either fails (or the tunnel is closed, or idle too long); then
   * both sides are closed.
   */
  run(buffers: TunnelBuffers, options: TunnelRunOptions = {}): Promise<unknown> {
    const idleMs = options.idleMs ?? 0;
    if (idleMs > 0) this.#closeWhenIdle(idleMs);
    return Promise.all([
      copyClientToMaster(this, buffers, options.firstRead),
      copyMasterToClient(this, buffers, options.masterRead),
    ]);
  }

  /**
   * One direction has ended: `halfClosed` when its sender half-closed and that
   * was forwarded; otherwise it failed, which ends the tunnel.
   */
  directionEnded(halfClosed: boolean, fromMaster: boolean): void {
    if (!halfClosed || ++this.#halfClosed === 2) return this.close();
    if (fromMaster) this.#graceTimer = setTimeout(() => this.close(), MASTER_END_GRACE_MS);
  }

  /** Closes both sides, once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#idleTimer);
    clearTimeout(this.#graceTimer);
    closeQuietly(this.client);
    closeQuietly(this.upstream);
  }

  /** A timer per tunnel, not a check per chunk: the copy loops only set `moved`. */
  #closeWhenIdle(idleMs: number): void {
    let quietChecks = 0;
    this.#idleTimer = setInterval(() => {
      if (this.moved) {
        this.moved = false;
        quietChecks = 0;
      } else if (++quietChecks === IDLE_CHECKS) {
        this.counters.connectionsIdleClosed++;
        this.close();
      }
    }, Math.max(1, Math.ceil(idleMs / IDLE_CHECKS)));
  }
}

// A failure in either loop (reset, broken pipe, or a close from the other
// direction or a master change) is how a tunnel ends, not an error.

/** Copies what the client sends to the master, then forwards the client's half-close. */
async function copyClientToMaster(
  tunnel: Tunnel,
  buffers: TunnelBuffers,
  firstRead: TunnelRunOptions["firstRead"],
): Promise<void> {
  const { client, upstream, counters } = tunnel;
  const own = buffers.small.take();
  let buffer = own;
  let halfClosed = false;
  try {
    let n = firstRead ? await firstRead.read : await client.read(buffer);
    if (firstRead && n !== null) {
      tunnel.moved = true;
      await writeAll(upstream, firstRead.bytes, n);
      counters.bytesClientToMaster += n;
      n = await client.read(buffer);
    }
    for (; n !== null; n = await client.read(buffer)) {
      tunnel.moved = true;
      await writeAll(upstream, buffer, n);
      counters.bytesClientToMaster += n;
      buffer = nextBuffer(buffer, n, own, buffers);
    }
    await upstream.closeWrite();
    halfClosed = true;
  } catch {
    /* the tunnel ends */
  } finally {
    tunnel.directionEnded(halfClosed, false);
    if (buffer !== own) buffers.large.give(buffer);
    buffers.small.give(own);
  }
}

/** Copies what the master sends to the client, then forwards the master's half-close. */
async function copyMasterToClient(
  tunnel: Tunnel,
  buffers: TunnelBuffers,
  masterRead: TunnelRunOptions["masterRead"],
): Promise<void> {
  const { client, upstream, counters } = tunnel;
  const own = masterRead?.bytes ?? buffers.small.take();
  let buffer = own;
  let halfClosed = false;
  try {
    let n = masterRead ? await masterRead.read : await upstream.read(buffer);
    for (; n !== null; n = await upstream.read(buffer)) {
      tunnel.moved = true;
      await writeAll(client, buffer, n);
      counters.bytesMasterToClient += n;
      buffer = nextBuffer(buffer, n, own, buffers);
    }
    await client.closeWrite();
    halfClosed = true;
  } catch {
    /* the tunnel ends */
  } finally {
    tunnel.directionEnded(halfClosed, true);
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
async function writeAll(to: ByteStream, buffer: Uint8Array, n: number): Promise<void> {
  let written = await to.write(n === buffer.length ? buffer : buffer.subarray(0, n));
  while (written < n) written += await to.write(buffer.subarray(written, n));
}
