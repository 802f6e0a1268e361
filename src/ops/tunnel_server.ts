/**
 * Starts everything for a config: one listener, registry and master watcher
 * per database, and one Sentinel client shared by them, with a `+switch-master`
 * subscription on every known Sentinel. It also applies a reloaded config.
 *
 * ```ts ignore
 * const controller = new AbortController();
 * const server = TunnelServer.start(config, { signal: controller.signal });
 * server.reload(nextConfig); // on SIGHUP
 * controller.abort();
 * await server.done;
 * ```
 *
 * A database entry is keyed by its listen address: one master name may be
 * served on several ports, as its master or as its replicas (a read port,
 * with a {@linkcode ReplicaWatcher} on top of its own master watcher).
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { formatAddress } from "../shared/address.ts";
import type {
  DatabaseConfig,
  TlsClientSettings,
  TlsServerSettings,
  TunnelConfig,
} from "../shared/settings.ts";
import { ClientSlots } from "../data/client_slots.ts";
import { ConnectionRegistry } from "../data/connection_registry.ts";
import { DatabaseListener, type Shedder } from "../data/database_listener.ts";
import { ReadyPool } from "../data/ready_pool.ts";
import { HookQueue } from "./hooks.ts";
import { MasterWatcher } from "../control/master_watcher.ts";
import { ReplicaWatcher } from "../control/replica_watcher.ts";
import type { RouteSource } from "../data/route_source.ts";
import { type BufferSizes, type Tunnel, TunnelBuffers } from "../data/tunnel.ts";
import { SentinelClient, type SentinelClientOptions } from "../control/sentinel_client.ts";
import { ListenError, sleep, supervise } from "../shared/io.ts";
import { checkKeyPair } from "../shared/tls_stream.ts";

const log = getLogger(["sentinel-tunnel", "server"]);

/** Options for {@linkcode TunnelServer.start}. */
export interface TunnelServerOptions {
  /** Buffer sizes for each tunnel direction. @default {DEFAULT_BUFFER_SIZES} */
  buffers?: BufferSizes;
  /** Stops accepting, closes every tunnel and ends the control plane. */
  signal: AbortSignal;
}

/** One database entry's running parts. */
export interface DatabaseRuntime {
  readonly listener: DatabaseListener;
  /** The master's watcher; on a replica port, it serves `whenNoReplica: "master"`. */
  readonly watcher: MasterWatcher;
  /** The tunnels to the master. */
  readonly registry: ConnectionRegistry<Tunnel>;
  /** A replica port's replica watcher. */
  readonly replicas: ReplicaWatcher | undefined;
  /** A replica port's tunnels to replicas. */
  readonly replicaRegistry: ConnectionRegistry<Tunnel> | undefined;
  /** A master port's ready connections (`preconnect`). */
  readonly ready: ReadyPool | undefined;
  /** What the port's listener asks: the replica watcher on a replica port, else the master's. */
  readonly source: RouteSource;
}

interface RunningDatabase extends DatabaseRuntime {
  /** Replaced when a failed accept loop reopens the port. */
  listener: DatabaseListener;
  readonly hooks: HookQueue;
  readonly controller: AbortController;
  /** The entry's own `maxClients` count, which its ready connections share with its clients. */
  readonly databaseSlots: ClientSlots;
}

/** What a reload did, by database entry: its name, with ` (replicas)` for a replica port. */
export interface ReloadSummary {
  readonly added: string[];
  readonly removed: string[];
  /** Moved to another listen address: new listener, tunnels closed. */
  readonly replaced: string[];
  /** Same listen address, other settings: tunnels kept. */
  readonly updated: string[];
  readonly unchanged: string[];
  /** Could not listen on a port the old config held; see the log. */
  readonly failed: string[];
  readonly sentinelsChanged: boolean;
}

/** The running tunnel. */
export class TunnelServer {
  readonly sentinels: SentinelClient;
  /** Settles when the signal has aborted and everything has stopped. */
  readonly done: Promise<void>;
  readonly #signal: AbortSignal;
  readonly #buffers: TunnelBuffers;
  /** The top-level maxClients, shared by every database's listener. */
  readonly #slots: ClientSlots;
  /** Every master port's ready connections, shed for a client over the top-level cap. */
  readonly #anyReady: Shedder = {
    shedOne: () => {
      for (const running of this.#databases.values()) if (running.ready?.shedOne()) return true;
      return false;
    },
  };
  readonly #databases = new Map<string, RunningDatabase>();
  readonly #running = new Set<Promise<void>>();
  #config: TunnelConfig;

  private constructor(config: TunnelConfig, options: TunnelServerOptions) {
    this.#config = config;
    this.#signal = options.signal;
    this.#buffers = new TunnelBuffers(options.buffers);
    this.#slots = new ClientSlots(config.maxClients);
    this.sentinels = new SentinelClient(config.sentinels, sentinelOptions(config));
    this.done = this.#untilStopped();
  }

  /**
   * Opens every database's port, then starts the control plane and the accept
   * loops. If a port cannot be opened, the ones already opened are closed.
   *
   * @throws {ListenError} naming the port and the cause
   */
  static start(config: TunnelConfig, options: TunnelServerOptions): TunnelServer {
    checkCertificates(config);
    const server = new TunnelServer(config, options);
    const listeners = server.#openListeners(config.databases);
    server.sentinels.subscribe({
      onEvent: (event, sentinel) => {
        // Only a Sentinel that counts for this master may speak of it.
        const counts = server.sentinels.watching(event.master).some((s) => s === sentinel);
        if (!counts) return;
        for (const running of server.#databases.values()) {
          if (running.watcher.database.name !== event.master) continue;
          running.watcher.onEvent(event, sentinel);
          running.replicas?.onEvent(event, sentinel);
        }
      },
      // Messages may have been missed while unsubscribed: resync with a fresh query.
      onSubscribed: () =>
        server.#databases.forEach((d) => {
          d.watcher.wake();
          d.replicas?.wake();
        }),
    }, options.signal);
    config.databases.forEach((database, i) => server.#run(database, listeners[i]!));
    return server;
  }

  /** The config in force. */
  get config(): TunnelConfig {
    return this.#config;
  }

  /** The running databases, in config order. */
  get databases(): DatabaseRuntime[] {
    return [...this.#databases.values()];
  }

  /**
   * Applies a new config: added databases start listening, removed ones stop,
   * ones that moved to another listen address are replaced, and the others
   * keep their connections (taking new timeouts, credentials and hooks in
   * place). If a port that the old config does not hold cannot be opened,
   * nothing changes. A port the old config holds (a database renamed, or
   * moved onto another's port) is opened once the old listener has let go
   * of it; if that fails, the error is logged and that database is not served.
   *
   * @throws {ListenError} naming the port and the cause; the old config keeps running
   */
  async reload(next: TunnelConfig): Promise<ReloadSummary> {
    checkCertificates(next);
    const summary: ReloadSummary = {
      added: [],
      removed: [],
      replaced: [],
      updated: [],
      unchanged: [],
      failed: [],
      sentinelsChanged: JSON.stringify(sentinelSettings(this.#config)) !==
        JSON.stringify(sentinelSettings(next)),
    };
    const label = (database: DatabaseConfig) => entryLabel(database, next.databases);
    const oldLabel = (database: DatabaseConfig) => entryLabel(database, this.#config.databases);
    const moved: DatabaseConfig[] = [];
    /** Running entries that leave: removed, moved to another address, or given another name or role. */
    const leaving: RunningDatabase[] = [];
    const kept = new Set<string>();
    const newEntries: DatabaseConfig[] = [];
    for (const database of next.databases) {
      const running = this.#databases.get(entryKey(database));
      const current = running?.watcher.database;
      if (!running || !current) {
        newEntries.push(database);
      } else if (current.name !== database.name || current.role !== database.role) {
        // Another name or role on the same port: the old entry goes, a new one comes.
        kept.add(entryKey(database));
        leaving.push(running);
        summary.removed.push(oldLabel(current));
        summary.added.push(label(database));
        moved.push(database);
      } else if (JSON.stringify(current) !== JSON.stringify(database)) {
        kept.add(entryKey(database));
        summary.updated.push(label(database));
      } else {
        kept.add(entryKey(database));
        summary.unchanged.push(label(database));
      }
    }
    const gone = [...this.#databases].filter(([key]) => !kept.has(key)).map(([, r]) => r);
    for (const database of newEntries) {
      // The same name and role on another address: the entry moved.
      const i = gone.findIndex((r) =>
        r.watcher.database.name === database.name && r.watcher.database.role === database.role
      );
      if (i === -1) {
        summary.added.push(label(database));
      } else {
        summary.replaced.push(label(database));
        leaving.push(gone.splice(i, 1)[0]!);
      }
      moved.push(database);
    }
    for (const running of gone) {
      summary.removed.push(oldLabel(running.watcher.database));
      leaving.push(running);
    }

    const heldByLeaving = (d: DatabaseConfig) =>
      leaving.some((r) => r.watcher.database.port === d.port);
    const openNow = moved.filter((d) => !heldByLeaving(d));
    const opened = this.#openListeners(openNow);
    const listeners = new Map(opened.map((listener, i) => [entryKey(openNow[i]!), listener]));

    this.#config = next;
    this.#slots.limit = next.maxClients;
    if (summary.sentinelsChanged) this.sentinels.update(next.sentinels, sentinelOptions(next));
    for (const running of leaving) this.#stop(running);
    for (const database of next.databases) {
      const running = this.#databases.get(entryKey(database));
      if (!running) continue;
      const before = running.watcher.database;
      if (JSON.stringify(before) !== JSON.stringify(database)) {
        running.watcher.update(database);
        running.hooks.hook = database.onMasterChange;
        running.replicas?.settingsChanged();
        // Before the pool refills: it must not fill past a lowered cap.
        running.databaseSlots.limit = database.maxClients;
        running.ready?.settingsChanged();
        if (before.whenNoReplica === "master" && database.whenNoReplica !== "master") {
          // Reads may no longer go to the master: the clients it was given leave it.
          const closed = running.registry.closeAll();
          log.info(
            "Database {database}: whenNoReplica is {whenNoReplica} now; closed {closed} read-port client connections to the master",
            { database: database.name, whenNoReplica: database.whenNoReplica, closed },
          );
        }
      }
      if (summary.sentinelsChanged) running.watcher.sentinelsChanged();
      running.replicas?.wake();
    }
    // Ports the old config held are free once their accept loops have ended.
    await Promise.all(leaving.map((r) => r.listener.acceptEnded));
    for (const database of next.databases) {
      const key = entryKey(database);
      if (this.#databases.has(key) || !moved.includes(database)) continue;
      const listener = listeners.get(key) ?? await this.#openWithRetry(database, "reload");
      if (listener) this.#run(database, listener);
      else summary.failed.push(label(database));
    }
    // Keep config order, for the admin API.
    const order = next.databases.map(entryKey);
    const sorted = [...this.#databases].sort(([a], [b]) => order.indexOf(a) - order.indexOf(b));
    this.#databases.clear();
    for (const [key, running] of sorted) this.#databases.set(key, running);
    return summary;
  }

  /**
   * Opens a port that was just let go of (by the old config, or by a failed
   * accept loop), retrying briefly; logs and returns nothing on failure.
   */
  async #openWithRetry(
    database: DatabaseConfig,
    why: "reload" | "restart",
    signal: AbortSignal = this.#signal,
  ): Promise<DatabaseListener | undefined> {
    for (let attempt = 1;; attempt++) {
      if (signal.aborted) return undefined;
      try {
        return this.#openListeners([database])[0];
      } catch (error) {
        if (attempt === 5 || signal.aborted) {
          log.error("{why}: database {database} is not served: {error}", {
            why: why === "reload" ? "Reload" : "Restarting its accept loop",
            database: database.name,
            error: (error as Error).message,
          });
          return undefined;
        }
        await sleep(50 * attempt, signal);
      }
    }
  }

  #openListeners(databases: readonly DatabaseConfig[]): DatabaseListener[] {
    const opened: DatabaseListener[] = [];
    try {
      for (const database of databases) {
        opened.push(DatabaseListener.open(database));
      }
    } catch (error) {
      for (const listener of opened) listener.close();
      throw error;
    }
    return opened;
  }

  #run(database: DatabaseConfig, listener: DatabaseListener): void {
    const controller = new AbortController();
    const signal = AbortSignal.any([this.#signal, controller.signal]);
    const registry = new ConnectionRegistry<Tunnel>();
    const hooks = new HookQueue(database.onMasterChange, signal);
    const databaseSlots = new ClientSlots(database.maxClients);
    // Set once the watcher exists: the pool asks it, and its cut-offs reach the pool.
    let ready: ReadyPool | undefined;
    const watcher = new MasterWatcher(database, {
      sentinels: this.sentinels,
      // The counts logged are of clients; ready connections are closed alike, uncounted.
      registry: {
        closeTo: (address) => (ready?.closeTo(address), registry.closeTo(address)),
        closeAllExcept: (address) => (
          ready?.closeAllExcept(address), registry.closeAllExcept(address)
        ),
      },
      onMasterChange: (change) => {
        // A name served on several ports runs each hook once per change, from its first entry.
        if (this.#runsHook(watcher.database)) hooks.push(change);
      },
    });
    if (database.role === "master") {
      ready = new ReadyPool(watcher, this.#buffers, watcher.stats, {
        database: databaseSlots,
        total: this.#slots,
      });
    }
    const replicaRegistry = database.role === "replica"
      ? new ConnectionRegistry<Tunnel>()
      : undefined;
    const replicas = replicaRegistry &&
      new ReplicaWatcher({
        master: watcher,
        sentinels: this.sentinels,
        registry: replicaRegistry,
        stats: watcher.stats,
      });
    const running: RunningDatabase = {
      controller,
      registry,
      replicaRegistry,
      ready,
      listener,
      hooks,
      databaseSlots,
      watcher,
      replicas,
      source: replicas ?? watcher,
    };
    this.#databases.set(entryKey(database), running);
    log.info("Database {database}: listening on {listen}{role}", {
      database: database.name,
      listen: formatAddress({ hostname: listener.address.hostname, port: listener.address.port }),
      role: database.role === "replica" ? " for reads from its replicas" : "",
    });
    const restartLogger = (what: string) => (error: unknown, restartInMs: number) =>
      log.error("Database {database}: {what} failed unexpectedly: {error}; restarting in {ms} ms", {
        database: database.name,
        what,
        error: error instanceof Error ? (error.stack ?? error.message) : String(error),
        ms: restartInMs,
      });
    const serveOptions = {
      watcher: running.source,
      registry,
      ...(replicaRegistry ? { replicaRegistry } : {}),
      buffers: this.#buffers,
      ...(ready ? { ready } : {}),
      anyReady: this.#anyReady,
      slots: this.#slots,
      // The database's count outlives a listener reopened after a failure.
      databaseSlots,
    };
    // One database's bug restarts that database's loop; the others and the admin API go on.
    const done = Promise.all([
      supervise((s) => running.watcher.run(s), signal, {
        onFailure: restartLogger("the master check loop"),
      }),
      replicas
        ? supervise((s) => replicas.run(s), signal, {
          onFailure: restartLogger("the replica check loop"),
        })
        : undefined,
      ready?.run(signal),
      supervise(
        async (s) => {
          if (running.listener.closed && !s.aborted) {
            // The failed loop closed its port: open it again.
            const reopened = await this.#openWithRetry(running.watcher.database, "restart", s);
            if (!reopened) {
              const { bind, port } = running.watcher.database;
              throw new Error(
                `${formatAddress({ hostname: bind, port })} could not be opened again; retrying`,
              );
            }
            if (s.aborted) {
              // Stopped (a reload) while the port was opening: let it go for whoever takes it next.
              reopened.close();
              return;
            }
            running.listener = reopened;
          }
          await running.listener.serve(serveOptions, s);
        },
        signal,
        { onFailure: restartLogger("the accept loop") },
      ),
      closeTunnelsOnAbort(database.name, [registry, replicaRegistry], signal),
    ]).then(() => running.hooks.idle()).finally(() => this.#running.delete(done));
    this.#running.add(done);
  }

  /** Whether `database` is the first entry of its name with its hook (entries share a top-level one). */
  #runsHook(database: DatabaseConfig): boolean {
    const hook = JSON.stringify(database.onMasterChange);
    const first = this.#config.databases.find((d) =>
      d.name === database.name && JSON.stringify(d.onMasterChange) === hook
    );
    return first === undefined || entryKey(first) === entryKey(database);
  }

  #stop(running: RunningDatabase): void {
    const { database } = running.watcher;
    if (this.#databases.get(entryKey(database)) === running) {
      this.#databases.delete(entryKey(database));
    }
    running.controller.abort();
    // Unless an entry still serves the name, its Sentinels need not be watched.
    const name = database.name;
    if (!this.#config.databases.some((d) => d.name === name)) this.sentinels.forget(name);
  }

  async #untilStopped(): Promise<void> {
    await new Promise<void>((resolve) => {
      if (this.#signal.aborted) resolve();
      else this.#signal.addEventListener("abort", () => resolve(), { once: true });
    });
    while (this.#running.size > 0) await Promise.all([...this.#running]);
    await this.sentinels.closed();
  }
}

function sentinelOptions(config: TunnelConfig): SentinelClientOptions {
  return {
    connectTimeoutMs: config.timeouts.sentinelConnectMs,
    replyTimeoutMs: config.timeouts.sentinelReplyMs,
    auth: config.sentinelAuth,
    tls: config.sentinelTls,
    maxSentinels: config.maxSentinels,
  };
}

function sentinelSettings(config: TunnelConfig): unknown {
  return { sentinels: config.sentinels, ...sentinelOptions(config) };
}

/** An entry's key: its listen address, which no two entries share. */
function entryKey(database: DatabaseConfig): string {
  return formatAddress({ hostname: database.bind, port: database.port }).toLowerCase();
}

/** An entry as logs and reload summaries name it: its name, `(replicas)`, and its port when the rest is shared. */
export function entryLabel(database: DatabaseConfig, all: readonly DatabaseConfig[]): string {
  const base = (d: DatabaseConfig) => d.role === "replica" ? `${d.name} (replicas)` : d.name;
  const label = base(database);
  return all.filter((d) => base(d) === label).length > 1
    ? `${label} on ${formatAddress({ hostname: database.bind, port: database.port })}`
    : label;
}

function closeTunnelsOnAbort(
  database: string,
  registries: readonly (ConnectionRegistry<Tunnel> | undefined)[],
  signal: AbortSignal,
): Promise<void> {
  return new Promise((resolve) => {
    const closeAll = () => {
      const closed = registries.reduce((sum, r) => sum + (r?.closeAll() ?? 0), 0);
      log.info("Database {database}: stopped; closed {closed} tunnels", { database, closed });
      resolve();
    };
    if (signal.aborted) closeAll();
    else signal.addEventListener("abort", closeAll, { once: true });
  });
}

/**
 * Checks that every certificate fits its key, the clients' and the local ports': TLS would find
 * a client's only at the first connect, with an error that says nothing of which file is wrong.
 *
 * @throws {ListenError} naming the files; a reload is refused, a start fails
 */
function checkCertificates(config: TunnelConfig): void {
  // Settings objects are shared where a database inherits them: each pair is checked once.
  const pairs = new Map<TlsClientSettings | TlsServerSettings, string>();
  if (config.sentinelTls) {
    pairs.set(config.sentinelTls, "The TLS client certificate for the Sentinels");
  }
  for (const database of config.databases) {
    if (database.tls && !pairs.has(database.tls)) {
      pairs.set(database.tls, `The TLS client certificate for database "${database.name}"`);
    }
    if (database.listenTls) {
      pairs.set(
        database.listenTls,
        `The TLS certificate of port ${database.port} (database "${database.name}")`,
      );
    }
  }
  for (const [{ cert, key, certFile, keyFile }, what] of pairs) {
    if (cert === undefined || key === undefined) continue;
    try {
      checkKeyPair(cert, key);
    } catch (error) {
      throw new ListenError(
        `${what} cannot be used: certFile ${certFile} and keyFile ${keyFile}: ${
          (error as Error).message
        }; give the key that belongs to the certificate`,
        { cause: error },
      );
    }
  }
}
