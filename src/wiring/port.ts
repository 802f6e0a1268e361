/**
 * One configured entry's running parts: its listener, its tunnels (to the
 * master, and on a read port to replicas), its ready connections, its
 * counters and its own settings, attached to the control plane of its master
 * name, which answers where its clients go and cuts them off.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { formatAddress } from "../shared/address.ts";
import { sameTlsClient } from "../shared/master_settings.ts";
import { plural } from "../shared/wording.ts";
import type { DatabaseConfig } from "../shared/settings.ts";
import { PortStats } from "../shared/stats.ts";
import { sleep, supervise } from "../shared/io.ts";
import type { ControlPlane, PortLink, PortRoute } from "../control/control_plane.ts";
import { ClientSlots } from "../data/client_slots.ts";
import { ConnectionRegistry } from "../data/connection_registry.ts";
import { DatabaseListener, type Shedder } from "../data/database_listener.ts";
import { ReadyPool } from "../data/ready_pool.ts";
import type { Tunnel, TunnelBuffers } from "../data/tunnel.ts";

const log = getLogger(["sentinel-tunnel", "server"]);

/** What every port shares: the tunnels' buffers and the top-level client cap. */
export interface SharedParts {
  readonly buffers: TunnelBuffers;
  /** The top-level `maxClients`, shared by every port. */
  readonly slots: ClientSlots;
  /** Every master port's ready connections, shed for a client over the top-level cap. */
  readonly anyReady: Shedder;
}

/** A running port; see the module doc. */
export class Port {
  readonly stats = new PortStats();
  readonly toMaster = new ConnectionRegistry<Tunnel>();
  readonly toReplicas: ConnectionRegistry<Tunnel> | undefined;
  readonly ready: ReadyPool | undefined;
  readonly plane: ControlPlane;
  readonly route: PortRoute;
  /** Settles when the port has stopped: accept loop ended, tunnels closed. */
  readonly done: Promise<void>;
  /** The port's own `maxClients` count, which its ready connections share with its clients. */
  readonly #slots: ClientSlots;
  readonly #controller = new AbortController();
  #settings: DatabaseConfig;
  /** Replaced when a failed accept loop reopens the port. */
  #listener: DatabaseListener;

  /** Starts serving on `listener`, already open for `settings`, until `signal` aborts or {@linkcode Port.stop}. */
  constructor(
    settings: DatabaseConfig,
    listener: DatabaseListener,
    plane: ControlPlane,
    shared: SharedParts,
    signal: AbortSignal,
  ) {
    this.#settings = settings;
    this.#listener = listener;
    this.plane = plane;
    this.#slots = new ClientSlots(settings.maxClients);
    this.toReplicas = settings.role === "replica" ? new ConnectionRegistry<Tunnel>() : undefined;
    // The plane reads the port's settings at each use (a reload may change them), and cuts its
    // ready connections with its tunnels: the pool, which asks the route, comes once it exists.
    const link: PortLink & { ready?: ReadyPool | undefined } = {
      label: `port ${settings.port}`,
      settings: () => this.#settings,
      toMaster: this.toMaster,
      toReplicas: this.toReplicas,
    };
    this.route = plane.attach(link);
    this.ready = settings.role === "master"
      ? new ReadyPool(this.route, () => this.#settings, shared.buffers, this.stats, {
        database: this.#slots,
        total: shared.slots,
      })
      : undefined;
    link.ready = this.ready;
    this.done = this.#run(shared, signal, AbortSignal.any([signal, this.#controller.signal]));
  }

  /** The entry's settings in force. */
  get settings(): DatabaseConfig {
    return this.#settings;
  }

  /** The address the listener is bound to. */
  get listen(): Deno.NetAddr {
    return this.#listener.address;
  }

  /** Settles when the accept loop has ended: only then is the port free to open again. */
  get acceptEnded(): Promise<void> {
    return this.#listener.acceptEnded;
  }

  /**
   * Takes new settings for the same listen address, name and role (a reload):
   * clients stay. A lowered `maxClients` holds back new clients, and the
   * ready connections start afresh with new TLS or a new size.
   */
  update(settings: DatabaseConfig): void {
    const before = this.#settings;
    this.#settings = settings;
    // Before the pool refills: it must not fill past a lowered cap.
    this.#slots.limit = settings.maxClients;
    if (
      before.preconnect !== settings.preconnect || before.maxClients !== settings.maxClients ||
      before.tcpKeepAlive !== settings.tcpKeepAlive || !sameTlsClient(before.tls, settings.tls) ||
      before.timeouts.masterConnectMs !== settings.timeouts.masterConnectMs
    ) {
      this.ready?.settingsChanged();
    }
    if (before.whenNoReplica === "master" && settings.whenNoReplica !== "master") {
      // Reads may no longer go to the master: the clients it was given leave it.
      const closed = this.toMaster.closeAll();
      this.plane.recordReloadCut(
        `port ${settings.port}`,
        "the master",
        `whenNoReplica is ${settings.whenNoReplica} now`,
        closed,
      );
      log.info(
        "Database {database}: whenNoReplica is {whenNoReplica} now on port {port}{cut}",
        {
          database: settings.name,
          whenNoReplica: settings.whenNoReplica,
          port: settings.port,
          clientsClosed: closed,
          cut: closed > 0
            ? `; closed ${plural(closed, "read client connection")} to the master`
            : "",
        },
      );
    }
    // A new lag bound applies to the replicas in use at the next check: run it now.
    if (settings.role === "replica") this.plane.wake(true);
  }

  /** Stops accepting, closes every tunnel and leaves the control plane. */
  stop(): void {
    this.#controller.abort();
  }

  /** Runs until `signal`: `outer` (the tunnel's) or this port's own {@linkcode Port.stop}. */
  async #run(shared: SharedParts, outer: AbortSignal, signal: AbortSignal): Promise<void> {
    const settings = this.#settings;
    log.info("Database {database}: listening on {listen}{purpose}", {
      database: settings.name,
      listen: formatAddress({ hostname: this.listen.hostname, port: this.listen.port }),
      port: this.listen.port,
      role: settings.role,
      purpose: settings.role === "replica" ? " for reads from its replicas" : "",
    });
    const serveOptions = {
      settings: () => this.#settings,
      route: this.route,
      stats: this.stats,
      registry: this.toMaster,
      ...(this.toReplicas ? { replicaRegistry: this.toReplicas } : {}),
      buffers: shared.buffers,
      ...(this.ready ? { ready: this.ready } : {}),
      anyReady: shared.anyReady,
      slots: shared.slots,
      // The port's count outlives a listener reopened after a failure.
      databaseSlots: this.#slots,
    };
    // Stopping closes every tunnel at once: the accept loop then waits for their handlers to end.
    let closed = 0;
    const closeTunnels = () => {
      closed += this.toMaster.closeAll() + (this.toReplicas?.closeAll() ?? 0);
    };
    signal.addEventListener("abort", closeTunnels, { once: true });
    try {
      await Promise.all([
        this.ready?.run(signal),
        supervise(
          async (s) => {
            if (this.#listener.closed && !s.aborted) {
              // The failed loop closed its port: open it again.
              const reopened = await openWithRetry(this.#settings, "restart", s);
              if (!reopened) {
                throw new Error(
                  `${
                    formatAddress({ hostname: settings.bind, port: settings.port })
                  } could not be opened again; retrying`,
                );
              }
              if (s.aborted) {
                // Stopped (a reload) while the port was opening: let it go for whoever takes it next.
                reopened.close();
                return;
              }
              this.#listener = reopened;
            }
            await this.#listener.serve(serveOptions, s);
          },
          signal,
          {
            onFailure: (error, ms) =>
              log.error(
                "Database {database}: the accept loop failed unexpectedly: {error}; restarting in {ms} ms",
                {
                  database: settings.name,
                  error: error instanceof Error ? (error.stack ?? error.message) : String(error),
                  ms,
                },
              ),
          },
        ),
      ]);
    } finally {
      signal.removeEventListener("abort", closeTunnels);
      this.#listener.close();
      closeTunnels();
      this.route[Symbol.dispose]();
      // Stopped alone, not with the tunnel: a reload removed or replaced the entry.
      if (this.#controller.signal.aborted && !outer.aborted) {
        this.plane.recordReloadCut(
          `port ${settings.port}`,
          "every node",
          `port ${settings.port} removed or replaced`,
          closed,
        );
      }
      log.info("Database {database}: port {port} stopped{cut}", {
        database: settings.name,
        port: settings.port,
        role: settings.role,
        clientsClosed: closed,
        cut: closed > 0 ? `; closed ${plural(closed, "client connection")}` : "",
      });
    }
  }
}

/**
 * Opens a port that was just let go of (by the old config, or by a failed
 * accept loop), retrying briefly; logs and returns nothing on failure.
 */
export async function openWithRetry(
  database: DatabaseConfig,
  why: "reload" | "restart",
  signal: AbortSignal,
): Promise<DatabaseListener | undefined> {
  for (let attempt = 1;; attempt++) {
    if (signal.aborted) return undefined;
    try {
      return DatabaseListener.open(database);
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
