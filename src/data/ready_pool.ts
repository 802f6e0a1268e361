/**
 * Ready connections to the confirmed master (`preconnect`): dialled ahead, left
 * untouched (no AUTH, no command, so a client gets what a fresh connection
 * would give it), and handed to a new client at once instead of a dial, which
 * saves it a round trip, or with TLS a handshake.
 *
 * Safety: a ready connection belongs to the confirmation it was dialled for
 * (the {@linkcode Targets} object, which the watcher keeps for exactly one
 * confirmation) and is handed out only while that confirmation lasts. Every
 * cut-off the watcher makes reaches the pool too ({@linkcode ReadyPool.closeTo}),
 * and the pool empties itself at any change of targets, so a connection to a
 * node that stopped being the master is closed at once, and could not be
 * handed out even if it were not.
 *
 * Each ready connection keeps a read pending: Redis sends nothing unasked, so
 * the read ending means the master closed it (its `timeout`), and it is
 * replaced; a node that sends anything unasked is dropped. A client that takes
 * it takes the pending read too, and the tunnel's first read is that one.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { type Address, formatAddress, sameAddress } from "../shared/address.ts";
import { type ByteStream, connectTo } from "../shared/connect.ts";
import { closeQuietly, untilAborted } from "../shared/io.ts";
import { describeNetworkError } from "../shared/errors.ts";
import type { Timeouts, TlsClientSettings } from "../shared/settings.ts";
import type { ClientSlots } from "./client_slots.ts";
import type { RouteSource, Targets } from "../shared/route.ts";
import type { TunnelBuffers } from "./tunnel.ts";

const log = getLogger(["sentinel-tunnel", "preconnect"]);

/**
 * A ready connection is replaced after this long unused: a stateful firewall
 * or NAT on the way may forget an idle flow without a word (AWS's after 350 s),
 * and a connection it forgot would hang its client. One dial a minute per
 * ready connection costs the master nothing.
 */
export const READY_MAX_AGE_MS = 60_000;

/** Backoff between failed dials (or connections the master drops at once): from this... */
const FIRST_BACKOFF_MS = 100;
/** ...doubling up to this. */
const MAX_BACKOFF_MS = 5_000;
/** A ready connection that ends sooner than this after its dial counts as a failure. */
const SHORT_LIVED_MS = 1_000;

/** What the pool asks of the control plane: where its port's clients go, and when that changes. */
export type ReadySource = Pick<RouteSource, "targets" | "nextChange">;

/** The port's settings the pool reads; a reload may change them. */
export interface ReadySettings {
  readonly name: string;
  /** How many ready connections to keep; 0 is off. */
  readonly preconnect: number;
  readonly timeouts: Timeouts;
  readonly tcpKeepAlive: boolean;
  readonly tls?: TlsClientSettings | undefined;
}

/** What the pool counts, for metrics. */
export interface ReadyStats {
  /** Clients that took a ready connection instead of dialling. */
  readyConnectionsUsed: number;
  /** Ready connections closed unused: cut off, dropped by the master, too old, or shed. */
  readyConnectionsDiscarded: number;
}

/** A connection dialled ahead for one confirmation of the master. */
export class ReadyConnection {
  readonly stream: ByteStream;
  readonly master: Address;
  readonly targets: Targets;
  /** The pending read, whose bytes land in `bytes` (a small buffer of the tunnels' pool). */
  readonly read: Promise<number | null>;
  readonly bytes: Uint8Array;
  readonly readyAt = performance.now();
  #closed = false;
  /** Whether the pending read has ended (the master closed it, or sent something unasked). */
  ended = false;

  constructor(stream: ByteStream, master: Address, targets: Targets, bytes: Uint8Array) {
    this.stream = stream;
    this.master = master;
    this.targets = targets;
    this.bytes = bytes;
    this.read = stream.read(bytes);
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.stream);
  }
}

/** Slots a ready connection holds: the database's and the process's, as a client does. */
export interface ReadySlots {
  readonly database: ClientSlots;
  readonly total?: ClientSlots | undefined;
}

/** How the pool dials; {@linkcode connectTo} but in tests. */
export type Dialer = typeof connectTo;

/** The ready connections of one master port. */
export class ReadyPool {
  readonly #source: ReadySource;
  readonly #settings: () => ReadySettings;
  readonly #buffers: TunnelBuffers;
  readonly #stats: ReadyStats;
  readonly #slots: ReadySlots;
  readonly #connect: Dialer;
  /** Oldest first: a take uses the oldest, so each is used or replaced well before its age ends. */
  #ready: ReadyConnection[] = [];
  /**
   * Dials under way, oldest first, each holding slots. One voided (shed for a
   * client, or everything closed) leaves the list and gives its slots back at
   * once, and its connection is closed when it comes.
   */
  #dials: { voided: boolean }[] = [];
  #backoffMs = 0;
  #retryAt = 0;
  /** The targets of the last sync: a new master starts without the old one's backoff. */
  #syncedFor: Targets | undefined;
  #signal: AbortSignal | undefined;
  /** The refill that follows takes (`#refillSoon`). */
  #refillTimer: ReturnType<typeof setTimeout> | undefined;
  /** The one timer of the pool: the oldest's age, or the end of a backoff. */
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    source: ReadySource,
    settings: () => ReadySettings,
    buffers: TunnelBuffers,
    stats: ReadyStats,
    slots: ReadySlots,
    connect: Dialer = connectTo,
  ) {
    this.#source = source;
    this.#settings = settings;
    this.#buffers = buffers;
    this.#stats = stats;
    this.#slots = slots;
    this.#connect = connect;
  }

  /** How many ready connections are open now. */
  get size(): number {
    return this.#ready.length;
  }

  /**
   * Keeps the pool filled for the confirmed master until `signal` aborts, then
   * closes every ready connection. Never rejects.
   */
  async run(signal: AbortSignal): Promise<void> {
    this.#signal = signal;
    // One reaction per change of state, not one per wake-up.
    const onChange = () => {
      if (signal.aborted) return;
      this.#sync();
      this.#source.nextChange.then(onChange);
    };
    this.#source.nextChange.then(onChange);
    this.#sync();
    await untilAborted(signal);
    clearTimeout(this.#timer);
    clearTimeout(this.#refillTimer);
    this.closeAll();
  }

  /**
   * A ready connection to the master of `targets` (the targets the caller is
   * about to use), or `undefined` when none is ready for exactly that
   * confirmation. The caller owns what it gets, and the pool refills.
   */
  take(targets: Targets): ReadyConnection | undefined {
    // Off (the plaintext default): nothing to hand out, and no refill to schedule per client.
    if (this.#ready.length === 0 && this.#settings().preconnect === 0) return undefined;
    let taken: ReadyConnection | undefined;
    while (this.#ready.length > 0) {
      const ready = this.#ready.shift()!;
      this.#release();
      if (
        !ready.closed && !ready.ended && ready.targets === targets &&
        this.#source.targets === targets
      ) {
        taken = ready;
        break;
      }
      this.#discard(ready);
    }
    if (taken) {
      this.#stats.readyConnectionsUsed++;
      this.#backoffMs = 0;
    }
    this.#refillSoon();
    return taken;
  }

  /**
   * Closes one ready connection, or else voids a dial under way, to free its
   * slots for a client over a cap. Returns whether there was one.
   */
  shedOne(): boolean {
    const ready = this.#ready.pop();
    if (ready) {
      this.#release();
      this.#discard(ready);
      return true;
    }
    const dial = this.#dials.pop();
    if (dial) this.#void(dial);
    return dial !== undefined;
  }

  /** Closes the ready connections to `address` (the watcher's cut-off). Returns how many. */
  closeTo(address: Address): number {
    return this.#closeWhere((ready) => sameAddress(ready.master, address));
  }

  /** Closes the ready connections to anywhere but `address`. Returns how many. */
  closeAllExcept(address: Address): number {
    return this.#closeWhere((ready) => !sameAddress(ready.master, address));
  }

  /** Closes every ready connection, and voids dials under way. Returns how many were closed. */
  closeAll(): number {
    for (const dial of this.#dials.splice(0)) this.#void(dial);
    return this.#closeWhere(() => true);
  }

  /** The settings changed (a reload: TLS, keepalive, size): start afresh with them. */
  settingsChanged(): void {
    this.closeAll();
    this.#backoffMs = 0;
    this.#retryAt = 0;
    this.#sync();
  }

  #closeWhere(matches: (ready: ReadyConnection) => boolean): number {
    let closed = 0;
    const kept: ReadyConnection[] = [];
    for (const ready of this.#ready) {
      if (!matches(ready)) {
        kept.push(ready);
        continue;
      }
      this.#release();
      this.#discard(ready);
      closed++;
    }
    this.#ready = kept;
    return closed;
  }

  /**
   * Drops what no longer belongs to the confirmed master or is too old, dials
   * what is missing, and sets the timer for the next of these.
   */
  #sync(): void {
    if (this.#signal === undefined || this.#signal.aborted) return;
    const targets = this.#source.targets;
    const now = performance.now();
    const wanted = this.#wanted(targets);
    if (targets !== this.#syncedFor) {
      this.#syncedFor = targets;
      this.#backoffMs = 0;
      this.#retryAt = 0;
    }
    this.#closeWhere((ready) => ready.closed || ready.ended || ready.targets !== targets);
    while (
      this.#ready.length > 0 &&
      (this.#ready.length > wanted || now - this.#ready[0]!.readyAt >= READY_MAX_AGE_MS)
    ) {
      const oldest = this.#ready.shift()!;
      this.#release();
      this.#discard(oldest);
    }
    this.refill();
    this.#schedule();
  }

  /** Sets the timer for the oldest's age or the end of a backoff, whichever comes first. */
  #schedule(): void {
    clearTimeout(this.#timer);
    const now = performance.now();
    const oldest = this.#ready[0];
    const due = Math.min(
      oldest ? oldest.readyAt + READY_MAX_AGE_MS : Infinity,
      this.#retryAt > now ? this.#retryAt : Infinity,
    );
    this.#timer = due === Infinity
      ? undefined
      : setTimeout(() => this.#sync(), Math.max(1, due - now));
  }

  #wanted(targets: Targets | undefined): number {
    return targets?.kind === "master" ? this.#settings().preconnect : 0;
  }

  /**
   * Refills once the client's first bytes are on their way: a dial started in
   * the same turn would spend its CPU before them (measured: about 6% of a new
   * connection's time to its first reply over a 1 ms round trip). One timer
   * covers every take in between.
   */
  #refillSoon(): void {
    if (this.#refillTimer !== undefined) return;
    this.#refillTimer = setTimeout(() => {
      this.#refillTimer = undefined;
      this.refill();
    }, 0);
  }

  /**
   * Dials until ready and dialling reach the size wanted, unless backing off or
   * out of slots; the listener calls it when a client leaves and frees its slots.
   */
  refill(): void {
    const targets = this.#source.targets;
    if (!targets || this.#signal?.aborted !== false || performance.now() < this.#retryAt) return;
    const wanted = this.#wanted(targets);
    while (this.#ready.length + this.#dials.length < wanted && this.#takeSlots()) {
      void this.#dial(targets);
    }
  }

  async #dial(targets: Targets): Promise<void> {
    const address = targets.addresses[0]!;
    const signal = this.#signal!;
    const { timeouts, tcpKeepAlive, tls, name } = this.#settings();
    const record = { voided: false };
    this.#dials.push(record);
    let stream: ByteStream;
    try {
      stream = await this.#connect(address, {
        timeoutMs: timeouts.masterConnectMs,
        signal,
        tls,
        keepAlive: tcpKeepAlive,
      });
    } catch (error) {
      if (record.voided) return;
      this.#dials.splice(this.#dials.indexOf(record), 1);
      this.#release();
      if (signal.aborted) return;
      this.#failed();
      log.debug("Database {database}: cannot open a ready connection to {master}: {error}", {
        database: name,
        master: formatAddress(address),
        error: describeNetworkError(error),
      });
      return;
    }
    if (record.voided) {
      closeQuietly(stream);
      return;
    }
    this.#dials.splice(this.#dials.indexOf(record), 1);
    // The master may have changed, or been cut off, while dialling: such a connection never joins.
    if (
      signal.aborted || this.#source.targets !== targets ||
      this.#ready.length >= this.#settings().preconnect
    ) {
      this.#release();
      closeQuietly(stream);
      if (!signal.aborted) this.refill();
      return;
    }
    const ready = new ReadyConnection(stream, address, targets, this.#buffers.small.take());
    this.#ready.push(ready);
    if (this.#timer === undefined) this.#schedule();
    ready.read.then(
      (n) => this.#ended(ready, n === null ? "closed by the master" : `${n} bytes sent unasked`),
      (error) => this.#ended(ready, describeNetworkError(error)),
    );
  }

  /** A ready connection's pending read ended while it waited: drop it, and replace it. */
  #ended(ready: ReadyConnection, why: string): void {
    ready.ended = true;
    const index = this.#ready.indexOf(ready);
    // Taken by a client (its tunnel owns the read now), or already closed by the pool.
    if (index < 0) return;
    this.#ready.splice(index, 1);
    this.#release();
    this.#discard(ready);
    log.debug("Database {database}: ready connection to {master} ended unused: {why}", {
      database: this.#settings().name,
      master: formatAddress(ready.master),
      why,
    });
    if (performance.now() - ready.readyAt < SHORT_LIVED_MS) this.#failed();
    else {
      this.#backoffMs = 0;
      this.refill();
    }
  }

  /** A dial failed, or its connection ended at once: wait before the next, longer each time. */
  #failed(): void {
    this.#backoffMs = this.#backoffMs === 0
      ? FIRST_BACKOFF_MS
      : Math.min(this.#backoffMs * 2, MAX_BACKOFF_MS);
    this.#retryAt = performance.now() + this.#backoffMs;
    this.#sync();
  }

  /** Closes a connection taken out of the pool, giving its buffer back once its read is over. */
  #discard(ready: ReadyConnection): void {
    this.#stats.readyConnectionsDiscarded++;
    ready.close();
    const give = () => this.#buffers.small.give(ready.bytes);
    ready.read.then(give, give);
  }

  /** A dial under way, already out of `#dials`, gives its slots back; its connection will not join. */
  #void(dial: { voided: boolean }): void {
    dial.voided = true;
    this.#release();
  }

  #takeSlots(): boolean {
    const { database, total } = this.#slots;
    if (!database.tryTake()) return false;
    if (total && !total.tryTake()) {
      database.give();
      return false;
    }
    return true;
  }

  #release(): void {
    this.#slots.database.give();
    this.#slots.total?.give();
  }
}
