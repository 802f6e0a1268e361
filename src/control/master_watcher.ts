/**
 * The control plane of one database: which master its clients go to.
 *
 * The state is explicit: a confirmed master or none, a failover hold or none,
 * and the last problem. One loop per database changes it; Sentinel events only
 * cut clients off (always safe) and wake the loop. Each check:
 *
 * 1. asks every Sentinel watching the master for its view, at once, and lets
 *    {@linkcode agreeOnMaster} decide (configured Sentinels' newest
 *    config-epoch, or a majority when no configured one answers);
 * 2. asks the node so named (or the master it has, when the Sentinels agree
 *    on nothing) for its ROLE on a persistent connection. Credentials go only
 *    to such a node. A master is used only while it says `master`; any other
 *    role cuts its clients at once. A master that is busy (`-BUSY`,
 *    `-LOADING`, no reply in time) stays confirmed while no failover is under
 *    way: clients reach it and get Redis's own answer.
 *
 * From the moment a Sentinel announces that a replica is being promoted, the
 * old master's clients are cut and new clients wait: writes acknowledged by a
 * master after its replacement's promotion would be discarded. The hold ends
 * with the new master confirmed, or, when the failover aborts or outlives its
 * failover-timeout, with the old master confirmed again by ROLE.
 *
 * With a write fence (`fence.afterMs`), a master no majority of the configured
 * Sentinels has named for that long is cut off until a majority names one. A
 * master whose every connect times out (a silent link) for three polls has its
 * tunnels cut, which would otherwise hang until TCP gives up.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { type Address, formatAddress, sameAddress } from "../shared/address.ts";
import type { DatabaseConfig } from "../shared/settings.ts";
import {
  type Agreement,
  agreeOnMaster,
  type SentinelOrigin,
  type SentinelView,
} from "./master_agreement.ts";
import { DatabaseStats } from "../shared/stats.ts";
import { type RoleCheck, type RoleChecker, RoleProbe } from "./role_probe.ts";
import type { ReplicaInfo, SentinelClient } from "./sentinel_client.ts";
import type { SentinelEvent } from "./sentinel_events.ts";
import { sleep, untilAborted } from "../shared/io.ts";

export type { RoleCheck, RoleChecker } from "./role_probe.ts";

const log = getLogger(["sentinel-tunnel", "watcher"]);

/** Why there is no confirmed master, or what is wrong with the one there is. */
export interface MasterProblem {
  readonly kind:
    | "unreachable"
    | "unknown"
    | "not-master"
    | "master-unreachable"
    | "busy"
    | "failover"
    | "error"
    /** The write fence is closed: no configured majority confirmed the master for `fence.afterMs`. */
    | "fenced";
  readonly detail: string;
  readonly since: number;
}

/** A confirmed master and how it was learned. */
export interface ConfirmedMaster {
  readonly address: Address;
  /**
   * Which confirmation this is: a new number each time a master is confirmed
   * after another one or none, the same while it stays confirmed.
   */
  readonly confirmation: number;
  readonly confirmedAt: number;
  /** How it was learned, such as `3 of 3 configured Sentinels at config-epoch 2`. */
  readonly via: string;
  /** The config-epoch of the Sentinels' view that named it, when known. */
  readonly epoch: number | undefined;
}

/** A confirmed change of master, for hooks. */
export interface MasterChange {
  readonly database: string;
  /** The master confirmed before, if any. */
  readonly from: Address | undefined;
  readonly to: Address;
  readonly via: string;
}

/** A failover of the master under way: no client may reach the old master. */
interface FailoverHold {
  readonly master: Address;
  readonly reason: string;
  readonly since: number;
  readonly until: number;
  /** The Sentinel whose event started it (`host:port`); none when a check found the failover. */
  readonly from: string | undefined;
  /** Whether a check has seen a Sentinel report the failover under way. */
  confirmed: boolean;
}

/** A `+switch-master` waiting for the check that corroborates it. */
interface PendingSwitch {
  readonly to: Address;
  readonly sentinel: string;
}

/** Where a new client may go: the confirmed master, or usable replicas. */
export interface Targets {
  readonly kind: "master" | "replica";
  readonly addresses: readonly Address[];
}

/** A Sentinel view of the replicas, cached for the admin API. */
export interface CachedReplicas {
  readonly replicas: readonly ReplicaInfo[];
  readonly at: number;
}

/** How the watcher cuts clients off; the data plane's connection registry in production. */
export interface ClientCutter {
  /** Closes every tunnel to `address`; returns how many. */
  closeTo(address: Address): number;
  /** Closes every tunnel that goes anywhere but `address`; returns how many. */
  closeAllExcept(address: Address): number;
}

/** What the watcher asks of the Sentinels; a {@linkcode SentinelClient} in production. */
export type SentinelSource = Pick<
  SentinelClient,
  "masterViews" | "discoverSentinels" | "replicas"
>;

/** Options for {@linkcode MasterWatcher}. */
export interface MasterWatcherOptions {
  sentinels: SentinelSource;
  /** How a node is asked for its role. @default a {@linkcode RoleProbe} with persistent connections */
  checkRole?: RoleChecker;
  registry: ClientCutter;
  /** Where resolution latency and master changes are counted. */
  stats?: DatabaseStats;
  /** Called after each confirmed master that differs from the one before; it must not throw. */
  onMasterChange?: (change: MasterChange) => void;
  /** The first retry delay while no master is confirmed; it doubles up to the poll interval. @default {100} */
  retryDelayMs?: number;
  /** How often to ask the configured Sentinels which other Sentinels watch the master. @default {30000} */
  discoveryIntervalMs?: number;
  /** How often to check while a failover holds clients. @default {250} */
  holdCheckIntervalMs?: number;
}

/** When a failover's Sentinel does not say: Sentinel's own default failover-timeout. */
const DEFAULT_FAILOVER_TIMEOUT_MS = 180_000;

/** After `+sentinel`, discovery runs at once and this many more times, this far apart. */
const DISCOVERY_FOLLOW_UPS = 3;
const DISCOVERY_FOLLOW_UP_MS = 1500;

/** A Sentinel whose word a check refused may trigger checks, but cuts nobody, for this many polls... */
const DISTRUST_POLLS = 5;
/** ...and at least this long. */
const MIN_DISTRUST_MS = 10_000;

/** Checks that no event made urgent run at least this far apart, so that a flood of wakes costs little. */
const MIN_CHECK_GAP_MS = 100;

/** Who sent an event. */
export interface EventSource {
  readonly address: Address;
  readonly origin: SentinelOrigin;
}

/** Watches one database's master. */
export class MasterWatcher {
  #database: DatabaseConfig;
  readonly #sentinels: SentinelSource;
  readonly #probe: RoleProbe | undefined;
  readonly #checkRole: RoleChecker;
  readonly #registry: ClientCutter;
  readonly #retryDelayMs: number;
  readonly #discoveryIntervalMs: number;
  readonly #holdCheckIntervalMs: number;
  readonly #stats: DatabaseStats;
  readonly #onMasterChange: ((change: MasterChange) => void) | undefined;
  #master: ConfirmedMaster | undefined;
  #confirmations = 0;
  /** A node whose every connect has timed out since `since`, and whether its tunnels were cut. */
  #silence: { address: Address; since: number; cut: boolean } | undefined;
  /** The write fence's timer, restarted whenever a majority of the configured Sentinels names the master. */
  #fenceTimer: ReturnType<typeof setTimeout> | undefined;
  /** When the write fence closed, while it is closed. */
  #fencedSince: number | undefined;
  /**
   * Where the fence's time runs from (`performance.now()`): the last check in
   * which a majority of the configured Sentinels named the master, or the first
   * confirmation when none has yet.
   */
  #fenceFrom: number | undefined;
  /** The targets of the confirmed master, made once per master confirmed. */
  /** One object per confirmation: a new epoch of the same confirmation keeps it. */
  #targets: { confirmation: number; targets: Targets } | undefined;
  /** The last master confirmed, kept while none is: a blip of the same master is no change. */
  #lastConfirmed: Address | undefined;
  /** The config-epoch of the view last acted on: an older view never overrides it. */
  #epoch: number | undefined;
  #failoverTimeoutMs = DEFAULT_FAILOVER_TIMEOUT_MS;
  #hold: FailoverHold | undefined;
  #pendingSwitch: PendingSwitch | undefined;
  /** Sentinels whose events only trigger checks, until the time given. */
  readonly #distrusted = new Map<string, number>();
  #problem: MasterProblem | undefined;
  #discoveryDueAt = 0;
  #discoveryFollowUps = 0;
  #replicas: CachedReplicas | undefined;
  #changed = Promise.withResolvers<void>();
  /** Bumped by every event that makes a check under way stale. */
  #generation = 0;
  #resolved = Promise.withResolvers<void>();
  #wake: (() => void) | undefined;
  #wakePending = false;
  /** Set by an event that cut clients: the next check runs at once, whatever the gap. */
  #urgent = false;
  #lastCheckAt = -Infinity;
  /** The last problem logged, so that one repeated every poll is logged every 30 s with a count. */
  #lastFailureLog = { kind: "", detail: "", since: 0, at: 0, suppressed: 0 };

  constructor(database: DatabaseConfig, options: MasterWatcherOptions) {
    this.#database = database;
    this.#sentinels = options.sentinels;
    if (options.checkRole) {
      this.#checkRole = options.checkRole;
    } else {
      this.#probe = new RoleProbe(() => ({
        connectTimeoutMs: this.#database.timeouts.masterConnectMs,
        replyTimeoutMs: this.#database.timeouts.masterReplyMs,
        auth: this.#database.masterAuth,
        tls: this.#database.tls,
      }));
      this.#checkRole = this.#probe.check;
    }
    this.#registry = options.registry;
    this.#retryDelayMs = options.retryDelayMs ?? 100;
    this.#discoveryIntervalMs = options.discoveryIntervalMs ?? 30_000;
    this.#holdCheckIntervalMs = options.holdCheckIntervalMs ?? 250;
    this.#stats = options.stats ?? new DatabaseStats();
    this.#onMasterChange = options.onMasterChange;
  }

  /** The database's current settings. */
  get database(): DatabaseConfig {
    return this.#database;
  }

  /**
   * Takes new settings for the same database and listen address (a reload),
   * and checks the master again with them. Tunnels are kept.
   */
  update(database: DatabaseConfig): void {
    const credentialsChanged =
      JSON.stringify(database.masterAuth) !== JSON.stringify(this.#database.masterAuth) ||
      JSON.stringify(database.tls) !== JSON.stringify(this.#database.tls) ||
      database.timeouts.masterConnectMs !== this.#database.timeouts.masterConnectMs ||
      database.timeouts.masterReplyMs !== this.#database.timeouts.masterReplyMs;
    const fenceChanged = JSON.stringify(database.fence) !== JSON.stringify(this.#database.fence);
    this.#database = database;
    if (fenceChanged) {
      // Turned off, a closed fence opens (the next check may confirm a master without a
      // majority); added or changed, the timer runs from the last majority's word.
      if (!database.fence) this.#fencedSince = undefined;
      this.#scheduleFence();
    }
    if (credentialsChanged) {
      // A check under way would see its ROLE connection closed under it: drop what it learns.
      this.#generation++;
      this.#probe?.reset();
    }
    this.wake();
  }

  /**
   * The Sentinel list changed (a reload): what the old Sentinels said no longer
   * counts. Their epoch and the Sentinels distrusted are forgotten, and the
   * Sentinels watching the master are discovered again at once.
   */
  sentinelsChanged(): void {
    this.#generation++;
    this.#epoch = undefined;
    this.#distrusted.clear();
    this.#pendingSwitch = undefined;
    this.#discoveryDueAt = 0;
    this.wake(true);
  }

  /** What this database's control plane has counted. */
  get stats(): DatabaseStats {
    return this.#stats;
  }

  /** The confirmed master, if any: the only node new clients are tunnelled to. */
  get master(): ConfirmedMaster | undefined {
    return this.#master;
  }

  /**
   * Where a new client may go: the confirmed master, if any. The same object
   * for as long as one confirmation lasts, a new one for each: connections
   * made for one are never used for another (the preconnect pool).
   */
  get targets(): Targets | undefined {
    const master = this.#master;
    if (!master) return undefined;
    if (this.#targets?.confirmation !== master.confirmation) {
      this.#targets = {
        confirmation: master.confirmation,
        targets: { kind: "master", addresses: [master.address] },
      };
    }
    return this.#targets.targets;
  }

  /** Waits up to `timeoutMs` for a confirmed master, as {@linkcode waitForMaster} does. */
  async waitForTargets(timeoutMs: number, signal: AbortSignal): Promise<Targets | undefined> {
    await this.waitForMaster(timeoutMs, signal);
    return this.targets;
  }

  /** How long a failover may take, as the Sentinels last said (`failover-timeout`). */
  get failoverTimeoutMs(): number {
    return this.#failoverTimeoutMs;
  }

  /** Settles at the next change of state: a master confirmed or lost, a problem, a cut-off. */
  get nextChange(): Promise<void> {
    return this.#changed.promise;
  }

  /** Why there is no confirmed master, or the last failed check while there is one. */
  get problem(): MasterProblem | undefined {
    return this.#problem;
  }

  /** The failover holding clients, if any. */
  get failover(): { master: Address; reason: string; since: number } | undefined {
    const hold = this.#hold;
    return hold && { master: hold.master, reason: hold.reason, since: hold.since };
  }

  /** The replicas as a Sentinel last reported them, refreshed with discovery and on master changes. */
  get replicas(): CachedReplicas | undefined {
    return this.#replicas;
  }

  /** Checks until `signal` aborts. An unexpected error is logged and the loop goes on. */
  async run(signal: AbortSignal): Promise<void> {
    let retryDelay = this.#retryDelayMs;
    let crashes = 0;
    while (!signal.aborted) {
      try {
        await this.#checkOnce(signal);
        if (signal.aborted) break;
        await this.#discoverIfDue(signal);
        crashes = 0;
      } catch (error) {
        if (signal.aborted) break;
        crashes++;
        log.error("Database {database}: master check failed unexpectedly: {error}", {
          database: this.database.name,
          error: error instanceof Error ? (error.stack ?? error.message) : String(error),
        });
        await sleep(Math.min(100 * 2 ** crashes, 5000), signal);
      }
      const { pollIntervalMs } = this.database.timeouts;
      if (this.#hold) {
        await this.#sleepUnlessWoken(Math.min(this.#holdCheckIntervalMs, pollIntervalMs), signal);
      } else if (this.#master) {
        retryDelay = this.#retryDelayMs;
        await this.#sleepUnlessWoken(pollIntervalMs, signal);
      } else {
        await this.#sleepUnlessWoken(retryDelay, signal);
        retryDelay = Math.min(retryDelay * 2, pollIntervalMs);
      }
    }
    this.#probe?.reset();
    clearTimeout(this.#fenceTimer);
    this.#notify();
  }

  /** A majority of the configured Sentinels named the master: the fence's time starts again. */
  #renewFence(): void {
    this.#fenceFrom = performance.now();
    if (this.#fencedSince !== undefined) {
      log.info(
        "Database {database}: write fence open again: a majority of the configured Sentinels confirmed master {master}",
        {
          database: this.database.name,
          master: this.#master ? formatAddress(this.#master.address) : null,
        },
      );
      this.#fencedSince = undefined;
    }
    this.#scheduleFence();
  }

  /** Sets the fence's timer from `#fenceFrom` and the settings in force (a reload may change them). */
  #scheduleFence(): void {
    clearTimeout(this.#fenceTimer);
    this.#fenceTimer = undefined;
    const fence = this.database.fence;
    if (!fence || this.#fencedSince !== undefined) return;
    const from = this.#fenceFrom ??= performance.now();
    const left = Math.max(0, from + fence.afterMs - performance.now());
    this.#fenceTimer = setTimeout(() => this.#closeFence(fence.afterMs), left);
  }

  /**
   * No majority of the configured Sentinels confirmed the master for `afterMs`:
   * stop tunnelling to it until one does. A check under way, which might keep
   * it on its own word, is void.
   */
  #closeFence(afterMs: number): void {
    this.#fenceTimer = undefined;
    const master = this.#master?.address ?? this.#lastConfirmed;
    if (!master || !this.database.fence) return;
    this.#generation++;
    this.#master = undefined;
    this.#fencedSince = Date.now();
    // What the Sentinels said before the fence is stale: a majority's next word is taken as is
    // (redeployed Sentinels restart their epochs).
    this.#epoch = undefined;
    const closed = this.#registry.closeTo(master);
    const detail =
      `write fence closed: no majority of the configured Sentinels has confirmed master ${
        formatAddress(master)
      } for ${afterMs} ms (fence.afterMs); nothing is tunnelled to it until a majority confirms a master`;
    log.warn("Database {database}: {detail}; closed {closed} client connections to it", {
      database: this.database.name,
      detail,
      closed,
    });
    this.#fail("fenced", detail);
    this.wake(true);
  }

  /**
   * Waits up to `timeoutMs` for a confirmed master. Returns at once when the
   * Sentinels already said they do not know this master name.
   */
  async waitForMaster(
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<ConfirmedMaster | undefined> {
    if (this.#master) return this.#master;
    const deadline = AbortSignal.any([AbortSignal.timeout(timeoutMs), signal]);
    const expired = untilAborted(deadline);
    while (!this.#master && !deadline.aborted) {
      if (this.#problem?.kind === "unknown") return undefined;
      await Promise.race([this.#changed.promise, expired]);
    }
    return this.#master;
  }

  /**
   * A Sentinel event for this database, from a Sentinel that watches its
   * master. A switch or a promotion cuts the old master's clients at once;
   * nothing here routes a client anywhere new.
   */
  onEvent(event: SentinelEvent, source: EventSource): void {
    const from = formatAddress(source.address);
    switch (event.kind) {
      case "switch-master":
        return this.#onSwitch(event.to, from);
      case "promotion":
        return this.#onPromotion(event.masterAddress, `${event.channel} from ${from}`, from);
      case "failover-end":
        // A check under way may still see the failover: the next one, soon after, will not.
        if (this.#hold) this.wake();
        return;
      case "sentinel-added":
        // Only a configured Sentinel's word starts a discovery round; the others wait for the timer.
        if (source.origin !== "configured") return;
        // A Sentinel just added is listed as disconnected until its peers reach it: look again soon.
        this.#discoveryDueAt = 0;
        this.#discoveryFollowUps = DISCOVERY_FOLLOW_UPS;
        return this.wake();
      case "instance":
        // Replicas' comings and goings are the replica watcher's; the master is checked by views.
        return;
    }
  }

  /** A client could not connect to `address`: check it now rather than at the next poll. */
  reportUnreachable(address: Address): void {
    if (this.#master && sameAddress(this.#master.address, address)) this.wake();
  }

  /** Waits up to `timeoutMs` for the check under way, or the next one, to end. */
  async nextResolution(timeoutMs: number, signal: AbortSignal): Promise<void> {
    const deadline = AbortSignal.any([AbortSignal.timeout(timeoutMs), signal]);
    if (deadline.aborted) return;
    await Promise.race([this.#resolved.promise, untilAborted(deadline)]);
  }

  /**
   * Runs the next check soon: at once when `urgent` (clients were cut), else
   * no sooner than {@linkcode MIN_CHECK_GAP_MS} after the last one.
   */
  wake(urgent = false): void {
    if (urgent) this.#urgent = true;
    if (this.#wake) this.#wake();
    else this.#wakePending = true;
  }

  #onSwitch(to: Address, sentinel: string): void {
    if (this.#master && sameAddress(this.#master.address, to)) return;
    const pending = this.#pendingSwitch;
    if (pending && sameAddress(pending.to, to)) return;
    if (pending?.sentinel === sentinel) {
      // A Sentinel that names two new masters before one check could settle the first is not to be believed.
      this.#distrust(sentinel);
      log.warn(
        "Database {database}: ignored +switch-master from {sentinel} to {to}: it named {earlier} moments ago",
        {
          database: this.database.name,
          sentinel,
          to: formatAddress(to),
          earlier: formatAddress(pending.to),
        },
      );
      return;
    }
    if (this.#isDistrusted(sentinel)) {
      log.debug(
        "Database {database}: +switch-master from {sentinel} to {to} only triggers a check: its last word was refused",
        { database: this.database.name, sentinel, to: formatAddress(to) },
      );
      return this.wake();
    }
    // Whatever a check under way learns now is older than this message: drop it.
    this.#generation++;
    this.#pendingSwitch = { to, sentinel };
    this.#cutOff(to, `+switch-master from ${sentinel}`);
    this.wake(true);
  }

  #onPromotion(masterAddress: Address, reason: string, sentinel: string): void {
    const current = this.#master?.address ?? this.#lastConfirmed;
    if (!current || !sameAddress(current, masterAddress)) {
      // About a node this database does not use: the Sentinels know something it does not. Check.
      return this.wake();
    }
    if (this.#hold) return;
    if (this.#isDistrusted(sentinel)) return this.wake();
    this.#generation++;
    this.#startHold(current, reason, sentinel);
    this.wake(true);
  }

  #isDistrusted(sentinel: string): boolean {
    const until = this.#distrusted.get(sentinel);
    if (until === undefined) return false;
    if (performance.now() < until) return true;
    this.#distrusted.delete(sentinel);
    return false;
  }

  #distrust(sentinel: string): void {
    const now = performance.now();
    for (const [key, until] of this.#distrusted) if (until <= now) this.#distrusted.delete(key);
    const ms = Math.max(MIN_DISTRUST_MS, DISTRUST_POLLS * this.database.timeouts.pollIntervalMs);
    this.#distrusted.set(sentinel, now + ms);
  }

  async #checkOnce(signal: AbortSignal): Promise<void> {
    const generation = this.#generation;
    const started = performance.now();
    this.#urgent = false;
    try {
      await this.#check(generation, signal);
    } finally {
      this.#lastCheckAt = performance.now();
      if (!signal.aborted) {
        this.#stats.resolutionSeconds.observe((performance.now() - started) / 1000);
      }
      this.#resolved.resolve();
      this.#resolved = Promise.withResolvers<void>();
    }
  }

  async #check(generation: number, signal: AbortSignal): Promise<void> {
    // A newer event makes this check's findings stale: the loop runs a fresh one at once.
    const stale = () => {
      if (signal.aborted) return true;
      if (this.#generation === generation) return false;
      this.#wakePending = true;
      return true;
    };
    const name = this.database.name;
    const views = await this.#sentinels.masterViews(name, signal);
    if (stale()) return;
    const agreement = agreeOnMaster(name, views);
    if (agreement.kind === "agreed") this.#failoverTimeoutMs = agreement.failoverTimeoutMs;
    this.#settlePendingSwitch(views, agreement);

    if (this.#hold) {
      if (!this.#holdEnds(this.#hold, views, agreement)) return;
      this.#hold = undefined;
    } else if (
      agreement.kind === "agreed" && agreement.failoverInProgress && this.#lastConfirmed &&
      sameAddress(agreement.address, this.#lastConfirmed)
    ) {
      // A failover is under way that no event announced here (a missed message): hold now.
      this.#startHold(this.#lastConfirmed, `a failover reported by ${agreement.via}`, undefined);
      return;
    }

    const known = this.#master?.address ?? this.#lastConfirmed;
    let candidate: Address;
    let via: string;
    let epoch: number | undefined;
    /** Whether the Sentinels' view names the candidate (or named it at a newer epoch). */
    let named = true;
    if (agreement.kind === "agreed") {
      if (
        known && !sameAddress(agreement.address, known) && this.#epoch !== undefined &&
        agreement.epoch < this.#epoch
      ) {
        // An older view never overrides a newer one: check the master there is.
        candidate = known;
        via = `the master confirmed at config-epoch ${this.#epoch} (Sentinels now name ${
          formatAddress(agreement.address)
        } at the older config-epoch ${agreement.epoch})`;
        epoch = this.#epoch;
      } else {
        candidate = agreement.address;
        via = agreement.via;
        epoch = agreement.origin === "configured" ? agreement.epoch : undefined;
      }
    } else if (this.#master) {
      // No agreement (every Sentinel down, say): a master still confirmed, and never cut since a
      // view named it, keeps serving while it says it is master. One that was cut waits for a view.
      candidate = this.#master.address;
      via = `the master confirmed before (${agreement.detail})`;
      epoch = this.#epoch;
      named = false;
    } else {
      this.#fail(agreement.kind === "unknown" ? "unknown" : "unreachable", agreement.detail);
      // A master that went silent keeps its tunnels until the silence is long enough to cut
      // them, even when nothing names it any more: keep asking it, to cut, never to confirm.
      const silent = this.#silence;
      if (silent && !silent.cut) {
        const role = await this.#checkRole(silent.address, signal);
        if (stale()) return;
        if (role.kind === "unreachable" && role.silent) this.#noteSilence(silent.address);
        else this.#silence = undefined;
      }
      return;
    }

    if (
      this.#fencedSince !== undefined &&
      !(agreement.kind === "agreed" && namedByConfiguredMajority(views, candidate))
    ) {
      // The fence opens only with a majority of the configured Sentinels behind a master.
      this.#fail(
        "fenced",
        `no majority of the configured Sentinels names ${formatAddress(candidate)} (${
          agreement.kind === "agreed" ? agreement.via : agreement.detail
        })`,
      );
      return;
    }
    const namedByMajority = agreement.kind === "agreed" &&
      sameAddress(agreement.address, candidate) && namedByConfiguredMajority(views, candidate);
    if (namedByMajority && this.#master && sameAddress(this.#master.address, candidate)) {
      // A majority names the master in use: the fence's time starts again, however long its
      // ROLE takes (a busy master is not lost).
      this.#renewFence();
    }
    if (known && !sameAddress(known, candidate)) {
      // A trusted view names another node: every other node is demoted, so cut their clients now.
      this.#cutOff(candidate, via);
    }
    const role = await this.#checkRole(candidate, signal);
    if (stale()) return;
    this.#probe?.keepOnly([candidate]);
    if (!(role.kind === "unreachable" && role.silent)) this.#silence = undefined;
    this.#actOnRole(candidate, via, epoch, named, role);
    if (this.#master && sameAddress(this.#master.address, candidate)) {
      // Confirmed. With a majority behind it the fence's time starts again; without one (a
      // minority cut off with this host, discovered Sentinels) it runs on, started if it was not.
      if (namedByMajority) this.#renewFence();
      else if (this.#fenceTimer === undefined) this.#scheduleFence();
    }
    if (this.#master && agreement.kind !== "agreed") {
      // Serving, but say why the Sentinels did not agree (readiness and the log show it).
      this.#fail(agreement.kind === "unknown" ? "unknown" : "unreachable", agreement.detail);
    }
  }

  /**
   * Whether a hold ends with this check: when the Sentinels name another master
   * (the switch), or when the failover is over without one. The Sentinel that
   * announced it is asked in its own words: a round without its answer ends
   * nothing, and a hold only ends with a view that names a master.
   */
  #holdEnds(hold: FailoverHold, views: readonly SentinelView[], agreement: Agreement): boolean {
    if (agreement.kind !== "agreed") return false;
    if (!sameAddress(agreement.address, hold.master)) return true;
    const own = hold.from === undefined
      ? undefined
      : views.find((v) => formatAddress(v.sentinel) === hold.from)?.answer;
    const ownNamesHeld = own?.kind === "master" && sameAddress(own.address, hold.master);
    const ownUnderWay = ownNamesHeld && own.flags.includes("failover_in_progress");
    const expired = performance.now() >= hold.until;
    if (agreement.failoverInProgress || ownUnderWay) {
      hold.confirmed = true;
      // A configured Sentinel's word holds for as long as it says; the time limit bounds the rest.
      if (!expired || agreement.failoverReportedByConfigured) return false;
    } else if (hold.from !== undefined && !ownNamesHeld && !expired) {
      // The announcing Sentinel's own view did not come (or names another node): wait for it.
      return false;
    }
    const why = expired
      ? "it outlived the failover-timeout with no switch"
      : "no Sentinel reports a failover under way";
    if (!hold.confirmed && hold.from !== undefined) {
      this.#distrust(hold.from);
      log.warn("Database {database}: ignored {reason}: {why}; checking {master} again", {
        database: this.database.name,
        reason: hold.reason,
        why,
        master: formatAddress(hold.master),
      });
    } else {
      log.warn(
        "Database {database}: the failover of {master} ended without a switch ({why}); checking it again",
        { database: this.database.name, master: formatAddress(hold.master), why },
      );
    }
    return true;
  }

  /**
   * A +switch-master that the views do not bear out is refused. Its Sentinel
   * is distrusted for a while only when its own view came, so that a reply
   * lost in one round costs an honest Sentinel nothing.
   */
  #settlePendingSwitch(views: readonly SentinelView[], agreement: Agreement): void {
    const pending = this.#pendingSwitch;
    if (!pending) return;
    this.#pendingSwitch = undefined;
    if (agreement.kind === "agreed" && sameAddress(agreement.address, pending.to)) return;
    const own = views.find((v) => formatAddress(v.sentinel) === pending.sentinel)?.answer;
    if (own?.kind === "master") this.#distrust(pending.sentinel);
    log.warn(
      "Database {database}: ignored +switch-master from {sentinel} to {to}: no configured Sentinel or majority names it ({detail})",
      {
        database: this.database.name,
        sentinel: pending.sentinel,
        to: formatAddress(pending.to),
        detail: agreement.kind === "agreed"
          ? `they name ${formatAddress(agreement.address)}: ${agreement.via}`
          : agreement.detail,
      },
    );
  }

  #actOnRole(
    candidate: Address,
    via: string,
    epoch: number | undefined,
    named: boolean,
    role: RoleCheck,
  ): void {
    const where = formatAddress(candidate);
    if (role.kind === "role" && role.role === "master") {
      this.#confirm(candidate, via, epoch);
    } else if (role.kind === "role") {
      // It says it is not master: nobody may keep writing to it through the tunnel.
      this.#demote(candidate, `it says it is ${role.role}`);
      // If it was kept against an older view, that view may be right after all (Sentinels redeployed).
      if (this.#lastConfirmed && sameAddress(this.#lastConfirmed, candidate)) {
        this.#epoch = undefined;
      }
      this.#fail("not-master", `${via} names ${where}, but it says it is ${role.role}`);
    } else if (
      role.kind === "busy" && named && this.#master && sameAddress(this.#master.address, candidate)
    ) {
      // Alive but slow or busy, and still the master Sentinel names: clients get Redis's own answer.
      this.#fail("busy", `master ${where} is busy: ${role.detail}`);
    } else if (role.kind === "unreachable" || role.kind === "busy") {
      // Not known to be demoted: keep its tunnels, but send no new client there.
      this.#master = undefined;
      this.#fail("master-unreachable", `master ${where} from ${via}: ${role.detail}`);
      if (role.kind === "unreachable" && role.silent) this.#noteSilence(candidate);
    } else {
      this.#master = undefined;
      this.#fail("error", role.detail);
    }
  }

  /**
   * Every connect to `address` timed out (a silent link, not a dead process,
   * which refuses). Its tunnels would hang until TCP gives up (about 15
   * minutes of retransmissions for one with a command in flight, which
   * keepalive does not probe), so once it stays silent long enough they are cut.
   */
  #noteSilence(address: Address): void {
    const now = performance.now();
    const silence = this.#silence;
    if (!silence || !sameAddress(silence.address, address)) {
      this.#silence = { address, since: now, cut: false };
      return;
    }
    const boundMs = silentCutMs(this.database.timeouts.pollIntervalMs);
    if (silence.cut || now - silence.since < boundMs) return;
    silence.cut = true;
    const closed = this.#registry.closeTo(address);
    log.warn(
      "Database {database}: master {master} has been silent for {ms} ms (every connect timed out); closed {closed} client connections to it, which would hang until TCP gives up",
      {
        database: this.database.name,
        master: formatAddress(address),
        ms: Math.round(now - silence.since),
        closed,
      },
    );
  }

  #startHold(master: Address, reason: string, sentinel: string | undefined): void {
    const now = performance.now();
    this.#hold = {
      master,
      reason,
      since: Date.now(),
      until: now + this.#failoverTimeoutMs,
      from: sentinel,
      confirmed: sentinel === undefined,
    };
    this.#master = undefined;
    const closed = this.#registry.closeTo(master);
    const detail = `failover of ${formatAddress(master)} under way (${reason})`;
    log.warn(
      "Database {database}: {detail}: holding new clients until the new master is confirmed; closed {closed} client connections to the old master",
      { database: this.database.name, detail, closed },
    );
    this.#fail("failover", detail);
  }

  /** A trusted view names `address`: every other node is demoted, so cut their clients off now. */
  #cutOff(address: Address, reason: string): void {
    const previous = this.#master;
    this.#master = undefined;
    const closed = this.#registry.closeAllExcept(address);
    log.warn(
      "Database {database}: {to} is named by {reason} (was {from}); closed {closed} client connections to other nodes",
      {
        database: this.database.name,
        reason,
        from: previous
          ? formatAddress(previous.address)
          : this.#lastConfirmed
          ? `${formatAddress(this.#lastConfirmed)}, unconfirmed`
          : "none",
        to: formatAddress(address),
        closed,
      },
    );
    this.#notify();
  }

  #confirm(address: Address, via: string, epoch: number | undefined): void {
    const previous = this.#master;
    const recovered = this.#problem;
    this.#problem = undefined;
    if (recovered?.kind !== "unreachable" && recovered?.kind !== "unknown") {
      this.#lastFailureLog.kind = "";
    }
    if (epoch !== undefined) this.#epoch = Math.max(epoch, this.#epoch ?? 0);
    if (previous && sameAddress(previous.address, address)) {
      if (epoch !== undefined && epoch !== previous.epoch) this.#master = { ...previous, epoch };
      return;
    }
    this.#master = {
      address,
      confirmation: ++this.#confirmations,
      confirmedAt: Date.now(),
      via,
      epoch,
    };
    const closed = this.#registry.closeAllExcept(address);
    const from = this.#lastConfirmed;
    this.#lastConfirmed = address;
    if (!from || !sameAddress(from, address)) {
      if (from) this.#stats.masterChanges++;
      this.#discoveryDueAt = 0;
      this.#onMasterChange?.({ database: this.database.name, from, to: address, via });
    }
    log.info(
      "Database {database}: master is {to} (was {from}), learned via {via}; closed {closed} stale connections",
      {
        database: this.database.name,
        from: previous
          ? formatAddress(previous.address)
          : recovered
          ? `none: ${recovered.detail}`
          : "none",
        to: formatAddress(address),
        via,
        closed,
      },
    );
    this.#notify();
  }

  /** `address` is not master: close its tunnels, and stop sending clients there. */
  #demote(address: Address, reason: string): void {
    if (this.#master && sameAddress(this.#master.address, address)) this.#master = undefined;
    const closed = this.#registry.closeTo(address);
    this.#notify();
    if (closed === 0) return;
    log.warn(
      "Database {database}: {from} is not master: {reason}; closed {closed} client connections to it",
      { database: this.database.name, from: formatAddress(address), reason, closed },
    );
  }

  /** Records a problem and wakes waiters; it changes no master by itself. */
  #fail(failed: MasterProblem["kind"], failure: string): void {
    // While the fence is closed, every problem is the fence's and says so first: it is why no
    // master is used.
    const kind = this.#fencedSince === undefined ? failed : "fenced";
    const detail = this.#fencedSince !== undefined && failed !== "fenced"
      ? `write fence closed since ${
        new Date(this.#fencedSince).toISOString()
      } (no majority of the configured Sentinels confirms a master); ${failure}`
      : failure;
    const now = Date.now();
    const last = this.#lastFailureLog;
    const repeated = last.kind === kind && last.detail === detail;
    if (!repeated) last.since = now;
    this.#problem = { kind, detail, since: last.since };
    // The same failure every poll would flood the log: repeat it at most every 30 s, with a count.
    if (!repeated || now - last.at >= 30_000) {
      log.warn(
        "Database {database}: check failed ({kind}): {detail}{keeping}{repeats}",
        {
          database: this.database.name,
          kind,
          detail,
          keeping: this.#master ? `; keeping master ${formatAddress(this.#master.address)}` : "",
          master: this.#master ? formatAddress(this.#master.address) : null,
          repeats: repeated
            ? ` (failed ${this.#lastFailureLog.suppressed + 1} times since the last report)`
            : "",
        },
      );
      this.#lastFailureLog = { kind, detail, since: last.since, at: now, suppressed: 0 };
    } else {
      this.#lastFailureLog.suppressed++;
    }
    this.#notify();
  }

  async #discoverIfDue(signal: AbortSignal): Promise<void> {
    const now = Date.now();
    if (now < this.#discoveryDueAt) return;
    if (this.#discoveryFollowUps > 0) {
      this.#discoveryFollowUps--;
      this.#discoveryDueAt = now + DISCOVERY_FOLLOW_UP_MS;
    } else {
      this.#discoveryDueAt = now + this.#discoveryIntervalMs;
    }
    await this.#sentinels.discoverSentinels(this.database.name, signal);
    const replicas = await this.#sentinels.replicas(this.database.name, signal);
    if (replicas) this.#replicas = { replicas, at: Date.now() };
  }

  /** Wakes every waiter; each checks the state again. */
  #notify(): void {
    this.#changed.resolve();
    this.#changed = Promise.withResolvers<void>();
  }

  /** Sleeps `ms`, or until woken; a wake that is not urgent still keeps the gap between checks. */
  async #sleepUnlessWoken(ms: number, signal: AbortSignal): Promise<void> {
    const until = performance.now() + ms;
    while (!signal.aborted) {
      const gapLeft = this.#lastCheckAt + MIN_CHECK_GAP_MS - performance.now();
      if (this.#wakePending && (this.#urgent || gapLeft <= 0)) break;
      const left = this.#wakePending ? gapLeft : until - performance.now();
      if (left <= 0) break;
      const woken = new AbortController();
      this.#wake = () => woken.abort();
      try {
        await sleep(left, AbortSignal.any([signal, woken.signal]));
      } finally {
        this.#wake = undefined;
      }
      if (woken.signal.aborted) this.#wakePending = true;
    }
    this.#wakePending = false;
  }
}

/** Whether a strict majority of the configured Sentinels name `address`. */
function namedByConfiguredMajority(views: readonly SentinelView[], address: Address): boolean {
  let configured = 0;
  let naming = 0;
  for (const { origin, answer } of views) {
    if (origin !== "configured") continue;
    configured++;
    if (answer.kind === "master" && sameAddress(answer.address, address)) naming++;
  }
  return naming * 2 > configured;
}

/** How long a master stays silent before its tunnels are cut: three polls, and at least 3 s. */
export function silentCutMs(pollIntervalMs: number): number {
  return Math.max(3 * pollIntervalMs, 3000);
}
