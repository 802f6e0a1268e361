/**
 * The listener of one database: accepts clients on the local port, joins each
 * to the confirmed master, and gives a client that cannot be served a RESP
 * error naming the database and the cause, never a silent close.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { type Address, addressKey, formatAddress, sameAddress } from "../shared/address.ts";
import type { DatabaseConfig } from "../shared/settings.ts";
import { type ByteStream, ConnectError, connectTo } from "../shared/connect.ts";
import { acceptTls } from "../shared/tls_stream.ts";
import { ClientSlots } from "./client_slots.ts";
import type { ConnectionRegistry } from "./connection_registry.ts";
import type { RouteSource, Targets } from "../shared/route.ts";
import type { PortStats } from "../shared/stats.ts";
import { closeQuietly, sleep } from "../shared/io.ts";
import { describeNetworkError, isOutOfDescriptors, ListenError } from "../shared/errors.ts";
import { acceptLoop, ListenerFailedError } from "../shared/accept_loop.ts";
import { RejectionLog } from "./rejection_log.ts";
import { Tunnel, type TunnelBuffers } from "./tunnel.ts";
import type { ReadyConnection, ReadyPool } from "./ready_pool.ts";
import { encodeError } from "./resp_error.ts";

const log = getLogger(["sentinel-tunnel", "listener"]);

/** Options for {@linkcode DatabaseListener.serve}. */
export interface DatabaseListenerOptions {
  /** The port's settings now: a reload may change them, and the next client takes them. */
  settings: () => DatabaseConfig;
  /** What the control plane of the port's master name answers: where a client may go. */
  route: RouteSource;
  /** Where the port's clients and bytes are counted. */
  stats: PortStats;
  /** The tunnels to the master, which the control plane cuts on a master change. */
  registry: ConnectionRegistry<Tunnel>;
  /**
   * The tunnels to replicas, which the control plane cuts when a replica is out of use.
   * @default {registry}
   */
  replicaRegistry?: ConnectionRegistry<Tunnel>;
  /** Where tunnels take their buffers. */
  buffers: TunnelBuffers;
  /** Ready connections to the master (`preconnect`), taken before dialling. */
  ready?: ReadyPool;
  /** The ready connections of every database: a client over the top-level cap takes one's slot. */
  anyReady?: Shedder;
  /**
   * The live clients of every database together (the top-level `maxClients`).
   * @default {undefined} no cap over all databases
   */
  slots?: ClientSlots;
  /**
   * The live clients of this database (its `maxClients`), kept by the caller so
   * that the count outlives a listener reopened after a failure.
   * @default {undefined} the listener's own count
   */
  databaseSlots?: ClientSlots;
}

/** How long a rejected client gets to read its error before the connection closes. */
const REJECT_LINGER_MS = 1000;

/**
 * Rejected clients allowed to linger at once; past that a rejected client is
 * closed right after its error is written, so that a flood of clients over a
 * cap holds no more descriptors than this.
 */
const MAX_LINGERING = 256;

/** The first bytes read from a client that waits for a master, to see it leave. */
const EARLY_READ_BYTES = 4096;

/** Listens on one database's port and tunnels each client to its master. */
export class DatabaseListener {
  readonly database: DatabaseConfig;
  readonly #listener: Deno.TcpListener;
  /** Client handlers still running, and who waits for them to end. */
  #handlers = 0;
  readonly #acceptEnded = Promise.withResolvers<void>();
  #handlersEnded: PromiseWithResolvers<void> | undefined;
  /** Clients counted against the database's `maxClients` when no `databaseSlots` is given. */
  readonly #ownSlots: ClientSlots;
  /** Rejected clients lingering to read their error. */
  #lingering = 0;
  /** Clients connecting to each node, by lower-case `host:port`, for balancing. */
  readonly #dialing = new Map<string, number>();
  readonly #rejections: RejectionLog;
  #closed = false;

  private constructor(database: DatabaseConfig, listener: Deno.TcpListener) {
    this.database = database;
    this.#listener = listener;
    this.#rejections = new RejectionLog(database.name);
    this.#ownSlots = new ClientSlots(database.maxClients);
  }

  /**
   * Opens the database's port.
   *
   * @throws {ListenError} naming the port and the cause when it cannot be opened
   */
  static open(database: DatabaseConfig): DatabaseListener {
    let listener: Deno.TcpListener;
    const where = formatAddress({
      hostname: database.bind,
      port: database.port,
    });
    try {
      listener = Deno.listen({ hostname: database.bind, port: database.port });
    } catch (error) {
      const cause = error instanceof Deno.errors.AddrInUse
        ? `port ${database.port} is already in use; stop the process that holds it or give the database another port`
        : error instanceof Deno.errors.PermissionDenied
        ? `permission denied; ports below 1024 need root or CAP_NET_BIND_SERVICE`
        : error instanceof Deno.errors.AddrNotAvailable
        ? `${database.bind} is not an address of this machine; use "127.0.0.1", "::1" or "0.0.0.0"`
        : describeNetworkError(error);
      throw new ListenError(
        `Cannot listen on ${where} for database "${database.name}": ${cause}`,
        {
          cause: error,
        },
      );
    }
    return new DatabaseListener(database, listener);
  }

  /** Settles when the accept loop has ended: only then is the port free to open again. */
  get acceptEnded(): Promise<void> {
    return this.#acceptEnded.promise;
  }

  /** The address the listener is bound to. */
  get address(): Deno.NetAddr {
    return this.#listener.addr;
  }

  /**
   * Accepts clients until `signal` aborts, then waits for every client handler
   * to end. An accept error that belongs to one connection (it reset or
   * aborted before it was accepted) is skipped at once; running out of file
   * descriptors, buffers or memory is logged once and retried with backoff
   * from 5 ms up to 1 s. Only closing the listener ends the loop.
   */
  async serve(options: DatabaseListenerOptions, signal: AbortSignal): Promise<void> {
    const onAbort = () => this.close();
    signal.addEventListener("abort", onAbort, { once: true });
    const { stats } = options;
    const { name, port } = this.database;
    try {
      await acceptLoop(this.#listener, {
        onConnection: (conn) => {
          this.#handlers++;
          void this.#handleClient(conn, options, signal);
        },
        onSkipped: () => stats.connectionsAbortedBeforeAccept++,
        onExhausted: (error) => {
          if (isOutOfDescriptors(error)) stats.acceptsOutOfDescriptors++;
          log.error(
            "Database {database}: accept failed on port {port}: {error}; backing off up to 1 s until it recovers{advice}",
            {
              database: name,
              port,
              error: describeNetworkError(error),
              advice: isOutOfDescriptors(error)
                ? "; raise the file descriptor limit (ulimit -n, LimitNOFILE) above twice maxClients, or lower maxClients"
                : "",
            },
          );
        },
        onRecovered: (failures) =>
          log.info(
            "Database {database}: accepting again on port {port}, after {failures} failed accepts",
            { database: name, port, failures },
          ),
        closed: () => this.#closed,
      }, signal);
    } catch (error) {
      // The listener failed although nobody closed it: the caller reopens the port.
      if (!(error instanceof ListenerFailedError)) throw error;
      throw new Error(`the listener on port ${port} failed: ${error.message}`, { cause: error });
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.close();
      this.#acceptEnded.resolve();
    }
    if (this.#handlers > 0) {
      this.#handlersEnded = Promise.withResolvers();
      await this.#handlersEnded.promise;
    }
    this.#rejections.flush();
  }

  /** Whether it stopped accepting: closed, or its accept loop ended. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Stops accepting. Live tunnels are left to the registry. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.#listener);
  }

  /** Serves one client; never rejects, and counts itself out when it ends. */
  async #handleClient(
    conn: Deno.TcpConn,
    options: DatabaseListenerOptions,
    signal: AbortSignal,
  ): Promise<void> {
    let client: ByteStream = conn;
    try {
      conn.setNoDelay(true);
      if (options.settings().tcpKeepAlive) conn.setKeepAlive(true);
      await this.#serveClient(conn, (stream) => client = stream, options, signal);
    } catch (error) {
      log.error(
        "Database {database}: serving client {client} failed unexpectedly, and it was closed: {error}; this is a bug: please report it with this line",
        {
          database: this.database.name,
          client: peerOf(conn),
          error: error instanceof Error ? (error.stack ?? error.message) : String(error),
        },
      );
      closeQuietly(client);
    } finally {
      if (--this.#handlers === 0) this.#handlersEnded?.resolve();
    }
  }

  /**
   * Admits a client under both caps, or refuses it; counts it out when it ends.
   * On a `listenTls` port the client's TLS handshake comes next, within `clientWaitMs`.
   */
  async #serveClient(
    conn: Deno.TcpConn,
    onTls: (stream: ByteStream) => void,
    options: DatabaseListenerOptions,
    signal: AbortSignal,
  ): Promise<void> {
    const { stats, slots } = options;
    const databaseSlots = options.databaseSlots ?? this.#ownSlots;
    stats.connectionsTotal++;
    // The settings in force now: a reload may have changed them.
    const { maxClients, listenTls, timeouts } = options.settings();
    // Over a cap, a TLS client is closed before its handshake costs anything; it cannot read plaintext.
    const refuse = (reason: string) =>
      listenTls
        ? (this.#rejections.rejected(peerOf(conn), reason), closeQuietly(conn))
        : this.#refuse(conn, conn, reason, signal);
    databaseSlots.limit = maxClients;
    // Ready connections hold slots too: a client over a cap takes one's slot, closing it.
    const { ready } = options;
    if (!takeSlot(databaseSlots, ready)) {
      stats.connectionsOverDatabaseLimit++;
      return await refuse(
        `too many clients (${maxClients}): this database's maxClients is reached; retry later, or raise the database's maxClients`,
      );
    }
    if (slots !== undefined && !takeSlot(slots, options.anyReady ?? ready)) {
      databaseSlots.give();
      stats.connectionsOverTotalLimit++;
      return await refuse(
        `too many clients (${slots.limit}): maxClients of all databases together is reached; retry later, or raise the top-level maxClients`,
      );
    }
    try {
      let client: ByteStream = conn;
      if (listenTls) {
        try {
          client = await acceptTls(conn, listenTls, timeouts.clientWaitMs, signal);
        } catch (error) {
          stats.connectionsRejected++;
          this.#rejections.rejected(peerOf(conn), (error as Error).message);
          return;
        }
        onTls(client);
      }
      await this.#tunnelClient(client, conn, options, signal);
    } finally {
      databaseSlots.give();
      slots?.give();
      ready?.refill();
    }
  }

  /**
   * Joins a client to the confirmed master, or on a replica port to the usable
   * replica with the fewest clients, waiting up to `clientWaitMs` for one; or
   * refuses it.
   */
  async #tunnelClient(
    client: ByteStream,
    peer: Deno.TcpConn,
    options: DatabaseListenerOptions,
    signal: AbortSignal,
  ): Promise<void> {
    const { route, stats, registry, replicaRegistry = registry, buffers, ready: pool } = options;
    const { timeouts, tcpKeepAlive, tls } = options.settings();
    const arrived = performance.now();
    const waitUntil = arrived + timeouts.clientWaitMs;
    /** Counts how long a client that found nowhere to go waited: once, however it ends. */
    let waited = false;
    const waitEnded = () => {
      if (!waited) return;
      waited = false;
      stats.clientWaitSeconds.observe((performance.now() - arrived) / 1000);
    };
    let dialError: string | undefined;
    let retryDelay = 0;
    /** While it waits, the client's first bytes are read, so that a client that leaves is seen. */
    let early: EarlyRead | undefined;
    while (!signal.aborted) {
      const remaining = waitUntil - performance.now();
      let targets = route.targets;
      if (!targets && remaining > 0) {
        early ??= new EarlyRead(client);
        waited = true;
        const outcome = await early.orTargets(route, remaining, signal);
        if (outcome === "left") {
          waitEnded();
          return closeQuietly(client);
        }
        targets = outcome;
      }
      if (!targets || signal.aborted) break;
      const tunnels = targets.kind === "replica" ? replicaRegistry : registry;
      const address = targets.kind === "replica"
        ? this.#leastLoaded(targets.addresses, tunnels)
        : targets.addresses[0]!;
      // A ready connection for this very confirmation saves the dial.
      const ready: ReadyConnection | undefined = targets.kind === "master"
        ? pool?.take(targets)
        : undefined;
      let upstream: ByteStream;
      // Clients still connecting count in the balance: only replicas are balanced.
      const dialKey = targets.kind === "replica" ? addressKey(address) : undefined;
      if (dialKey !== undefined) this.#dialing.set(dialKey, (this.#dialing.get(dialKey) ?? 0) + 1);
      try {
        upstream = ready?.stream ?? await connectTo(address, {
          timeoutMs: timeouts.masterConnectMs,
          signal,
          tls,
          keepAlive: tcpKeepAlive,
        });
      } catch (error) {
        if (signal.aborted) break;
        dialError = `cannot connect to ${targets.kind} ${formatAddress(address)}: ${
          error instanceof ConnectError ? error.message : describeNetworkError(error)
        }`;
        route.reportUnreachable(address);
        // Try again once the control plane has checked again, backing off a little.
        const left = waitUntil - performance.now();
        if (left <= 0) break;
        retryDelay = Math.min(retryDelay === 0 ? 50 : retryDelay * 2, 500);
        await Promise.all([
          route.nextResolution(left, signal),
          sleep(Math.min(retryDelay, left), signal),
        ]);
        continue;
      } finally {
        if (dialKey !== undefined) {
          const left = this.#dialing.get(dialKey)! - 1;
          if (left === 0) this.#dialing.delete(dialKey);
          else this.#dialing.set(dialKey, left);
        }
      }
      // The targets may have changed while connecting: never join a client to a node taken out.
      if (!stillTargeted(route.targets, targets.kind, address) || signal.aborted) {
        closeQuietly(upstream);
        continue;
      }
      waitEnded();
      const tunnel = new Tunnel(client, upstream, address, stats);
      tunnels.add(tunnel);
      try {
        await tunnel.run(buffers, {
          idleMs: timeouts.clientIdleMs,
          ...(early ? { firstRead: early.result() } : {}),
          ...(ready ? { masterRead: ready } : {}),
        });
      } finally {
        tunnels.delete(tunnel);
      }
      return;
    }
    waitEnded();
    await this.#reject(client, peer, options, signal, dialError, early?.result().read);
  }

  /** The address with the fewest live and connecting clients; the first of equals. */
  #leastLoaded(
    addresses: readonly Address[],
    tunnels: ConnectionRegistry<Tunnel>,
  ): Address {
    let best = addresses[0]!;
    let fewest = Infinity;
    for (const address of addresses) {
      const load = tunnels.countTo(address) +
        (this.#dialing.get(addressKey(address)) ?? 0);
      if (load < fewest) {
        best = address;
        fewest = load;
      }
    }
    return best;
  }

  /** Refuses a client that nowhere could be found for, saying why. */
  async #reject(
    client: ByteStream,
    peer: Deno.TcpConn,
    { route, stats, settings }: DatabaseListenerOptions,
    signal: AbortSignal,
    dialError: string | undefined,
    pendingRead: Promise<unknown> | undefined,
  ): Promise<void> {
    const { timeouts, role } = settings();
    const problem = route.problem;
    const reason = signal.aborted
      ? "sentinel-tunnel is shutting down"
      : problem?.kind === "unknown"
      ? problem.detail
      : `no ${
        role === "replica" ? "usable replica" : "confirmed master"
      } after waiting ${timeouts.clientWaitMs} ms: ${
        problem?.detail ?? dialError ?? "still resolving"
      }`;
    stats.connectionsRejected++;
    await this.#refuse(client, peer, reason, signal, pendingRead);
  }

  /** Answers a client with a RESP error naming the database and `reason`, then closes it. */
  async #refuse(
    client: ByteStream,
    peer: Deno.TcpConn,
    reason: string,
    signal: AbortSignal,
    pendingRead?: Promise<unknown>,
  ): Promise<void> {
    const { name, role, port } = this.database;
    const label = role === "replica" ? ` (replicas, port ${port})` : "";
    this.#rejections.rejected(peerOf(peer), reason);
    try {
      await client.write(
        encodeError(`ERR sentinel-tunnel: database "${name}"${label}: ${reason}`),
      );
      // Shutting down waits for no client; past the cap, nobody lingers.
      if (signal.aborted || this.#lingering >= MAX_LINGERING) return;
      this.#lingering++;
      // Let the client read the error: a close with its command unread would reset the connection.
      await client.closeWrite();
      const drain = new Uint8Array(512);
      const linger = AbortSignal.timeout(REJECT_LINGER_MS);
      const onLinger = () => closeQuietly(client);
      linger.addEventListener("abort", onLinger, { once: true });
      signal.addEventListener("abort", onLinger, { once: true });
      try {
        // A read already under way (a waiting client's first bytes) goes first: one read at a time.
        if (await pendingRead?.catch(() => null) !== null) {
          while (await client.read(drain) !== null) { /* discard */ }
        }
      } finally {
        this.#lingering--;
        linger.removeEventListener("abort", onLinger);
        signal.removeEventListener("abort", onLinger);
      }
    } catch {
      // The client went away first.
    } finally {
      closeQuietly(client);
    }
  }
}

/** What can give up ready connections for a client's slot. */
export interface Shedder {
  /** Closes one ready connection (or voids a dial), freeing its slots; `false` when none. */
  shedOne(): boolean;
}

/** Takes a slot, shedding ready connections for it while there are any. */
function takeSlot(slots: ClientSlots, shed: Shedder | undefined): boolean {
  while (!slots.tryTake()) if (!shed?.shedOne()) return false;
  return true;
}

/** A client's address for a log line; made only when one is written. */
function peerOf(conn: Deno.TcpConn): string {
  return formatAddress(conn.remoteAddr);
}

/** Whether `targets` still sends clients of `kind` to `address`. */
function stillTargeted(targets: Targets | undefined, kind: Targets["kind"], address: Address) {
  return targets?.kind === kind && targets.addresses.some((a) => sameAddress(a, address));
}

/**
 * One read of a waiting client's first bytes: Redis clients speak first, so a
 * client that waits for a master either sends its command, which is kept and
 * sent to the master first, or leaves, which ends its wait and gives back its
 * slot at once. Only one read: the rest waits in the socket.
 */
class EarlyRead {
  readonly #buffer = new Uint8Array(EARLY_READ_BYTES);
  readonly #read: Promise<number | null>;
  #outcome: number | null | "failed" | undefined;

  constructor(client: ByteStream) {
    this.#read = client.read(this.#buffer);
    this.#read.then((n) => this.#outcome = n, () => this.#outcome = "failed");
  }

  /** Waits for targets, or for the client to leave (`"left"`), whichever comes first. */
  async orTargets(
    route: RouteSource,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<Targets | undefined | "left"> {
    if (this.#gone()) return "left";
    const left = new AbortController();
    const waiting = route.waitForTargets(timeoutMs, AbortSignal.any([signal, left.signal]));
    if (this.#outcome !== undefined) return await waiting;
    type Outcome = Targets | undefined | "left";
    const leaving = this.#read.then<Outcome, Outcome>(
      () => this.#gone() ? "left" : waiting,
      () => "left",
    );
    const first = await Promise.race<Outcome>([waiting, leaving]);
    if (first === "left") left.abort();
    return first;
  }

  /** What the tunnel must send first: the read under way, or done. */
  result(): { read: Promise<number | null>; bytes: Uint8Array } {
    return { read: this.#read, bytes: this.#buffer };
  }

  #gone(): boolean {
    return this.#outcome === null || this.#outcome === "failed";
  }
}
