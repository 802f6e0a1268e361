/**
 * The harness of the master-side tests of the control plane (master_watcher_test.ts,
 * failover_hold_test.ts, write_fence_test.ts, write_fence_hostile_test.ts, master_silence_test.ts,
 * sentinel_trust_test.ts...): a real ControlPlane with fake Sentinels and fake ROLE answers, so
 * that races which real processes hit only by chance can be set up exactly, and a master port
 * attached to it whose tunnels are fakes. Every wait is on an event (a check round ending, a ROLE
 * call, a tunnel closing), never on sampled state.
 */
import { type Address, formatAddress, sameAddress } from "../src/shared/address.ts";
import {
  type DatabaseConfig,
  DEFAULT_MAX_LAG_BYTES,
  DEFAULT_TIMEOUTS,
} from "../src/shared/settings.ts";
import { masterSettingsOf } from "../src/shared/master_settings.ts";
import { supervise } from "../src/shared/io.ts";
import { ConnectionRegistry, type RegisteredTunnel } from "../src/data/connection_registry.ts";
import type { SentinelOrigin, SentinelView } from "../src/control/master_agreement.ts";
import type { MasterChange } from "../src/control/master_watcher.ts";
import {
  ControlPlane,
  type PortLink,
  type PortRoute,
  type SentinelSource,
} from "../src/control/control_plane.ts";
import type { RoleCheck } from "../src/control/role_probe.ts";
import type { SentinelEvent } from "../src/control/sentinel_events.ts";
import type { KnownSentinel, ReplicaInfo } from "../src/control/sentinel_client.ts";

export const A: Address = { hostname: "10.0.0.1", port: 6379 };
export const B: Address = { hostname: "10.0.0.2", port: 6379 };
export const S1: Address = { hostname: "10.0.0.9", port: 26379 };
export const S2: Address = { hostname: "10.0.0.10", port: 26379 };
export const S3: Address = { hostname: "10.0.0.11", port: 26379 };
/** A discovered Sentinel: events from it carry the "discovered" origin (see Harness.event). */
export const LIAR: Address = { hostname: "10.6.6.7", port: 26379 };
/** A node that no configured Sentinel names: only a liar's word points at it. */
export const F: Address = { hostname: "10.6.6.6", port: 6379 };

export const DATABASE: DatabaseConfig = {
  name: "mymaster",
  bind: "127.0.0.1",
  port: 6380,
  role: "master",
  maxLagBytes: DEFAULT_MAX_LAG_BYTES,
  whenNoReplica: "reject",
  timeouts: { ...DEFAULT_TIMEOUTS, pollIntervalMs: 20 },
  maxClients: 100,
  preconnect: 0,
  tcpKeepAlive: true,
};

/** `+switch-master` of the harness's name from A to `to`. */
export function switchTo(to: Address): SentinelEvent {
  return { kind: "switch-master", master: DATABASE.name, from: A, to };
}

/** `+selected-slave` for a failover of `master`, naming no replica. */
export function promotion(master: Address): SentinelEvent {
  return {
    kind: "promotion",
    channel: "+selected-slave",
    master: DATABASE.name,
    masterAddress: master,
    replica: undefined,
  };
}

/** `-failover-abort-slave-timeout` for a failover of `master`. */
export function failoverEnd(master: Address): SentinelEvent {
  return {
    kind: "failover-end",
    channel: "-failover-abort-slave-timeout",
    master: DATABASE.name,
    masterAddress: master,
  };
}

/** One Sentinel's scripted answer. */
export type Script =
  | { address: Address; epoch: number; flags?: string[]; failoverTimeoutMs?: number }
  | { failed: string };

/** Sentinels whose answers the test sets; a round can be held until released. */
export class FakeSentinels implements SentinelSource {
  readonly #scripts = new Map<string, { sentinel: Address; origin: SentinelOrigin; s: Script }>();
  /** While set, rounds wait for it (with the answers they had when they started). */
  gate: PromiseWithResolvers<void> | undefined;
  /** How long each round takes to answer (a Sentinel's round trip); cut short by the abort. */
  delayMs = 0;
  /** What `replicas` answers. */
  replicaList: ReplicaInfo[] = [];
  rounds = 0;
  #roundWaiters: { at: number; resolve: () => void }[] = [];
  #startWaiters: (() => void)[] = [];

  say(sentinel: Address, script: Script, origin: SentinelOrigin = "configured"): void {
    this.#scripts.set(formatAddress(sentinel), { sentinel, origin, s: script });
  }

  /** Every configured Sentinel S1..S3 names `address` at `epoch`. */
  allSay(address: Address, epoch: number, flags: string[] = ["master"]): void {
    for (const s of [S1, S2, S3]) this.say(s, { address, epoch, flags });
  }

  async masterViews(_name: string, signal: AbortSignal): Promise<SentinelView[]> {
    const views = [...this.#scripts.values()].map(({ sentinel, origin, s }): SentinelView => ({
      sentinel,
      origin,
      answer: "failed" in s ? { kind: "failed", detail: s.failed } : {
        kind: "master",
        address: s.address,
        epoch: s.epoch,
        flags: s.flags ?? ["master"],
        failoverTimeoutMs: s.failoverTimeoutMs ?? 60_000,
      },
    }));
    for (const resolve of this.#startWaiters.splice(0)) resolve();
    if (this.delayMs > 0) await sleepFor(this.delayMs, signal);
    if (this.gate) {
      const gate = this.gate.promise;
      await Promise.race([
        gate,
        new Promise((resolve) => signal.addEventListener("abort", resolve)),
      ]);
    }
    this.rounds++;
    this.#roundWaiters = this.#roundWaiters.filter((w) => {
      if (this.rounds < w.at) return true;
      w.resolve();
      return false;
    });
    return views;
  }

  /** Resolves when `count` more rounds have returned their views. */
  moreRounds(count: number): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#roundWaiters.push({ at: this.rounds + count, resolve });
    return timeout(promise, `${count} more check rounds`);
  }

  /** Resolves when the next round starts. */
  nextRoundStarts(): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#startWaiters.push(resolve);
    return timeout(promise, "a check round to start");
  }

  discoverSentinels(): Promise<Address[]> {
    return Promise.resolve([]);
  }

  /** How many times SENTINEL replicas was asked. */
  replicaCalls = 0;

  replicas(): Promise<ReplicaInfo[]> {
    this.replicaCalls++;
    return Promise.resolve(this.replicaList);
  }

  /** Every scripted Sentinel, as the Sentinel client would know it. */
  watching(): readonly Readonly<KnownSentinel>[] {
    return [...this.#scripts.values()].map(({ sentinel, origin }) => ({
      address: sentinel,
      origin,
      lastError: null,
      lastReplyAt: undefined,
      errors: 0,
      failuresInRow: 0,
      subscribed: true,
    }));
  }
}

/**
 * ROLE answers by address, and every call in order. An address not listed is unreachable
 * (refused). Each answer may take `delayMs`.
 */
export class FakeNodes {
  readonly answers = new Map<string, RoleCheck>();
  readonly asked: string[] = [];
  /** How long each answer takes; cut short by the abort. */
  delayMs = 0;
  set(address: Address, answer: RoleCheck | string): void {
    this.answers.set(
      formatAddress(address),
      typeof answer === "string" ? { kind: "role", role: answer } : answer,
    );
  }
  /** While set, ROLE answers wait for it (with the answer set when they were asked). */
  gate: PromiseWithResolvers<void> | undefined;
  /** Nodes whose ROLE answers wait for their release (a hung node), or for the abort. */
  readonly held = new Map<string, PromiseWithResolvers<void>>();
  #askWaiters: (() => void)[] = [];
  readonly check = async (address: Address, signal: AbortSignal): Promise<RoleCheck> => {
    this.asked.push(formatAddress(address));
    const answer = this.answers.get(formatAddress(address)) ??
      { kind: "unreachable", detail: "refused" } as const;
    for (const resolve of this.#askWaiters.splice(0)) resolve();
    if (this.delayMs > 0) await sleepFor(this.delayMs, signal);
    if (this.gate) await this.gate.promise;
    const held = this.held.get(formatAddress(address));
    if (held) {
      await Promise.race([
        held.promise,
        new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true })),
      ]);
    }
    return answer;
  };
  /** Holds `address`'s ROLE answers until the function returned is called. */
  hold(address: Address): () => void {
    const held = Promise.withResolvers<void>();
    this.held.set(formatAddress(address), held);
    return () => {
      this.held.delete(formatAddress(address));
      held.resolve();
    };
  }
  /** Resolves at the next ROLE call. */
  nextAsk(): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#askWaiters.push(resolve);
    return timeout(promise, "a ROLE call");
  }
}

export class FakeTunnel implements RegisteredTunnel {
  readonly master: Address;
  readonly closed = Promise.withResolvers<void>();
  closes = 0;
  constructor(master: Address) {
    this.master = master;
  }
  close(): void {
    this.closes++;
    this.closed.resolve();
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleepFor(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
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

export interface Harness {
  /** The control plane of the name, running. */
  plane: ControlPlane;
  /** The route of the master port attached to it (port 6380). */
  route: PortRoute;
  /** The master port's tunnels. */
  registry: ConnectionRegistry<FakeTunnel>;
  sentinels: FakeSentinels;
  nodes: FakeNodes;
  /** The changes the plane reported for hooks, once each. */
  changes: MasterChange[];
  /** Failures of the check loop that supervise() restarted. */
  crashes: unknown[];
  /** Aborts when the body is done and the plane stops. */
  signal: AbortSignal;
  /** Resolves with the next confirmed master (now, if one is confirmed and `fresh` is false). */
  master(fresh?: boolean): Promise<Address>;
  /** Delivers `event` from `from`: "discovered" if `from` is LIAR, else "configured". */
  event(event: SentinelEvent, from: Address): void;
  /** A reload that gives the name `database`'s settings. */
  update(database: DatabaseConfig): void;
  /** Attaches another port of the name, with fake tunnels; detached when the body is done. */
  attachPort(database: DatabaseConfig): AttachedPort;
}

/** A port attached to the plane by a test: its route and its fake tunnels. */
export interface AttachedPort {
  readonly route: PortRoute;
  readonly toMaster: ConnectionRegistry<FakeTunnel>;
  readonly toReplicas: ConnectionRegistry<FakeTunnel>;
  /** Changes the port's own settings, as a reload of the port does. */
  settings: DatabaseConfig;
}

export async function withWatcher(
  setup: (sentinels: FakeSentinels, nodes: FakeNodes) => void,
  body: (h: Harness) => Promise<void>,
  database: DatabaseConfig = DATABASE,
): Promise<void> {
  const sentinels = new FakeSentinels();
  const nodes = new FakeNodes();
  setup(sentinels, nodes);
  const changes: MasterChange[] = [];
  const plane = new ControlPlane(masterSettingsOf(database), {
    sentinels,
    checkRole: nodes.check,
    onMasterChange: (change) => changes.push(change),
    holdCheckIntervalMs: 20,
  });
  const ports: PortRoute[] = [];
  const attachPort = (settings: DatabaseConfig): AttachedPort => {
    const toMaster = new ConnectionRegistry<FakeTunnel>();
    const toReplicas = new ConnectionRegistry<FakeTunnel>();
    const current = { settings };
    const link: PortLink = {
      label: `port ${settings.port}`,
      settings: () => current.settings,
      toMaster,
      toReplicas,
    };
    const route = plane.attach(link);
    ports.push(route);
    return {
      route,
      toMaster,
      toReplicas,
      get settings() {
        return current.settings;
      },
      set settings(next: DatabaseConfig) {
        current.settings = next;
      },
    };
  };
  const main = attachPort(database);
  const controller = new AbortController();
  const crashes: unknown[] = [];
  const running = supervise((signal) => plane.run(signal), controller.signal, {
    onFailure: (error) => crashes.push(error),
    backoffMs: 10,
  });
  const harness: Harness = {
    plane,
    route: main.route,
    registry: main.toMaster,
    sentinels,
    nodes,
    changes,
    crashes,
    signal: controller.signal,
    async master(fresh = false) {
      if (fresh) await sentinels.moreRounds(1);
      const master = await plane.waitForMaster(3000, controller.signal);
      if (!master) throw new Error(`no master confirmed: ${plane.problem?.detail}`);
      return master.address;
    },
    event: (event, from) =>
      plane.onEvent(event, {
        address: from,
        origin: sameAddress(from, LIAR) ? "discovered" : "configured",
      }),
    update: (next) => plane.update(masterSettingsOf(next)),
    attachPort,
  };
  try {
    await body(harness);
  } finally {
    controller.abort();
    sentinels.gate?.resolve();
    nodes.gate?.resolve();
    await running;
    for (const route of ports) route[Symbol.dispose]();
  }
}

export function attach(h: Harness, address: Address): FakeTunnel {
  const tunnel = new FakeTunnel(address);
  h.registry.add(tunnel);
  return tunnel;
}

export const FENCED: DatabaseConfig = { ...DATABASE, fence: { afterMs: 150 } };

/** Every configured Sentinel (or those in `which`) fails: the tunnel is cut off from them. */
export function sentinelsGone(h: Harness, which: Address[] = [S1, S2, S3]): void {
  for (const s of which) h.sentinels.say(s, { failed: "no reply within 500 ms" });
}

/** Resolves when the plane's problem is of `kind`; fails after `ms`. */
export async function problemOf(h: Harness, kind: string, ms = 3000): Promise<void> {
  const deadline = performance.now() + ms;
  while (h.plane.problem?.kind !== kind) {
    if (performance.now() > deadline) {
      throw new Error(`no ${kind} problem; it is ${JSON.stringify(h.plane.problem)}`);
    }
    await timeout(h.plane.nextChange, `a change to a ${kind} problem`);
  }
}
