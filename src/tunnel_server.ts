/**
 * Starts everything for a config: one listener, registry and master watcher
 * per database, and one Sentinel client shared by them, with a `+switch-master`
 * subscription on every known Sentinel.
 *
 * ```ts ignore
 * const controller = new AbortController();
 * const server = await TunnelServer.start(config, { signal: controller.signal });
 * // ...
 * controller.abort();
 * await server.done;
 * ```
 *
 * It does not reload its config, serve an admin API, or balance reads across
 * replicas: every client goes to the confirmed master.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { formatAddress } from "./address.ts";
import type { TunnelConfig } from "./config.ts";
import { ConnectionRegistry } from "./connection_registry.ts";
import { DatabaseListener } from "./database_listener.ts";
import { MasterWatcher } from "./master_watcher.ts";
import type { Tunnel } from "./pipe.ts";
import { SentinelClient } from "./sentinel_client.ts";

const log = getLogger(["sentinel-tunnel", "server"]);

/** Options for {@linkcode TunnelServer.start}. */
export interface TunnelServerOptions {
  /** The buffer size of each tunnel direction. */
  bufferSize?: number;
  /** Stops accepting, closes every tunnel and ends the control plane. */
  signal: AbortSignal;
}

/** One database's running parts. */
export interface DatabaseRuntime {
  readonly listener: DatabaseListener;
  readonly watcher: MasterWatcher;
  readonly registry: ConnectionRegistry<Tunnel>;
}

/** The running tunnel. */
export class TunnelServer {
  readonly sentinels: SentinelClient;
  readonly databases: readonly DatabaseRuntime[];
  /** Settles when the signal has aborted and everything has stopped. */
  readonly done: Promise<void>;

  private constructor(
    sentinels: SentinelClient,
    databases: DatabaseRuntime[],
    done: Promise<void>,
  ) {
    this.sentinels = sentinels;
    this.databases = databases;
    this.done = done;
  }

  /**
   * Opens every database's port, then starts the control plane and the accept
   * loops. If a port cannot be opened, the ones already opened are closed.
   *
   * @throws {ListenError} naming the port and the cause
   */
  static start(
    config: TunnelConfig,
    options: TunnelServerOptions,
  ): TunnelServer {
    const { signal } = options;
    const sentinels = new SentinelClient(config.sentinels, {
      connectTimeoutMs: config.timeouts.sentinelConnectMs,
      replyTimeoutMs: config.timeouts.sentinelReplyMs,
      auth: config.sentinelAuth,
    });
    const databases: DatabaseRuntime[] = [];
    try {
      for (const database of config.databases) {
        const registry = new ConnectionRegistry<Tunnel>();
        const watcher = new MasterWatcher(database, { sentinels, registry });
        const listener = DatabaseListener.open(database, {
          watcher,
          registry,
          ...(options.bufferSize === undefined ? {} : { bufferSize: options.bufferSize }),
        });
        databases.push({ listener, watcher, registry });
      }
    } catch (error) {
      for (const { listener } of databases) listener.close();
      throw error;
    }
    const byName = new Map(
      databases.map((d) => [d.watcher.database.name, d.watcher]),
    );
    sentinels.subscribe({
      onSwitchMaster: (name, address, sentinel) =>
        byName.get(name)?.onSwitchMaster(address, sentinel),
      // Messages may have been missed while unsubscribed: resync with a fresh query.
      onSubscribed: () => byName.forEach((watcher) => watcher.wake()),
    }, signal);
    for (const { listener } of databases) {
      log.info("Database {database}: listening on {listen}", {
        database: listener.database.name,
        listen: formatAddress({
          hostname: listener.address.hostname,
          port: listener.address.port,
        }),
      });
    }
    const done = Promise.all([
      ...databases.map((d) => d.watcher.run(signal)),
      ...databases.map((d) => d.listener.serve(signal)),
      closeTunnelsOnAbort(databases, signal),
      sentinels.closed(),
    ]).then(() => {});
    return new TunnelServer(sentinels, databases, done);
  }
}

function closeTunnelsOnAbort(
  databases: readonly DatabaseRuntime[],
  signal: AbortSignal,
): Promise<void> {
  return new Promise((resolve) => {
    const closeAll = () => {
      let closed = 0;
      for (const { registry } of databases) closed += registry.closeAll();
      log.info("Shutting down: closed {closed} tunnels", { closed });
      resolve();
    };
    if (signal.aborted) closeAll();
    else signal.addEventListener("abort", closeAll, { once: true });
  });
}
