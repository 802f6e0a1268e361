/**
 * The control plane of one Sentinel master name, shared by every port that
 * serves the name, master ports and read ports alike: one check loop, one
 * ROLE connection per node, one dispatch of Sentinel events, discovery, the
 * master watcher and the replica view. Ports attach to it: each gets a route
 * (where a new client may go, why nowhere, how long to wait), and each
 * cut-off reaches every port of the name at once, logged once.
 *
 * One check, every poll (and at once after an event that cut clients):
 *
 * 1. every Sentinel watching the master is asked for its view, and, when the
 *    name has a read port, one for the replicas, all at once;
 * 2. the master watcher decides which node to ask for ROLE
 *    ({@linkcode MasterWatcher.decide});
 * 3. that node is asked, and with it the replicas its last ROLE listed, so
 *    that offsets are read at the same moment; the master watcher acts on its
 *    answer as soon as it comes, before the replicas' answers;
 * 4. one ROLE reply serves both: the replica view judges the replicas against
 *    the master it just confirmed ({@linkcode ReplicaView.check}).
 *
 * The replica stage (3's replicas, and 4) runs behind the check, not in it:
 * a replica that hangs until its reply deadline holds up no master check, so
 * the master is checked every poll whatever its replicas do (the write
 * fence's time depends on it). One replica stage runs at a time; a check that
 * finds one still running leaves the replicas to it. A stage that fails
 * fails {@linkcode ControlPlane.run}, for `supervise()` to restart.
 *
 * ```ts ignore
 * const plane = new ControlPlane(masterSettingsOf(entry), { sentinels });
 * const route = plane.attach({ label: "port 6380", settings: () => entry, toMaster: registry });
 * supervise((signal) => plane.run(signal), signal, { onFailure });
 * ```
 *
 * @module
 */
import { type Address, addressKey, formatAddress, sameAddress } from "../shared/address.ts";
import { type MasterSettings, sameConnectSettings, sameFence } from "../shared/master_settings.ts";
import { untilAborted } from "../shared/io.ts";
import type { Problem, Targets } from "../shared/route.ts";
import { MasterStats } from "../shared/stats.ts";
import { CheckLoop } from "./check_loop.ts";
import {
  type ConfirmedMaster,
  type Cut,
  type EventSource,
  type MasterChange,
  MasterWatcher,
} from "./master_watcher.ts";
import { type Cutter, type PortLink, type PortRoute, Route } from "./port_route.ts";
import {
  type AskedReplicas,
  type ReadPort,
  type ReplicaHealth,
  ReplicaView,
} from "./replica_view.ts";
import { type RoleCheck, type RoleChecker, RoleProbe } from "./role_probe.ts";
import type { KnownSentinel, ReplicaInfo, SentinelClient } from "./sentinel_client.ts";
import type { SentinelView } from "./master_agreement.ts";
import { EventJournal } from "../shared/journal.ts";
import type { SentinelEvent } from "./sentinel_events.ts";

export type { Cutter, PortLink, PortRoute } from "./port_route.ts";

/** What the plane asks of the Sentinels; a {@linkcode SentinelClient} in production. */
export type SentinelSource = Pick<
  SentinelClient,
  "masterViews" | "discoverSentinels" | "replicas" | "watching"
>;

/** The replicas as a Sentinel last reported them, for the admin API. */
export interface ReportedReplicas {
  readonly replicas: readonly ReplicaInfo[];
  readonly at: number;
}

/** Options for {@linkcode ControlPlane}. */
export interface ControlPlaneOptions {
  sentinels: SentinelSource;
  /** How a node is asked for its role. @default a {@linkcode RoleProbe}: one persistent connection per node */
  checkRole?: RoleChecker;
  /** Where the name's master changes, failovers and check durations are counted. */
  stats?: MasterStats;
  /** Called after each confirmed master that differs from the one before, once per change; it must not throw. */
  onMasterChange?: (change: MasterChange) => void;
  /** The first retry delay while no master is confirmed; it doubles up to the poll interval. @default {100} */
  retryDelayMs?: number;
  /** How often to ask the configured Sentinels which other Sentinels watch the master. @default {30000} */
  discoveryIntervalMs?: number;
  /** How often to check while a failover holds clients. @default {250} */
  holdCheckIntervalMs?: number;
  /** Where the plane records what happened, for the status page. @default {a journal of its own} */
  journal?: EventJournal;
}

/** How long after a new master the replicas not yet following it are checked at the hold's pace. */
const REPLICA_RECHECK_MS = 10_000;

/** After `+sentinel`, discovery runs at once and this many more times, this far apart. */
const DISCOVERY_FOLLOW_UPS = 3;
const DISCOVERY_FOLLOW_UP_MS = 1500;

/** The control plane of one master name; see the module doc. */
export class ControlPlane {
  readonly stats: MasterStats;
  /** What the plane records for the status page. */
  readonly journal: EventJournal;
  readonly #sentinels: SentinelSource;
  readonly #probe: RoleProbe | undefined;
  readonly #checkRole: RoleChecker;
  readonly #loop = new CheckLoop();
  readonly #master: MasterWatcher;
  readonly #replicas: ReplicaView;
  readonly #links = new Set<PortLink>();
  readonly #retryDelayMs: number;
  readonly #discoveryIntervalMs: number;
  readonly #holdCheckIntervalMs: number;
  #settings: MasterSettings;
  #retryDelay: number;
  #changed = Promise.withResolvers<void>();
  /** The master confirmation the replica view last heard of. */
  #lastConfirmation: number | undefined;
  #discoveryDueAt = 0;
  #discoveryFollowUps = 0;
  #reported: ReportedReplicas | undefined;
  /** What each Sentinel said at the last check that heard them. */
  #views: readonly SentinelView[] = [];
  /** The replica stage under way, if any. */
  #stage: Promise<void> | undefined;
  /** Ends the run of the plane when a replica stage fails, with that failure. */
  #stageFailed: ((error: unknown) => void) | undefined;
  /** ROLE calls under way, by address key: their connections are never closed under them. */
  readonly #asking = new Map<string, { address: Address; calls: number }>();
  /** The node the last check asked as master: its ROLE connection stays open. */
  #lastCandidate: Address | undefined;
  /** Whether a check left the replicas to a stage still running. */
  #replicasOwed = false;
  /** Until when (`performance.now()`) replicas not yet following a new master are checked often. */
  #recheckUntil = 0;

  constructor(settings: MasterSettings, options: ControlPlaneOptions) {
    this.#settings = settings;
    this.#sentinels = options.sentinels;
    this.stats = options.stats ?? new MasterStats();
    this.journal = options.journal ?? new EventJournal();
    this.#retryDelayMs = options.retryDelayMs ?? 100;
    this.#retryDelay = this.#retryDelayMs;
    this.#discoveryIntervalMs = options.discoveryIntervalMs ?? 30_000;
    this.#holdCheckIntervalMs = options.holdCheckIntervalMs ?? 250;
    if (options.checkRole) {
      this.#checkRole = options.checkRole;
    } else {
      this.#probe = new RoleProbe(
        () => ({
          connectTimeoutMs: this.#settings.masterConnectMs,
          replyTimeoutMs: this.#settings.masterReplyMs,
          auth: this.#settings.masterAuth,
          tls: this.#settings.tls,
        }),
        // A node that closes its ROLE connection died or restarted: a replica is checked first.
        (address) => {
          if (this.#hasReadPort()) this.#replicas.peerClosed(address);
        },
      );
      this.#checkRole = this.#probe.check;
    }
    const onMasterChange = options.onMasterChange;
    this.#master = new MasterWatcher({
      settings: () => this.#settings,
      cutter: {
        closeTo: (address) => this.#cutMaster((cutter) => cutter.closeTo(address)),
        closeAllExcept: (address) => this.#cutMaster((cutter) => cutter.closeAllExcept(address)),
      },
      stats: this.stats,
      wake: (urgent) => this.#loop.wake(urgent),
      notify: () => this.#notify(),
      journal: this.journal,
      onMasterChange: (change) => {
        // A new master: the Sentinels that watch it, and its replicas, are asked again soon.
        this.#discoveryDueAt = 0;
        onMasterChange?.(change);
      },
    });
    this.#replicas = new ReplicaView({
      name: () => this.#settings.name,
      ports: () => this.#readPorts(),
      master: () => this.#master.master,
      failoverTimeoutMs: () => this.#master.failoverTimeoutMs,
      checkRole: (address, signal) => this.#ask(address, signal),
      wake: (urgent) => this.#loop.wake(urgent),
      notify: () => this.#notify(),
      journal: this.journal,
      stats: this.stats,
    });
  }

  /** The name's settings in force. */
  get settings(): MasterSettings {
    return this.#settings;
  }

  /** The master name. */
  get name(): string {
    return this.#settings.name;
  }

  /** The confirmed master, if any. */
  get master(): ConfirmedMaster | undefined {
    return this.#master.master;
  }

  /** Why there is no confirmed master, or the last failed check while there is one. */
  get problem(): Problem | undefined {
    return this.#master.problem;
  }

  /** The failover holding clients, if any. */
  get failover(): { master: Address; reason: string; since: number } | undefined {
    return this.#master.failover;
  }

  /** When the write fence closed (ms since the epoch), while it is closed. */
  get fencedSince(): number | undefined {
    return this.#master.fencedSince;
  }

  /** Where a master port's clients go: one object per confirmation of the master. */
  get masterTargets(): Targets | undefined {
    return this.#master.targets;
  }

  /** Every replica as last checked (whatever a port's lag bound). */
  get replicaHealth(): readonly ReplicaHealth[] {
    return this.#replicas.replicas;
  }

  /** The replicas as a Sentinel last reported them: refreshed with discovery, or every check when a read port needs them. */
  get reportedReplicas(): ReportedReplicas | undefined {
    return this.#reported;
  }

  /** What each Sentinel that counts said of the master at the last check. */
  get views(): readonly SentinelView[] {
    return this.#views;
  }

  /** The ports attached now. */
  get ports(): readonly PortLink[] {
    return [...this.#links];
  }

  /** Settles at the next change of state: a master confirmed or lost, a problem, a cut-off. */
  get nextChange(): Promise<void> {
    return this.#changed.promise;
  }

  /**
   * Waits up to `timeoutMs` for a confirmed master. Returns at once when the
   * Sentinels already said they do not know this master name.
   */
  async waitForMaster(
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<ConfirmedMaster | undefined> {
    const deadline = AbortSignal.any([AbortSignal.timeout(timeoutMs), signal]);
    const expired = untilAborted(deadline);
    while (!this.#master.master && !deadline.aborted) {
      if (this.#master.problem?.kind === "unknown") return undefined;
      await Promise.race([this.#changed.promise, expired]);
    }
    return this.#master.master;
  }

  /**
   * Waits up to `timeoutMs` for the check under way, or the next one, to end,
   * and then for the replica stage under way, if any.
   */
  async nextResolution(timeoutMs: number, signal: AbortSignal): Promise<void> {
    const deadline = AbortSignal.any([AbortSignal.timeout(timeoutMs), signal]);
    await this.#loop.nextResolution(timeoutMs, deadline);
    const stage = this.#stage;
    if (stage && !deadline.aborted) await Promise.race([stage, untilAborted(deadline)]);
  }

  /** Runs the next check soon: at once when `urgent`. */
  wake(urgent = false): void {
    this.#loop.wake(urgent);
  }

  /**
   * A reload closed `closed` clients of the port `label` (to `node`): counted
   * and recorded like the plane's own cuts, for the metrics and the status page.
   */
  recordReloadCut(label: string, node: string, detail: string, closed: number): void {
    if (closed === 0) return;
    this.stats.clientsCut.set("reload", (this.stats.clientsCut.get("reload") ?? 0) + closed);
    this.journal.record({
      kind: "cut",
      name: this.name,
      node,
      reason: "reload",
      detail,
      clients: closed,
      ports: { [label]: closed },
    });
  }

  /**
   * Attaches a port: its clients are cut off with the name's, and its route
   * answers where they may go. Disposing of the route detaches it; its
   * connections are the port's to close.
   */
  attach(link: PortLink): PortRoute {
    this.#links.add(link);
    // A read port needs the replicas checked before its first client: at once.
    if (link.settings().role === "replica") this.#loop.wake(true);
    return new Route({
      plane: this,
      master: this.#master,
      replicas: this.#replicas,
      link,
      detach: () => this.#links.delete(link),
    });
  }

  /**
   * Takes new settings for the name (a reload). New credentials, TLS or
   * deadlines reopen the ROLE connections, and a check under way is void; a
   * changed fence applies to the time already run. Tunnels are kept.
   */
  update(settings: MasterSettings): void {
    const before = this.#settings;
    this.#settings = settings;
    const reconnect = !sameConnectSettings(before, settings);
    if (!sameFence(before.fence, settings.fence)) this.#master.fenceChanged();
    if (reconnect) {
      // A check under way would see its ROLE connections closed under it: drop what it learns.
      this.#master.voidCheck();
      this.#probe?.reset();
    }
    this.#loop.wake(reconnect);
  }

  /**
   * The Sentinel list changed (a reload): what the old Sentinels said no longer
   * counts, and the Sentinels watching the master are discovered again at once.
   */
  sentinelsChanged(): void {
    this.#master.sentinelsChanged();
    this.#discoveryDueAt = 0;
    this.#loop.wake(true);
  }

  /**
   * An event from a Sentinel the client knows: acted on only when that
   * Sentinel counts for this master (configured, or discovered for it).
   */
  onSentinelEvent(event: SentinelEvent, sentinel: Readonly<KnownSentinel>): void {
    if (!this.#sentinels.watching(this.name).includes(sentinel)) return;
    this.onEvent(event, sentinel);
  }

  /**
   * A Sentinel event about this master, from a Sentinel that counts for it.
   * A switch or a promotion cuts clients off at once, on every port; a
   * replica announced down or being promoted loses its read clients; nothing
   * here routes a client anywhere new.
   */
  onEvent(event: SentinelEvent, source: EventSource): void {
    const reads = this.#hasReadPort();
    switch (event.kind) {
      case "switch-master":
        this.#master.onSwitch(event.to, event.from, source);
        if (reads) this.#replicas.onSwitch(event.to, source.address);
        return;
      case "promotion":
        this.#master.onPromotion(
          event.masterAddress,
          `${event.channel} from ${formatAddress(source.address)}`,
          source,
          event.replica,
        );
        if (!reads) return;
        if (event.replica) this.#replicas.onPromotion(event.replica, event.channel, source.address);
        else this.#loop.wake(true);
        return;
      case "failover-end":
        this.#master.onFailoverEnd();
        if (!reads) return;
        this.#replicas.onFailoverEnd(source.address);
        return this.#loop.wake();
      case "sentinel-added":
        // Only a configured Sentinel's word starts a discovery round; the others wait for the timer.
        if (source.origin !== "configured") return;
        // A Sentinel just added is listed as disconnected until its peers reach it: look again soon.
        this.#discoveryDueAt = 0;
        this.#discoveryFollowUps = DISCOVERY_FOLLOW_UPS;
        return this.#loop.wake();
      case "instance":
        // Replicas' comings and goings matter to read ports; the master is checked by views.
        if (!reads) return;
        if (event.instanceType === "slave" && event.change === "down") {
          return this.#replicas.onDown(event.instance, source.address);
        }
        return this.#loop.wake();
    }
  }

  /**
   * Checks until `signal` aborts. Rejects when a check (or a replica stage)
   * fails unexpectedly, keeping the state: run it under `supervise()`, which
   * restarts it. Either way, when it ends its ROLE connections are closed and
   * the fence's clock stops (a restart takes it up again).
   */
  async run(signal: AbortSignal): Promise<void> {
    const failed = new AbortController();
    let failure: { error: unknown } | undefined;
    this.#stageFailed = (error) => {
      failure ??= { error };
      failed.abort();
    };
    // A run restarted after a failure takes the fence's time up where it was.
    this.#master.resume();
    try {
      await this.#loop.run({
        check: (s) => this.#check(s),
        housekeeping: (s) => this.#discoverIfDue(s),
        sleepMs: () => this.#sleepMs(),
      }, AbortSignal.any([signal, failed.signal]));
      await this.#stage;
      if (failure) throw failure.error;
    } finally {
      // Stopped or failed alike: supervise() may stop in its backoff and never run it again.
      this.#probe?.reset();
      this.#master.stop();
      this.#notify();
    }
  }

  /** One check; see the module doc. */
  async #check(signal: AbortSignal): Promise<void> {
    const started = performance.now();
    const generation = this.#master.generation;
    // A newer event makes this check's findings stale: the loop runs a fresh one at once.
    const stale = () => {
      if (signal.aborted) return true;
      if (this.#master.generation === generation) return false;
      this.#loop.wake();
      return true;
    };
    // The replicas are this check's to judge unless a stage is still at it (a hung replica);
    // then the stage, once it ends, asks for a check that judges them.
    const reads = this.#hasReadPort();
    const replicas = reads && this.#stage === undefined;
    if (reads && !replicas) this.#replicasOwed = true;
    // The replicas' list comes in parallel; the master is decided without waiting for it, so that
    // a Sentinel slow to list replicas delays no failover.
    const listing = replicas ? this.#sentinels.replicas(this.name, signal) : undefined;
    // Its failure is the replica stage's to report; a check gone stale never waits for it.
    listing?.catch(() => {});
    if (replicas) this.#replicas.beginCheck();
    let asked: AskedReplicas = new Map();
    let staged = false;
    try {
      const views = await this.#sentinels.masterViews(this.name, signal);
      this.#views = views;
      if (stale()) return;
      const step = this.#master.decide(views);
      /** The master this check confirmed, with the ROLE reply that did: what the stage judges by. */
      let confirmed: { master: ConfirmedMaster; role: RoleCheck } | undefined;
      if (step.kind === "probe-silence") {
        const role = await this.#ask(step.address, signal);
        if (stale()) return;
        this.#master.actOnSilence(step.address, role);
      } else if (step.kind === "ask") {
        const candidate = step.candidate.address;
        this.#lastCandidate = candidate;
        const answer = this.#ask(candidate, signal);
        // The replicas the master listed last time are asked with it: offsets of the same moment.
        if (replicas) asked = this.#replicas.askKnown(candidate, signal);
        const role = await answer;
        if (stale()) return;
        this.#master.actOnRole(step, role);
        const master = this.#master.master;
        if (master && sameAddress(master.address, candidate)) confirmed = { master, role };
        // With a read port, the replica stage decides which replicas' connections stay.
        if (!reads) this.#keepOnly([]);
      }
      if (listing) {
        staged = true;
        this.#replicasOwed = false;
        const stage = this.#judgeReplicas(listing, confirmed, asked, signal)
          .finally(() => this.#replicas.endCheck());
        this.#stage = stage.catch((error) => this.#stageFailed?.(error)).finally(() => {
          this.#stage = undefined;
          // A check left the replicas to this stage: one that judges them comes now.
          if (this.#replicasOwed) this.#loop.wake();
        });
      }
    } finally {
      if (replicas && !staged) this.#replicas.endCheck();
      if (!signal.aborted) {
        this.stats.resolutionSeconds.observe((performance.now() - started) / 1000);
      }
    }
  }

  /**
   * The replica stage of a check: once the list comes, the replicas are judged
   * against the master the check confirmed, with its ROLE reply; with no
   * master, those in use are guarded.
   */
  async #judgeReplicas(
    listing: Promise<ReplicaInfo[] | undefined>,
    confirmed: { master: ConfirmedMaster; role: RoleCheck } | undefined,
    asked: AskedReplicas,
    signal: AbortSignal,
  ): Promise<void> {
    const listed = await listing;
    if (listed) this.#reported = { replicas: listed, at: Date.now() };
    this.#replicas.noteListed(listed);
    if (signal.aborted) return;
    if (confirmed) {
      // Judged against the confirmation whose ROLE replies these are; if the master was lost or
      // confirmed anew meanwhile, the check finds it stale and a fresh one runs.
      const checked = await this.#replicas.check(confirmed.master, confirmed.role, asked, signal);
      if (checked) this.#keepOnly(checked);
    } else if (!this.#master.master) {
      // No master to check the replicas against: those in use are still guarded.
      await this.#replicas.guardWithoutMaster(asked, signal, this.#master.failoverNodes);
    }
  }

  /** One ROLE call, counted while it runs. */
  #ask(address: Address, signal: AbortSignal): Promise<RoleCheck> {
    const key = addressKey(address);
    const asking = this.#asking.get(key) ?? { address, calls: 0 };
    asking.calls++;
    this.#asking.set(key, asking);
    return this.#checkRole(address, signal).finally(() => {
      if (--asking.calls === 0) this.#asking.delete(key);
    });
  }

  /**
   * Closes the ROLE connections of every node but `keep`, the master last asked,
   * and the nodes a call is under way to.
   */
  #keepOnly(keep: readonly Address[]): void {
    const probe = this.#probe;
    if (!probe) return;
    const last = this.#lastCandidate;
    probe.keepOnly([
      ...keep,
      ...(last ? [last] : []),
      ...[...this.#asking.values()].map((a) => a.address),
    ]);
  }

  /** Asks which Sentinels watch the master, every 30 s and soon after a change. */
  async #discoverIfDue(signal: AbortSignal): Promise<void> {
    const now = Date.now();
    if (now < this.#discoveryDueAt) return;
    if (this.#discoveryFollowUps > 0) {
      this.#discoveryFollowUps--;
      this.#discoveryDueAt = now + DISCOVERY_FOLLOW_UP_MS;
    } else {
      this.#discoveryDueAt = now + this.#discoveryIntervalMs;
    }
    await this.#sentinels.discoverSentinels(this.name, signal);
    // With a read port, every check brings the list already.
    if (this.#hasReadPort() || signal.aborted) return;
    const replicas = await this.#sentinels.replicas(this.name, signal);
    if (replicas) this.#reported = { replicas, at: Date.now() };
  }

  /** How long to sleep after a check: briefly during a failover, backing off while no master is known. */
  #sleepMs(): number {
    const { pollIntervalMs } = this.#settings;
    if (this.#master.holding) return Math.min(this.#holdCheckIntervalMs, pollIntervalMs);
    const master = this.#master.master;
    if (master) {
      this.#retryDelay = this.#retryDelayMs;
      // After a new master, the replicas are checked often until they all follow it (they resync,
      // and Sentinel disconnects their clients), for a while: reads resume as soon as they may.
      const recovering = performance.now() < this.#recheckUntil && this.#hasReadPort() &&
        !this.#replicas.allHealthy(master);
      return recovering ? Math.min(this.#holdCheckIntervalMs, pollIntervalMs) : pollIntervalMs;
    }
    const delay = this.#retryDelay;
    this.#retryDelay = Math.min(this.#retryDelay * 2, pollIntervalMs);
    return delay;
  }

  /** Cuts on every port of the name, ready connections included (uncounted). */
  #cutMaster(cut: (cutter: Cutter) => number): Cut {
    let closed = 0;
    const byPort: Record<string, number> = {};
    for (const link of this.#links) {
      if (link.ready) cut(link.ready);
      const n = cut(link.toMaster);
      closed += n;
      if (n > 0) byPort[link.label] = (byPort[link.label] ?? 0) + n;
    }
    return { closed, byPort };
  }

  #readPorts(): ReadPort[] {
    const ports: ReadPort[] = [];
    for (const link of this.#links) {
      const toReplicas = link.toReplicas;
      if (link.settings().role !== "replica" || !toReplicas) continue;
      ports.push({
        label: link.label,
        maxLagBytes: link.settings().maxLagBytes,
        closeTo: (address) => toReplicas.closeTo(address),
      });
    }
    return ports;
  }

  #hasReadPort(): boolean {
    for (const link of this.#links) if (link.settings().role === "replica") return true;
    return false;
  }

  /** Wakes every waiter; each checks the state again. A master confirmed anew reaches the replicas first. */
  #notify(): void {
    const master = this.#master.master;
    if (master && master.confirmation !== this.#lastConfirmation) {
      this.#lastConfirmation = master.confirmation;
      this.#recheckUntil = performance.now() + REPLICA_RECHECK_MS;
      this.#replicas.onMasterConfirmed(master);
    }
    this.#changed.resolve();
    this.#changed = Promise.withResolvers<void>();
  }
}
