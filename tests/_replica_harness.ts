/**
 * Test utility: the read-port side of a real ControlPlane, with fake Sentinels
 * (S1's view of the master, which the test moves, and their replica list),
 * fake ROLE answers that a test can hold back, and fake registries, so that
 * races (an event during a check, a master change during a check) can be set
 * up exactly. One read port (port 6381) is attached; its clients sent to the
 * master (`whenNoReplica: "master"`) are in `masterRegistry`. The master is
 * decided by the plane's real master watcher from S1's view and the master's
 * ROLE, which goes through the same fake nodes as the replicas' (or, with
 * `realProbe`, through the plane's own RoleProbe to real sockets). Every wait
 * is on an event (a check ending, a ROLE call, a change of state), never on a
 * time window. Used by replica_view_test.ts and replica_view_hostile_test.ts.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type Address, formatAddress, sameAddress } from "../src/shared/address.ts";
import { masterSettingsOf } from "../src/shared/master_settings.ts";
import { type DatabaseConfig, DEFAULT_TIMEOUTS } from "../src/shared/settings.ts";
import { supervise } from "../src/shared/io.ts";
import { ControlPlane, type PortRoute } from "../src/control/control_plane.ts";
import type { SentinelView } from "../src/control/master_agreement.ts";
import type { ReplicaStatus } from "../src/control/replica_view.ts";
import type { RoleCheck, RoleChecker } from "../src/control/role_probe.ts";
import type { KnownSentinel, ReplicaInfo } from "../src/control/sentinel_client.ts";
import type { SentinelEvent } from "../src/control/sentinel_events.ts";

export const M: Address = { hostname: "10.0.0.1", port: 6379 };
export const R1: Address = { hostname: "10.0.0.2", port: 6379 };
export const R2: Address = { hostname: "10.0.0.3", port: 6379 };
export const F: Address = { hostname: "10.6.6.6", port: 6379 };
export const S1: Address = { hostname: "10.0.0.9", port: 26379 };
/** Another Sentinel watching the master, discovered: only its events reach the plane. */
export const S2: Address = { hostname: "10.0.0.8", port: 26379 };

/** The master's offset in every scenario; lags are counted from it. */
export const OFFSET = 10_000_000;
export const MAX_LAG = 1000;
/** Long enough that a test which passes cannot have waited for a poll. */
export const HOUR_MS = 3_600_000;

/** The read port's entry. */
export const DATABASE: DatabaseConfig = {
  name: "mymaster",
  bind: "127.0.0.1",
  port: 6381,
  role: "replica",
  maxLagBytes: MAX_LAG,
  whenNoReplica: "reject",
  timeouts: { ...DEFAULT_TIMEOUTS, pollIntervalMs: 20 },
  maxClients: 100,
  preconnect: 0,
  tcpKeepAlive: true,
};

/**
 * What the one configured Sentinel, S1, says of the master: the test moves it.
 * The plane confirms the node it names once that node's ROLE says `master`.
 */
export class FakeMaster {
  /** The node S1 names; `undefined` makes S1 fail (no reply). */
  address: Address | undefined;
  epoch = 1;
  /** S1's flags for the master, such as `failover_in_progress`. */
  flags: string[] = ["master"];
  /** S1's failover-timeout. */
  failoverTimeoutMs = 180_000;

  /**
   * S1 names `address` at a newer config-epoch (a failover), or stops
   * answering. Setting the node's ROLE is the test's.
   */
  set(address: Address | undefined): void {
    if (address && this.address && !sameAddress(address, this.address)) this.epoch++;
    this.address = address;
    this.flags = ["master"];
  }

  /** S1 reports a failover of the master it names under way: the plane holds its clients. */
  failover(): void {
    this.flags = ["master", "failover_in_progress"];
  }

  view(): SentinelView {
    const address = this.address;
    return {
      sentinel: S1,
      origin: "configured",
      answer: address
        ? {
          kind: "master",
          address,
          epoch: this.epoch,
          flags: [...this.flags],
          failoverTimeoutMs: this.failoverTimeoutMs,
        }
        : { kind: "failed", detail: "no reply within 500 ms" },
    };
  }
}

/** The Sentinels: S1's view of the master, and what `SENTINEL replicas` answers. */
export class FakeSentinels {
  readonly master = new FakeMaster();
  /** What `SENTINEL replicas` answers; `undefined` is no Sentinel answering. */
  listed: ReplicaInfo[] | undefined = [];
  /** While set, `SENTINEL replicas` hangs until it settles (a hung Sentinel, up to its deadline). */
  gate: Promise<void> | undefined;
  /**
   * How many times SENTINEL replicas was asked: once per check that judges the
   * replicas (a check that finds the last one's replica stage still running
   * leaves the replicas to it).
   */
  calls = 0;
  /** How many times the master's views were asked: once per check. */
  viewCalls = 0;
  #viewWaiters: (() => void)[] = [];
  readonly #known: KnownSentinel = {
    address: S1,
    origin: "configured",
    lastError: null,
    lastReplyAt: undefined,
    errors: 0,
    failuresInRow: 0,
    subscribed: true,
  };

  masterViews(): Promise<SentinelView[]> {
    this.viewCalls++;
    for (const resolve of this.#viewWaiters.splice(0)) resolve();
    return Promise.resolve([this.master.view()]);
  }

  /** Resolves the next time the master's views are asked: when the next check begins. */
  nextViews(): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#viewWaiters.push(resolve);
    return timeout(promise, "the next check");
  }

  async replicas(_name: string, signal: AbortSignal): Promise<ReplicaInfo[] | undefined> {
    this.calls++;
    if (this.gate) {
      await Promise.race([
        this.gate,
        new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true })),
      ]);
    }
    return this.listed && [...this.listed];
  }

  discoverSentinels(): Promise<Address[]> {
    return Promise.resolve([]);
  }

  watching(): readonly Readonly<KnownSentinel>[] {
    return [this.#known];
  }
}

export function info(
  replica: Address,
  { flags = [] as string[], link = "ok" as string | null } = {},
): ReplicaInfo {
  return {
    address: formatAddress(replica),
    replica,
    flags: ["slave", ...flags],
    masterLinkStatus: link,
    replicationOffset: OFFSET,
    reportedBy: formatAddress(S1),
  };
}

/**
 * ROLE answers by address, and every call in order. An address not set is
 * unreachable. A held address answers, with what was set when it was asked,
 * only once released.
 */
export class FakeNodes {
  readonly asked: string[] = [];
  readonly #answers = new Map<string, RoleCheck>();
  readonly #gates = new Map<string, Promise<void>>();
  readonly #releases: (() => void)[] = [];
  #askWaiters: { key: string; resolve: () => void }[] = [];

  set(address: Address, answer: RoleCheck): void {
    this.#answers.set(formatAddress(address), answer);
  }

  /** Calls to `address` from now on wait for the function returned. */
  hold(address: Address): () => void {
    const key = formatAddress(address);
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#gates.set(key, promise);
    const release = () => {
      if (this.#gates.get(key) === promise) this.#gates.delete(key);
      resolve();
    };
    this.#releases.push(release);
    return release;
  }

  releaseAll(): void {
    for (const release of this.#releases.splice(0)) release();
  }

  /** Resolves at the next ROLE call to `address`. */
  asks(address: Address): Promise<void> {
    const key = formatAddress(address);
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#askWaiters.push({ key, resolve });
    return timeout(promise, `a ROLE call to ${key}`);
  }

  readonly check: RoleChecker = async (address, signal) => {
    const key = formatAddress(address);
    this.asked.push(key);
    const answer = this.#answers.get(key) ??
      { kind: "unreachable", detail: `ROLE check failed: ${key}: connection refused` };
    const gate = this.#gates.get(key);
    this.#askWaiters = this.#askWaiters.filter((w) => {
      if (w.key !== key) return true;
      w.resolve();
      return false;
    });
    if (gate) {
      await Promise.race([
        gate,
        new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true })),
      ]);
    }
    return answer;
  };
}

/** A port's live clients, by node; records every closeTo. */
export class FakeRegistry {
  readonly cuts: { address: string; closed: number }[] = [];
  readonly #clients = new Map<string, number>();

  attach(address: Address, count: number): void {
    const key = formatAddress(address);
    this.#clients.set(key, (this.#clients.get(key) ?? 0) + count);
  }

  /** How many clients of `address` are still open. */
  live(address: Address): number {
    return this.#clients.get(formatAddress(address)) ?? 0;
  }

  closeTo(address: Address): number {
    const key = formatAddress(address);
    const closed = this.#clients.get(key) ?? 0;
    this.#clients.delete(key);
    this.cuts.push({ address: key, closed });
    return closed;
  }

  closeAllExcept(address: Address): number {
    let closed = 0;
    for (const key of [...this.#clients.keys()]) {
      if (key !== formatAddress(address)) closed += this.closeTo(this.#parse(key));
    }
    return closed;
  }

  #parse(key: string): Address {
    const colon = key.lastIndexOf(":");
    return { hostname: key.slice(0, colon), port: Number(key.slice(colon + 1)) };
  }

  /** How many clients each closeTo of `address` closed, from the `from`th call on. */
  cutsOf(address: Address, from = 0): number[] {
    return this.cuts.slice(from).filter((c) => c.address === formatAddress(address))
      .map((c) => c.closed);
  }
}

export function masterRole(offset: number, replicas: Address[]): RoleCheck {
  return {
    kind: "role",
    role: "master",
    asMaster: { offset, replicas: replicas.map((address) => ({ address, offset })) },
  };
}

export function replicaRole(master: Address, offset = OFFSET, state = "connected"): RoleCheck {
  return { kind: "role", role: "slave", asReplica: { master, state, offset } };
}

export function timeout<T>(promise: Promise<T>, what: string, ms = 3000): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface Harness {
  /** The name's control plane, running. */
  plane: ControlPlane;
  /** The read port's route: what its listener asks. */
  watcher: PortRoute;
  /** What S1 says of the master; the plane confirms the node it names when its ROLE says master. */
  master: FakeMaster;
  sentinels: FakeSentinels;
  nodes: FakeNodes;
  /** The read port's clients of replicas. */
  registry: FakeRegistry;
  /** The read port's clients sent to the master (`whenNoReplica: "master"`). */
  masterRegistry: FakeRegistry;
  /** Changes the read port's own settings, as a reload of the port does. */
  setPort(database: DatabaseConfig): void;
  /**
   * Resolves when `count` more checks have ended, each with the replica stage
   * under way when it ended. After a change, the second check to end is one
   * that started after it. A check made while a stage hangs (a held ROLE)
   * leaves the replicas to that stage: wait with {@linkcode judged} instead.
   */
  rounds(count?: number): Promise<void>;
  /** Delivers `event` from S1 (configured), or from `from` (a discovered Sentinel). */
  event(event: SentinelEvent, from?: Address): void;
}

/** M named and confirmed, listing R1 and R2, both following it at its offset. */
export function healthy(h: Harness): void {
  h.master.set(M);
  h.nodes.set(M, masterRole(OFFSET, [R1, R2]));
  h.nodes.set(R1, replicaRole(M));
  h.nodes.set(R2, replicaRole(M));
  h.sentinels.listed = [info(R1), info(R2)];
}

/**
 * Runs `body` against a running plane with a read port attached.
 * `checkRole` defaults to the fake nodes' answers; `setup` defaults to
 * {@linkcode healthy}, or to none when a `checkRole` is given or `realProbe`
 * is set.
 */
export async function withWatcher(
  options: {
    database?: Partial<DatabaseConfig>;
    setup?: (h: Harness) => void;
    checkRole?: RoleChecker;
    /**
     * Ask real nodes, over the plane's own RoleProbe (persistent connections,
     * a node that closes one is checked again): the fake nodes are unused.
     * Tests with it open sockets; they turn the sanitizers off.
     */
    realProbe?: boolean;
  },
  body: (h: Harness) => Promise<void>,
): Promise<void> {
  const database = { ...DATABASE, ...options.database };
  const sentinels = new FakeSentinels();
  const nodes = new FakeNodes();
  const registry = new FakeRegistry();
  const masterRegistry = new FakeRegistry();
  const plane = new ControlPlane(masterSettingsOf(database), {
    sentinels,
    ...(options.realProbe ? {} : { checkRole: options.checkRole ?? nodes.check }),
    holdCheckIntervalMs: 20,
  });
  let settings = database;
  const watcher = plane.attach({
    label: `port ${database.port}`,
    settings: () => settings,
    toMaster: masterRegistry,
    toReplicas: registry,
  });
  const controller = new AbortController();
  const harness: Harness = {
    plane,
    watcher,
    master: sentinels.master,
    sentinels,
    nodes,
    registry,
    masterRegistry,
    setPort: (next) => settings = next,
    async rounds(count = 2) {
      for (let i = 0; i < count; i++) {
        await timeout(plane.nextResolution(10_000, controller.signal), "a check");
      }
    },
    event: (event, from = S1) =>
      plane.onEvent(event, {
        address: from,
        origin: sameAddress(from, S1) ? "configured" : "discovered",
      }),
  };
  (options.setup ?? (options.checkRole || options.realProbe ? undefined : healthy))?.(harness);
  const crashes: unknown[] = [];
  const running = supervise((signal) => plane.run(signal), controller.signal, {
    onFailure: (error) => crashes.push(error),
  });
  try {
    await body(harness);
  } finally {
    controller.abort();
    nodes.releaseAll();
    await running;
    watcher[Symbol.dispose]();
  }
  assert.deepEqual(crashes, [], "the check loop failed unexpectedly");
}

/** Resolves once `done()` holds, checking it at each change of the plane's state. */
export async function until(h: Harness, what: string, done: () => boolean): Promise<void> {
  while (!done()) await timeout(h.plane.nextChange, what);
}

/**
 * Resolves once every replica shown has a verdict made against the master
 * confirmed now, whichever check (or replica stage) made it.
 */
export function judged(h: Harness): Promise<void> {
  return until(h, "the replicas judged against the master confirmed now", () => {
    const master = h.plane.master;
    const replicas = h.watcher.replicas;
    return master !== undefined && replicas.length > 0 &&
      replicas.every((r) => r.confirmation === master.confirmation);
  });
}

/**
 * S1 reports a failover of the master under way, and the plane has seen it:
 * it holds, with no master confirmed, until S1 names a master again without
 * one. Its checks meanwhile guard the replicas in use (they run every 20 ms).
 */
export async function failoverUnderWay(h: Harness): Promise<void> {
  h.master.failover();
  await until(h, "the failover hold", () => h.plane.failover !== undefined);
}

/** The replicas a new client may go to now, as `host:port`; none when targets are the master's. */
export function readable(h: Harness): string[] {
  const targets = h.watcher.targets;
  return targets?.kind === "replica" ? targets.addresses.map(formatAddress) : [];
}

export function statusOf(h: Harness, address: Address): ReplicaStatus {
  const status = h.watcher.replicas.find((r) =>
    formatAddress(r.address) === formatAddress(address)
  );
  assert.ok(status, `no status for ${formatAddress(address)}`);
  return status;
}

export const both = [R1, R2].map(formatAddress);

/** R1 and R2 usable, and two clients reading from R1. */
export async function servingBoth(h: Harness): Promise<void> {
  await h.rounds(1);
  assert.deepEqual(readable(h), both);
  h.registry.attach(R1, 2);
}

export type EventOf<K extends SentinelEvent["kind"]> = Extract<SentinelEvent, { kind: K }>;

export const selectedSlave = (replica: Address): EventOf<"promotion"> => ({
  kind: "promotion",
  channel: "+selected-slave",
  master: DATABASE.name,
  masterAddress: M,
  replica,
});
export const switchTo = (to: Address): SentinelEvent => ({
  kind: "switch-master",
  master: DATABASE.name,
  from: M,
  to,
});
export const sdown = (instance: Address): EventOf<"instance"> => ({
  kind: "instance",
  change: "down",
  instanceType: "slave",
  instance,
  master: DATABASE.name,
});
