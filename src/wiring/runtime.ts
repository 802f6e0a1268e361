/**
 * The wiring: the running tunnel for a config. One control plane per Sentinel
 * master name, one port per configured entry attached to its name's plane,
 * one Sentinel client shared by all, with an event subscription on every
 * known Sentinel whose events go to the plane of the name they concern, and
 * one hook queue per name. It also applies a reloaded config, at two levels:
 * names (planes started, stopped, or given new settings) and ports
 * (listeners opened, closed, moved, or given new settings).
 *
 * ```ts ignore
 * const controller = new AbortController();
 * const runtime = Runtime.start(config, { signal: controller.signal });
 * await runtime.reload(nextConfig); // on SIGHUP
 * controller.abort();
 * await runtime.done;
 * ```
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import {
  type MasterSettings,
  sameAddresses,
  sameCredentials,
  sameTlsClient,
} from "../shared/master_settings.ts";
import type {
  DatabaseConfig,
  TlsClientSettings,
  TlsServerSettings,
  TunnelConfig,
} from "../shared/settings.ts";
import { supervise } from "../shared/io.ts";
import { ListenError } from "../shared/errors.ts";
import { EventJournal } from "../shared/journal.ts";
import { MasterStats } from "../shared/stats.ts";
import { checkKeyPair } from "../shared/tls_stream.ts";
import { ControlPlane } from "../control/control_plane.ts";
import { SentinelClient, sentinelClientOptions } from "../control/sentinel_client.ts";
import { ClientSlots } from "../data/client_slots.ts";
import { DatabaseListener, type Shedder } from "../data/database_listener.ts";
import { type BufferSizes, TunnelBuffers } from "../data/tunnel.ts";
import { HookQueue } from "../ops/hooks.ts";
import type { RunningTunnel } from "../ops/running.ts";
import { openWithRetry, Port, type SharedParts } from "./port.ts";
import { entryKey, entryLabel, mastersOf, planNames, planPorts } from "./reload_plan.ts";

const log = getLogger(["sentinel-tunnel", "server"]);

/** Options for {@linkcode Runtime.start}. */
export interface RuntimeOptions {
  /** Buffer sizes for each tunnel direction. @default {DEFAULT_BUFFER_SIZES} */
  buffers?: BufferSizes;
  /** Stops accepting, closes every tunnel and ends every control plane. */
  signal: AbortSignal;
}

/** What a reload did. Entries by name, with ` (replicas)` for a read port, and its port when needed. */
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
  /** Master names whose control plane started, stopped, or took new settings. */
  readonly masters: { added: string[]; removed: string[]; updated: string[] };
  readonly sentinelsChanged: boolean;
}

/** One master name's running parts. */
interface RunningName {
  readonly plane: ControlPlane;
  /** The name's hooks, run once per change whatever its ports. */
  readonly hooks: HookQueue;
  readonly controller: AbortController;
}

/** The running tunnel; see the module doc. */
export class Runtime implements RunningTunnel {
  readonly sentinels: SentinelClient;
  readonly journal = new EventJournal();
  readonly startedAt = Date.now();
  /** Settles when the signal has aborted and everything has stopped. */
  readonly done: Promise<void>;
  readonly #signal: AbortSignal;
  readonly #shared: SharedParts;
  /** The control planes, by master name. */
  readonly #names = new Map<string, RunningName>();
  /** The ports, by listen address, in config order. */
  #ports = new Map<string, Port>();
  readonly #running = new Set<Promise<void>>();
  #config: TunnelConfig;

  private constructor(config: TunnelConfig, options: RuntimeOptions) {
    this.#config = config;
    this.#signal = options.signal;
    const anyReady: Shedder = {
      shedOne: () => {
        for (const port of this.#ports.values()) if (port.ready?.shedOne()) return true;
        return false;
      },
    };
    this.#shared = {
      buffers: new TunnelBuffers(options.buffers),
      slots: new ClientSlots(config.maxClients),
      anyReady,
    };
    this.sentinels = new SentinelClient(config.sentinels, sentinelClientOptions(config));
    this.done = this.#untilStopped();
  }

  /**
   * Opens every entry's port, then starts the control planes and the accept
   * loops. If a port cannot be opened, the ones already opened are closed.
   *
   * @throws {ListenError} naming the port and the cause, or a certificate that does not fit its key
   */
  static start(config: TunnelConfig, options: RuntimeOptions): Runtime {
    checkCertificates(config);
    const runtime = new Runtime(config, options);
    const listeners = openListeners(config.databases);
    runtime.sentinels.subscribe({
      onEvent: (event, sentinel) =>
        runtime.#names.get(event.master)?.plane.onSentinelEvent(event, sentinel),
      // Messages may have been missed while unsubscribed: resync with a fresh check.
      onSubscribed: () => runtime.#names.forEach(({ plane }) => plane.wake()),
    }, options.signal);
    for (const settings of mastersOf(config).values()) runtime.#startName(settings);
    config.databases.forEach((database, i) => runtime.#startPort(database, listeners[i]!));
    return runtime;
  }

  /** The config in force. */
  get config(): TunnelConfig {
    return this.#config;
  }

  /** One control plane per master name, in config order. */
  get planes(): ControlPlane[] {
    return [...this.#names.values()].map((n) => n.plane);
  }

  /** The running ports, in config order. */
  get ports(): Port[] {
    return [...this.#ports.values()];
  }

  /**
   * Applies a new config at two levels. Names: a new name's control plane
   * starts, a name no entry serves any more stops, and a name's new settings
   * (credentials, TLS, fence, hook) apply in place. Ports: added entries start
   * listening, removed ones stop, ones that moved to another listen address
   * are replaced, and the others keep their connections, taking new settings
   * in place. If a port the old config does not hold cannot be opened,
   * nothing changes. A port the old config holds (an entry renamed, or moved
   * onto another's port) is opened once the old listener has let go of it; if
   * that fails, the error is logged and that entry is not served.
   *
   * @throws {ListenError} naming the port and the cause; the old config keeps running
   */
  async reload(next: TunnelConfig): Promise<ReloadSummary> {
    checkCertificates(next);
    const names = planNames(
      new Map([...this.#names].map(([name, { plane }]) => [name, plane.settings])),
      next,
    );
    const ports = planPorts(
      new Map([...this.#ports].map(([key, port]) => [key, port.settings])),
      this.#config,
      next,
    );
    const sentinelsChanged = !sameSentinelSettings(this.#config, next);
    // A port the old config holds is opened once its listener lets go; any other new one now,
    // before anything changes, so that a port that cannot be opened refuses the whole reload.
    const leaving = ports.leaving.map((key) => this.#ports.get(key)!);
    const heldByLeaving = (d: DatabaseConfig) => leaving.some((p) => p.settings.port === d.port);
    const openNow = ports.starting.filter((d) => !heldByLeaving(d));
    const opened = openListeners(openNow);
    const listeners = new Map(opened.map((listener, i) => [entryKey(openNow[i]!), listener]));

    this.#config = next;
    this.#shared.slots.limit = next.maxClients;
    if (sentinelsChanged) this.sentinels.update(next.sentinels, sentinelClientOptions(next));
    for (const settings of names.added) this.#startName(settings);
    for (const settings of names.updated) {
      const { plane, hooks } = this.#names.get(settings.name)!;
      plane.update(settings);
      hooks.hook = settings.onMasterChange;
    }
    if (sentinelsChanged) {
      for (const [name, { plane }] of this.#names) {
        if (!names.added.some((s) => s.name === name)) plane.sentinelsChanged();
      }
    }
    for (const port of leaving) this.#stopPort(port);
    for (const database of ports.updating) this.#ports.get(entryKey(database))!.update(database);
    for (const name of names.removed) {
      // No entry serves the name any more: its plane stops, and its Sentinels need not be watched.
      this.#names.get(name)!.controller.abort();
      this.#names.delete(name);
      this.sentinels.forget(name);
    }
    // Ports the old config held are free once their accept loops have ended.
    await Promise.all(leaving.map((p) => p.acceptEnded));
    const failed: string[] = [];
    for (const database of ports.starting) {
      const key = entryKey(database);
      const listener = listeners.get(key) ?? await openWithRetry(database, "reload", this.#signal);
      if (listener) this.#startPort(database, listener);
      else failed.push(entryLabel(database, next.databases));
    }
    // A name whose every port failed to open is served nowhere: its plane stops until a reload.
    const added = names.added.map((s) => s.name);
    for (const name of [...added]) {
      const running = this.#names.get(name);
      if (!running || running.plane.ports.length > 0) continue;
      running.controller.abort();
      this.#names.delete(name);
      this.sentinels.forget(name);
      added.splice(added.indexOf(name), 1);
    }
    // Keep config order, for the admin API.
    const order = next.databases.map(entryKey);
    this.#ports = new Map(
      [...this.#ports].sort(([a], [b]) => order.indexOf(a) - order.indexOf(b)),
    );
    return {
      added: ports.added,
      removed: ports.removed,
      replaced: ports.replaced,
      updated: ports.updated,
      unchanged: ports.unchanged,
      failed,
      masters: {
        added,
        removed: names.removed,
        updated: names.updated.map((s) => s.name),
      },
      sentinelsChanged,
    };
  }

  #startName(settings: MasterSettings): void {
    const controller = new AbortController();
    const signal = AbortSignal.any([this.#signal, controller.signal]);
    const stats = new MasterStats();
    const hooks = new HookQueue(settings.onMasterChange, signal, stats);
    const plane = new ControlPlane(settings, {
      sentinels: this.sentinels,
      journal: this.journal,
      stats,
      onMasterChange: (change) => hooks.push(change),
    });
    this.#names.set(settings.name, { plane, hooks, controller });
    // One name's bug restarts that name's loop; the others and the admin API go on.
    this.#track(
      supervise((s) => plane.run(s), signal, {
        onFailure: (error, ms) =>
          log.error(
            "Database {database}: the check loop failed unexpectedly: {error}; restarting in {ms} ms",
            {
              database: settings.name,
              error: error instanceof Error ? (error.stack ?? error.message) : String(error),
              ms,
            },
          ),
      }).then(() => hooks.idle()),
    );
  }

  #startPort(database: DatabaseConfig, listener: DatabaseListener): void {
    const name = this.#names.get(database.name);
    if (!name) throw new Error(`No control plane for master name "${database.name}"`);
    const port = new Port(database, listener, name.plane, this.#shared, this.#signal);
    this.#ports.set(entryKey(database), port);
    this.#track(port.done);
  }

  #stopPort(port: Port): void {
    const key = entryKey(port.settings);
    if (this.#ports.get(key) === port) this.#ports.delete(key);
    port.stop();
  }

  #track(done: Promise<void>): void {
    const tracked = done.finally(() => this.#running.delete(tracked));
    this.#running.add(tracked);
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

/** Opens every port, or none: if one fails, those already opened are closed. */
function openListeners(databases: readonly DatabaseConfig[]): DatabaseListener[] {
  const opened: DatabaseListener[] = [];
  try {
    for (const database of databases) opened.push(DatabaseListener.open(database));
  } catch (error) {
    for (const listener of opened) listener.close();
    throw error;
  }
  return opened;
}

/** Whether the Sentinel client would be configured alike: list, credentials, TLS, deadlines, cap. */
function sameSentinelSettings(a: TunnelConfig, b: TunnelConfig): boolean {
  return sameAddresses(a.sentinels, b.sentinels) &&
    sameCredentials(a.sentinelAuth, b.sentinelAuth) &&
    sameTlsClient(a.sentinelTls, b.sentinelTls) &&
    a.timeouts.sentinelConnectMs === b.timeouts.sentinelConnectMs &&
    a.timeouts.sentinelReplyMs === b.timeouts.sentinelReplyMs &&
    a.maxSentinels === b.maxSentinels;
}

/**
 * Checks that every certificate fits its key, the clients' and the local ports': TLS would find
 * a client's only at the first connect, with an error that says nothing of which file is wrong.
 *
 * @throws {ListenError} naming the files; a reload is refused, a start fails
 */
function checkCertificates(config: TunnelConfig): void {
  // Settings objects are shared where an entry inherits them: each pair is checked once.
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
