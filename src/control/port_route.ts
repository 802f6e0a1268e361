/**
 * A port's route: what a port's listener asks the control plane of its master
 * name (where a new client may go, why nowhere, how long to wait), answered
 * from the name's state with the port's own rules: a master port goes to the
 * confirmed master; a read port to the replicas usable under its own
 * `maxLagBytes`, or to the master with `whenNoReplica: "master"`. Also what a
 * port tells the plane when it attaches, so that the plane can cut its
 * clients off.
 *
 * @module
 */
import type { Address } from "../shared/address.ts";
import { untilAborted } from "../shared/io.ts";
import type { Problem, RouteSource, Targets } from "../shared/route.ts";
import type { DatabaseRole, WhenNoReplica } from "../shared/settings.ts";
import type { ConfirmedMaster, MasterWatcher } from "./master_watcher.ts";
import {
  type ReplicaHealth,
  type ReplicaStatus,
  type ReplicaView,
  statusFor,
} from "./replica_view.ts";

/** Closes a port's connections to a node. */
export interface Cutter {
  /** Closes every connection to `address`; returns how many. */
  closeTo(address: Address): number;
  /** Closes every connection to anywhere but `address`; returns how many. */
  closeAllExcept(address: Address): number;
}

/** What a port tells the plane when it attaches. */
export interface PortLink {
  /** How the log names the port, such as `port 6380`. */
  readonly label: string;
  /** The port's own settings now: a reload may change them, so they are asked at each use. */
  settings(): {
    readonly role: DatabaseRole;
    readonly maxLagBytes: number;
    readonly whenNoReplica: WhenNoReplica;
  };
  /** Its tunnels to the master (on a read port, the clients sent there by `whenNoReplica`). */
  readonly toMaster: Cutter;
  /** Its ready connections to the master (`preconnect`); they are cut with its tunnels, uncounted. */
  readonly ready?: Cutter | undefined;
  /** A read port's tunnels to replicas. */
  readonly toReplicas?: Pick<Cutter, "closeTo"> | undefined;
}

/** What a port gets back: its route, and a way to leave. */
export interface PortRoute extends RouteSource, Disposable {
  /** A read port's replicas as it sees them, with its own lag bound. */
  readonly replicas: readonly ReplicaStatus[];
}

/** What a route asks of its plane: when the state changes, and when a check ends. */
export interface RoutePlane {
  readonly nextChange: Promise<void>;
  nextResolution(timeoutMs: number, signal: AbortSignal): Promise<void>;
}

/** One port's route: what its listener asks, answered from the name's state. */
export class Route implements PortRoute {
  readonly #plane: RoutePlane;
  readonly #master: MasterWatcher;
  readonly #replicas: ReplicaView;
  readonly #link: PortLink;
  readonly #detach: () => void;
  /**
   * A read port's targets, made once per set of verdicts, master (or, through
   * a failover, held master and promoted node) and bound.
   */
  #cache: {
    verdicts: ReadonlyMap<string, ReplicaHealth>;
    master: ConfirmedMaster | undefined;
    held: ConfirmedMaster | undefined;
    promoted: Address | undefined;
    maxLagBytes: number;
    targets: Targets | undefined;
  } | undefined;

  constructor(parts: {
    plane: RoutePlane;
    master: MasterWatcher;
    replicas: ReplicaView;
    link: PortLink;
    detach: () => void;
  }) {
    this.#plane = parts.plane;
    this.#master = parts.master;
    this.#replicas = parts.replicas;
    this.#link = parts.link;
    this.#detach = parts.detach;
  }

  get targets(): Targets | undefined {
    const { role, maxLagBytes, whenNoReplica } = this.#link.settings();
    if (role === "master") return this.#master.targets;
    const master = this.#master.master;
    // A failover under way: the replicas it does not touch may go on serving reads.
    const failover = master ? undefined : this.#master.failoverReads;
    const verdicts = this.#replicas.verdicts;
    const cache = this.#cache;
    if (
      cache?.verdicts !== verdicts || cache.master !== master ||
      cache.held !== failover?.held || cache.promoted !== failover?.promoted ||
      cache.maxLagBytes !== maxLagBytes
    ) {
      this.#cache = {
        verdicts,
        master,
        held: failover?.held,
        promoted: failover?.promoted,
        maxLagBytes,
        targets: master
          ? this.#replicas.targetsFor(maxLagBytes, master)
          : failover && this.#replicas.targetsDuringFailover(maxLagBytes, failover),
      };
    }
    return this.#cache!.targets ??
      (whenNoReplica === "master" ? this.#master.targets : undefined);
  }

  get problem(): Problem | undefined {
    const masterProblem = this.#master.problem;
    if (this.#link.settings().role === "master") return masterProblem;
    if (this.targets) return undefined;
    const master = this.#master.master;
    if (!master) {
      return masterProblem?.kind === "unknown" ? masterProblem : {
        kind: masterProblem?.kind ?? "unreachable",
        detail: `no confirmed master to check the replicas against: ${
          masterProblem?.detail ?? "still resolving"
        }`,
        since: masterProblem?.since ?? Date.now(),
      };
    }
    return this.#replicas.problemFor(this.#link.settings().maxLagBytes, master);
  }

  get replicas(): readonly ReplicaStatus[] {
    const { maxLagBytes } = this.#link.settings();
    return this.#replicas.replicas.map((health) => statusFor(health, maxLagBytes));
  }

  get nextChange(): Promise<void> {
    return this.#plane.nextChange;
  }

  async waitForTargets(timeoutMs: number, signal: AbortSignal): Promise<Targets | undefined> {
    const deadline = AbortSignal.any([AbortSignal.timeout(timeoutMs), signal]);
    const expired = untilAborted(deadline);
    for (;;) {
      const targets = this.targets;
      if (targets || deadline.aborted) return targets;
      if (this.#master.problem?.kind === "unknown") return undefined;
      await Promise.race([this.#plane.nextChange, expired]);
    }
  }

  reportUnreachable(address: Address): void {
    if (this.#link.settings().role === "replica") this.#replicas.reportUnreachable(address);
    this.#master.reportUnreachable(address);
  }

  nextResolution(timeoutMs: number, signal: AbortSignal): Promise<void> {
    return this.#plane.nextResolution(timeoutMs, signal);
  }

  [Symbol.dispose](): void {
    this.#detach();
  }
}
