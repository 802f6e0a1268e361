/**
 * The control plane of one replica port: which replicas its clients may read
 * from.
 *
 * A replica is usable only when all of these hold, at a check made against
 * the master the {@linkcode MasterWatcher} has confirmed:
 *
 * 1. a Sentinel lists it (`SENTINEL replicas`) without `s_down`, `o_down` or
 *    `disconnected`, and with its master link `ok`;
 * 2. its own ROLE says `slave`, names the confirmed master, and is `connected`;
 * 3. the confirmed master's ROLE lists it as attached: a Sentinel's list alone
 *    never sends a client to a node, and a node that only claims to be a
 *    replica is not one;
 * 4. it is at most `maxLagBytes` behind: the master's offset minus its own,
 *    both read at once.
 *
 * A usable replica is usable for the master confirmation it was checked
 * against only: when the master changes, is lost and confirmed again, or while
 * none is confirmed (a failover), no new client is sent to any replica until a
 * check against the master confirmed now. Events only cut clients off and wake
 * the loop: a promotion or a `+switch-master` naming a replica, or a Sentinel
 * flagging it down, closes its clients at once, and a check under way keeps
 * it out.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { type Address, formatAddress, sameAddress } from "../shared/address.ts";
import type { DatabaseConfig } from "../shared/settings.ts";
import { DatabaseStats } from "../shared/stats.ts";
import { sleep, untilAborted } from "../shared/io.ts";
import type { ClientCutter, ConfirmedMaster, MasterProblem, Targets } from "./master_watcher.ts";

export type { Targets } from "./master_watcher.ts";
import { type RoleCheck, type RoleChecker, RoleProbe } from "./role_probe.ts";
import type { ReplicaInfo, SentinelClient } from "./sentinel_client.ts";
import type { SentinelEvent } from "./sentinel_events.ts";

const log = getLogger(["sentinel-tunnel", "replicas"]);

/** What the replica watcher needs of the master's watcher. */
export interface MasterState {
  readonly database: DatabaseConfig;
  readonly master: ConfirmedMaster | undefined;
  readonly problem: MasterProblem | undefined;
  /** Settles at the next change of the master's state. */
  readonly nextChange: Promise<void>;
  /** The targets of the master itself, for `whenNoReplica: "master"`. */
  readonly targets: Targets | undefined;
  /** How long a failover may take, as the Sentinels say. @default {180000} */
  readonly failoverTimeoutMs?: number;
}

/** One replica as last checked. */
export interface ReplicaStatus {
  readonly address: Address;
  /** Whether new clients may go to it now. */
  readonly usable: boolean;
  /** Why it is not usable; `undefined` when it is. */
  readonly reason: string | undefined;
  /** How far behind the master it was at its last check, in bytes, when known. */
  readonly lagBytes: number | undefined;
  /** The master it was checked against. */
  readonly checkedAgainst: Address | undefined;
  /** Which confirmation of that master: a master confirmed anew (after a gap) is checked anew. */
  readonly confirmation: number | undefined;
  /** When it was last checked (ms since the epoch). */
  readonly checkedAt: number;
}

/** Options for {@linkcode ReplicaWatcher}. */
export interface ReplicaWatcherOptions {
  master: MasterState;
  sentinels: Pick<SentinelClient, "replicas">;
  /** How a node is asked for its role. @default a {@linkcode RoleProbe} with persistent connections */
  checkRole?: RoleChecker;
  /** Cuts the replica port's clients of one replica. */
  registry: Pick<ClientCutter, "closeTo">;
  stats?: DatabaseStats;
}

/** Checks that no event made urgent run at least this far apart. */
const MIN_CHECK_GAP_MS = 100;

/** Replicas an event may take out while one check runs; past it, the check is void. */
const MAX_OUT_DURING_CHECK = 1024;

/** Replicas held as being promoted at once; the oldest goes first. */
const MAX_PROMOTING = 64;

/** When the Sentinels do not say: Sentinel's own default failover-timeout. */
const DEFAULT_FAILOVER_TIMEOUT_MS = 180_000;

/** Sentinel flags that rule a replica out. */
const DOWN_FLAGS = ["s_down", "o_down", "disconnected"];

/** Watches the replicas of one database for one replica port. */
export class ReplicaWatcher {
  readonly #master: MasterState;
  readonly #sentinels: Pick<SentinelClient, "replicas">;
  readonly #probe: RoleProbe | undefined;
  readonly #checkRole: RoleChecker;
  readonly #registry: Pick<ClientCutter, "closeTo">;
  readonly #stats: DatabaseStats;
  /** Every replica last checked, by lower-case `host:port`. */
  #replicas = new Map<string, ReplicaStatus>();
  /** The Sentinels' list last received, used while none answers. */
  #listed: readonly ReplicaInfo[] | undefined;
  #problem: MasterProblem | undefined;
  /** The problem before the first check against a master. */
  readonly #unchecked: MasterProblem = {
    kind: "unreachable",
    detail: "the replicas are not checked yet",
    since: Date.now(),
  };
  /** The targets made from one map of replicas (replaced, never changed) and one master. */
  #targetsCache: {
    replicas: Map<string, ReplicaStatus> | undefined;
    master: ConfirmedMaster | undefined;
    targets: Targets | undefined;
  } = { replicas: undefined, master: undefined, targets: undefined };
  #changed = Promise.withResolvers<void>();
  #resolved = Promise.withResolvers<void>();
  /**
   * While a check runs, the replicas an event took out meanwhile, with why:
   * the check's verdict on them is stale, and they stay out until the next one.
   */
  #outDuringCheck: Map<string, string> | undefined;
  /** Set when more replicas were taken out during a check than it can remember: it is void. */
  #checkVoid = false;
  /**
   * Replicas a Sentinel announced it is promoting, with why and until when
   * (`performance.now()`): out of use until the failover ends or times out,
   * whatever the master watcher makes of the event.
   */
  readonly #promoting = new Map<string, { reason: string; until: number; from: string }>();
  /** Replicas taken out of use with their clients kept (they may be fine): guarded like those in use. */
  readonly #suspended = new Set<string>();
  /** The master confirmation the last check began with. */
  #lastConfirmation: number | undefined;
  /** The replicas the master's ROLE listed at the last check that had it, by lower-case `host:port`. */
  #masterListed = new Set<string>();
  #wake: (() => void) | undefined;
  #wakePending = false;
  #urgent = false;
  #lastCheckAt = -Infinity;

  constructor(options: ReplicaWatcherOptions) {
    this.#master = options.master;
    this.#sentinels = options.sentinels;
    if (options.checkRole) {
      this.#checkRole = options.checkRole;
    } else {
      this.#probe = new RoleProbe(
        () => ({
          connectTimeoutMs: this.database.timeouts.masterConnectMs,
          replyTimeoutMs: this.database.timeouts.masterReplyMs,
          auth: this.database.masterAuth,
          tls: this.database.tls,
        }),
        // A node that closes its ROLE connection died or restarted: whatever it is now, check first.
        (address) => this.#suspend(address, "it closed its ROLE connection; checking it again"),
      );
      this.#checkRole = this.#probe.check;
    }
    this.#registry = options.registry;
    this.#stats = options.stats ?? new DatabaseStats();
  }

  /** The port's current settings, as the master's watcher holds them. */
  get database(): DatabaseConfig {
    return this.#master.database;
  }

  get stats(): DatabaseStats {
    return this.#stats;
  }

  /** Every replica last checked, usable or not, in the Sentinel's order. */
  get replicas(): ReplicaStatus[] {
    return [...this.#replicas.values()];
  }

  /** Why no client can be served now, or the last failed check. */
  get problem(): MasterProblem | undefined {
    if (this.targets) return undefined;
    const masterProblem = this.#master.problem;
    if (!this.#master.master) {
      return masterProblem?.kind === "unknown" ? masterProblem : {
        kind: masterProblem?.kind ?? "unreachable",
        detail: `no confirmed master to check the replicas against: ${
          masterProblem?.detail ?? "still resolving"
        }`,
        since: masterProblem?.since ?? Date.now(),
      };
    }
    return this.#problem ?? this.#unchecked;
  }

  /**
   * Where a new client may go: the usable replicas checked against the master
   * confirmed now; else, with `whenNoReplica: "master"`, the confirmed master.
   */
  get targets(): Targets | undefined {
    const master = this.#master.master;
    const cache = this.#targetsCache;
    if (cache.replicas !== this.#replicas || cache.master !== master) {
      const addresses = master
        ? [...this.#replicas.values()].filter((r) =>
          // The same confirmation, not only the same address: a master lost and found again
          // (a failover that aborted) has its replicas checked again before they get clients.
          r.usable && r.confirmation === master.confirmation
        ).map((r) => r.address)
        : [];
      this.#targetsCache = {
        replicas: this.#replicas,
        master,
        targets: addresses.length > 0 ? { kind: "replica", addresses } : undefined,
      };
    }
    const targets = this.#targetsCache.targets;
    if (targets) return targets;
    return this.database.whenNoReplica === "master" ? this.#master.targets : undefined;
  }

  /** Waits up to `timeoutMs` for somewhere to send a client. */
  async waitForTargets(timeoutMs: number, signal: AbortSignal): Promise<Targets | undefined> {
    const deadline = AbortSignal.any([AbortSignal.timeout(timeoutMs), signal]);
    const expired = untilAborted(deadline);
    for (;;) {
      const targets = this.targets;
      if (targets || deadline.aborted) return targets;
      if (this.#master.problem?.kind === "unknown") return undefined;
      await Promise.race([this.#changed.promise, this.#master.nextChange, expired]);
    }
  }

  /** A client could not connect to `address`: no new client goes there until a check passes. */
  reportUnreachable(address: Address): void {
    this.#suspend(address, "a client could not connect to it; checking it again");
  }

  /** The settings changed (a reload): new ROLE connections, with the new credentials, and a check. */
  settingsChanged(): void {
    this.#probe?.reset();
    this.wake(true);
  }

  /** Waits up to `timeoutMs` for the check under way, or the next one, to end. */
  async nextResolution(timeoutMs: number, signal: AbortSignal): Promise<void> {
    const deadline = AbortSignal.any([AbortSignal.timeout(timeoutMs), signal]);
    if (deadline.aborted) return;
    await Promise.race([this.#resolved.promise, untilAborted(deadline)]);
  }

  /**
   * A Sentinel event for this database. A replica being promoted, switched to,
   * or flagged down loses its clients at once; the rest only wakes the loop.
   */
  onEvent(event: SentinelEvent, source: { readonly address: Address }): void {
    const from = formatAddress(source.address);
    switch (event.kind) {
      case "switch-master":
        // The announcing Sentinel's failover is over: its replica is the master now, or not.
        this.#endPromotions(from);
        return this.#cut(event.to, `+switch-master from ${from} makes it the master`);
      case "promotion":
        if (event.replica) {
          const reason = `${event.channel} from ${from}: it is being promoted`;
          this.#holdPromoted(event.replica, reason, from);
          return this.#cut(event.replica, reason);
        }
        return this.wake(true);
      case "instance":
        if (event.instanceType === "slave" && event.change === "down") {
          return this.#cut(event.instance, `+sdown from ${from}: Sentinel sees it down`);
        }
        return this.wake();
      case "failover-end":
        // Only the end of the announcing Sentinel's own failover releases its replica.
        this.#endPromotions(from);
        return this.wake();
      case "sentinel-added":
        return;
    }
  }

  /** Runs the next check soon: at once when `urgent`. */
  wake(urgent = false): void {
    if (urgent) this.#urgent = true;
    if (this.#wake) this.#wake();
    else this.#wakePending = true;
  }

  /** Checks until `signal` aborts. An unexpected error is logged and the loop goes on. */
  async run(signal: AbortSignal): Promise<void> {
    const following = this.#followMaster(signal);
    let crashes = 0;
    let checkedFor: number | undefined;
    while (!signal.aborted) {
      try {
        checkedFor = await this.#checkOnce(signal);
        crashes = 0;
      } catch (error) {
        if (signal.aborted) break;
        crashes++;
        log.error("Database {database}: replica check failed unexpectedly: {error}", {
          database: this.database.name,
          error: error instanceof Error ? (error.stack ?? error.message) : String(error),
        });
        await sleep(Math.min(100 * 2 ** crashes, 5000), signal);
      }
      await this.#sleepUntilDue(checkedFor, signal);
    }
    await following;
    this.#probe?.reset();
    this.#notify();
  }

  /**
   * Acts on each new master confirmation at once, whatever a check under way
   * waits for: a replica made master reads no more for this port, and the
   * failover that promoted it (or aborted) is over.
   */
  async #followMaster(signal: AbortSignal): Promise<void> {
    const aborted = untilAborted(signal);
    while (!signal.aborted) {
      const master = this.#master.master;
      if (master && master.confirmation !== this.#lastConfirmation) {
        this.#lastConfirmation = master.confirmation;
        this.#promoting.clear();
        // Only a node that was a replica can have clients here.
        if (this.#replicas.has(keyOf(master.address))) {
          this.#takeOut(master.address, "it is the confirmed master", true);
        }
      }
      await Promise.race([this.#master.nextChange, aborted]);
    }
  }

  /** Returns the confirmation of the master the check was made against. */
  async #checkOnce(signal: AbortSignal): Promise<number | undefined> {
    this.#urgent = false;
    this.#outDuringCheck = new Map();
    this.#checkVoid = false;
    try {
      return await this.#check(signal);
    } finally {
      this.#outDuringCheck = undefined;
      this.#lastCheckAt = performance.now();
      this.#resolved.resolve();
      this.#resolved = Promise.withResolvers<void>();
    }
  }

  async #check(signal: AbortSignal): Promise<number | undefined> {
    const master = this.#master.master;
    // No master to check against (a failover, say): no replica is usable for new clients, and the
    // live ones keep reading, unless one says it is not a replica any more.
    if (!master) {
      await this.#guardWithoutMaster(signal);
      return undefined;
    }
    const name = this.database.name;
    const listed = await this.#sentinels.replicas(name, signal);
    if (listed) this.#listed = listed;
    const list = this.#listed ?? [];
    const candidates: { address: Address; flagged: string | undefined }[] = [];
    for (const info of list) {
      if (sameAddress(info.replica, master.address)) continue;
      const down = info.flags.filter((f) => DOWN_FLAGS.includes(f));
      const flagged = down.length > 0
        ? `Sentinel ${info.reportedBy} flags it ${down.join(",")}`
        : info.masterLinkStatus !== null && info.masterLinkStatus !== "ok"
        ? `Sentinel ${info.reportedBy} reports its master link ${info.masterLinkStatus}`
        : undefined;
      candidates.push({ address: info.replica, flagged });
    }
    // Only replicas the master itself listed are asked, so that a Sentinel's list, however long
    // or false, opens no connection anywhere else. Those it listed last time are asked with the
    // master, for offsets read at the same moment; one it lists for the first time, just after.
    const healthy = candidates.filter((c) => c.flagged === undefined);
    const known = healthy.filter((c) => this.#masterListed.has(keyOf(c.address)));
    const [masterRole, ...knownRoles] = await Promise.all([
      this.#checkRole(master.address, signal),
      ...known.map((c) => this.#checkRole(c.address, signal)),
    ]);
    const masterView = masterRole!.kind === "role" && masterRole!.role === "master"
      ? masterRole!.asMaster
      : undefined;
    const listedNow = masterView
      ? new Set(masterView.replicas.map((r) => keyOf(r.address)))
      : this.#masterListed;
    const added = healthy.filter((c) =>
      listedNow.has(keyOf(c.address)) && !this.#masterListed.has(keyOf(c.address))
    );
    const addedRoles = await Promise.all(added.map((c) => this.#checkRole(c.address, signal)));
    if (signal.aborted) return undefined;
    if (this.#master.master?.confirmation !== master.confirmation || this.#checkVoid) {
      // The master changed under this check: run a fresh one at once.
      this.#wakePending = true;
      this.#urgent = true;
      return undefined;
    }
    this.#masterListed = listedNow;
    const asked = [...known, ...added];
    this.#probe?.keepOnly([master.address, ...asked.map((c) => c.address)]);
    const roles = [...knownRoles, ...addedRoles];
    const roleOf = new Map(asked.map((c, i) => [keyOf(c.address), roles[i]!]));
    const masterDetail = masterView ? undefined : describeMasterRole(master.address, masterRole!);
    const now = Date.now();
    const next = new Map<string, ReplicaStatus>();
    for (const candidate of candidates) {
      const key = keyOf(candidate.address);
      const before = this.#replicas.get(key);
      const role = roleOf.get(key);
      // An event that took it out while this check ran is newer than what the check saw.
      const out = this.#outDuringCheck?.get(key) ?? this.#promotingReason(key);
      const verdict = out !== undefined
        ? { reason: out, lagBytes: undefined }
        : candidate.flagged !== undefined
        ? { reason: candidate.flagged, lagBytes: undefined }
        : judge(
          candidate.address,
          role,
          master.address,
          master.confirmation,
          masterView,
          masterDetail,
          before,
          this.database.maxLagBytes,
        );
      next.set(key, {
        address: candidate.address,
        usable: verdict.reason === undefined,
        reason: verdict.reason,
        lagBytes: verdict.lagBytes,
        checkedAgainst: master.address,
        confirmation: master.confirmation,
        checkedAt: now,
      });
    }
    this.#apply(next, master.address, listed === undefined);
    return master.confirmation;
  }

  /** Takes a check's verdicts: clients of a replica no longer usable are cut at once. */
  #apply(next: Map<string, ReplicaStatus>, master: Address, listStale: boolean): void {
    const name = this.database.name;
    for (const [key, before] of this.#replicas) {
      const after = next.get(key);
      if (after?.usable) continue;
      const closed = this.#registry.closeTo(before.address);
      const reason = after?.reason ?? "no Sentinel lists it any more";
      if (before.usable || closed > 0) {
        log.warn(
          "Database {database}: replica {replica} is not usable: {reason}; closed {closed} client connections to it",
          {
            database: name,
            port: this.database.port,
            replica: formatAddress(before.address),
            reason,
            closed,
          },
        );
      }
    }
    for (const [key, after] of next) {
      const before = this.#replicas.get(key);
      if (after.usable && !before?.usable) {
        log.info(
          "Database {database}: replica {replica} is usable (lag {lag} bytes, master {master})",
          {
            database: name,
            port: this.database.port,
            replica: formatAddress(after.address),
            lag: after.lagBytes ?? null,
            master: formatAddress(master),
          },
        );
      } else if (!after.usable && before?.reason !== after.reason && !before?.usable) {
        log.debug("Database {database}: replica {replica} is not usable: {reason}", {
          database: name,
          replica: formatAddress(after.address),
          reason: after.reason,
        });
      }
    }
    this.#replicas = next;
    // Every replica has its verdict now: the ones out of use lost their clients above.
    this.#suspended.clear();
    this.#problem = this.#summarize(
      `no Sentinel lists a replica of master ${formatAddress(master)}${
        listStale ? " (no Sentinel answered SENTINEL replicas)" : ""
      }`,
    );
    this.#notify();
  }

  /** Why no replica is usable, from the verdicts in force; `undefined` while one is. */
  #summarize(whenNone: string): MasterProblem | undefined {
    const all = [...this.#replicas.values()];
    if (all.some((r) => r.usable)) return undefined;
    return {
      kind: "unreachable",
      detail: all.length === 0
        ? whenNone
        : all.map((r) => `replica ${formatAddress(r.address)}: ${r.reason}`).join("; "),
      since: this.#problem?.since ?? Date.now(),
    };
  }

  /** Cuts `address`'s clients and takes it out of use until a check finds it usable again. */
  #cut(address: Address, reason: string): void {
    this.#takeOut(address, reason, true);
    this.wake(true);
  }

  /**
   * Takes `address` out of use, keeping its clients, until a check finds it
   * usable: it may be fine. The check keeps the gap between checks, so that a
   * node that closes every connection cannot make them run back to back.
   */
  #suspend(address: Address, reason: string): void {
    this.#takeOut(address, reason, false);
    this.wake();
  }

  /** Keeps `replica` out of use while a Sentinel's failover may promote it. */
  #holdPromoted(replica: Address, reason: string, from: string): void {
    const key = keyOf(replica);
    this.#promoting.delete(key);
    if (this.#promoting.size >= MAX_PROMOTING) {
      // Full (a flood of announcements): nodes that are no replica here go first.
      const drop = [...this.#promoting.keys()].find((k) => !this.#replicas.has(k)) ??
        this.#promoting.keys().next().value!;
      this.#promoting.delete(drop);
    }
    // At least Sentinel's default failover-timeout: one Sentinel's small value shortens nothing.
    const holdMs = Math.max(
      this.#master.failoverTimeoutMs ?? DEFAULT_FAILOVER_TIMEOUT_MS,
      DEFAULT_FAILOVER_TIMEOUT_MS,
    );
    this.#promoting.set(key, { reason, until: performance.now() + holdMs, from });
  }

  /** The failover `from` announced is over: its replicas are held no more. */
  #endPromotions(from: string): void {
    for (const [key, promoting] of this.#promoting) {
      if (promoting.from === from) this.#promoting.delete(key);
    }
  }

  #takeOut(address: Address, reason: string, cutClients: boolean): void {
    const key = keyOf(address);
    // Only this replica's verdict goes stale: a flood of events about one replica starves no check.
    if (this.#outDuringCheck) {
      if (this.#outDuringCheck.size < MAX_OUT_DURING_CHECK) this.#outDuringCheck.set(key, reason);
      else this.#checkVoid = true;
    }
    const before = this.#replicas.get(key);
    if (before?.usable) {
      const next = new Map(this.#replicas);
      next.set(key, { ...before, usable: false, reason });
      this.#replicas = next;
      this.#problem = this.#summarize("no replica is usable");
    }
    const closed = cutClients ? this.#registry.closeTo(address) : 0;
    if (cutClients) this.#suspended.delete(key);
    else if (before?.usable || this.#suspended.has(key)) this.#suspended.add(key);
    if (before?.usable || closed > 0) {
      log.warn(
        "Database {database}: replica {replica}: {reason}; {what}",
        {
          database: this.database.name,
          replica: formatAddress(address),
          reason,
          what: cutClients
            ? `closed ${closed} client connections to it`
            : "no new client goes to it until it is checked",
          closed,
        },
      );
    }
    this.#notify();
  }

  /** Why a replica a Sentinel is promoting is out of use, while it is. */
  #promotingReason(key: string): string | undefined {
    const promoting = this.#promoting.get(key);
    if (!promoting) return undefined;
    if (performance.now() < promoting.until) return promoting.reason;
    this.#promoting.delete(key);
    return undefined;
  }

  /**
   * With no confirmed master, nothing is checked against one; but a replica
   * in use that says it is not a replica any more (promoted while events were
   * missed), or cannot be reached, loses its clients.
   */
  async #guardWithoutMaster(signal: AbortSignal): Promise<void> {
    const inUse = [...this.#replicas.values()].filter((r) =>
      r.usable || this.#suspended.has(keyOf(r.address))
    );
    const roles = await Promise.all(inUse.map((r) => this.#checkRole(r.address, signal)));
    if (signal.aborted) return;
    inUse.forEach(({ address }, i) => {
      const role = roles[i]!;
      if (role.kind === "role" && role.role !== "slave") {
        this.#cut(address, `it says it is ${role.role}`);
      } else if (role.kind === "unreachable") {
        this.#cut(address, role.detail);
      }
    });
  }

  #notify(): void {
    this.#changed.resolve();
    this.#changed = Promise.withResolvers<void>();
  }

  /**
   * Sleeps a poll interval, or until woken, or until the master changes from
   * the one last checked against (a new master means a check at once).
   */
  async #sleepUntilDue(checkedFor: number | undefined, signal: AbortSignal): Promise<void> {
    const until = performance.now() + this.database.timeouts.pollIntervalMs;
    while (!signal.aborted) {
      // A master confirmed anew, even at the same address, is checked against at once.
      const confirmation = this.#master.master?.confirmation;
      const masterMoved = confirmation !== undefined && confirmation !== checkedFor;
      if (masterMoved) break;
      const gapLeft = this.#lastCheckAt + MIN_CHECK_GAP_MS - performance.now();
      if (this.#wakePending && (this.#urgent || gapLeft <= 0)) break;
      const left = this.#wakePending ? gapLeft : until - performance.now();
      if (left <= 0) break;
      const woken = new AbortController();
      this.#wake = () => {
        this.#wakePending = true;
        woken.abort();
      };
      try {
        await Promise.race([
          sleep(left, AbortSignal.any([signal, woken.signal])),
          this.#master.nextChange,
        ]);
      } finally {
        this.#wake = undefined;
        // Ends the sleep when the master's change came first.
        woken.abort();
      }
    }
    this.#wakePending = false;
  }
}

/** Whether one replica is usable, from its ROLE and the master's, and how far behind it is. */
function judge(
  address: Address,
  /** Absent when it was not asked: the master does not list it, or cannot say. */
  role: RoleCheck | undefined,
  master: Address,
  confirmation: number,
  masterView:
    | { offset: number; replicas: readonly { address: Address; offset: number }[] }
    | undefined,
  masterDetail: string | undefined,
  before: ReplicaStatus | undefined,
  maxLagBytes: number,
): { reason: string | undefined; lagBytes: number | undefined } {
  const no = (reason: string) => ({ reason, lagBytes: undefined });
  if (!role) {
    return no(
      masterView
        ? `master ${formatAddress(master)} does not list it among its replicas`
        : `the master cannot confirm it: ${masterDetail}`,
    );
  }
  if (role.kind !== "role") return no(role.detail);
  if (role.role !== "slave") return no(`it says it is ${role.role}`);
  const own = role.asReplica;
  if (!own) return no("its ROLE reply is malformed");
  if (!sameAddress(own.master, master)) {
    return no(
      `it replicates from ${formatAddress(own.master)}, not the confirmed master ${
        formatAddress(master)
      }`,
    );
  }
  if (own.state !== "connected") return no(`its link to the master is ${own.state}`);
  if (!masterView) {
    // The master cannot say (busy, say): a replica already usable against it stays so on its own
    // word; a new one waits for the master's.
    if (before?.usable && before.confirmation === confirmation) {
      return { reason: undefined, lagBytes: before.lagBytes };
    }
    return no(`the master cannot confirm it: ${masterDetail}`);
  }
  if (!masterView.replicas.some((r) => sameAddress(r.address, address))) {
    return no(`master ${formatAddress(master)} does not list it among its replicas`);
  }
  const lagBytes = Math.max(0, masterView.offset - own.offset);
  if (lagBytes > maxLagBytes) {
    return {
      reason: `it is ${lagBytes} bytes behind the master (maxLagBytes ${maxLagBytes})`,
      lagBytes,
    };
  }
  return { reason: undefined, lagBytes };
}

function describeMasterRole(master: Address, role: RoleCheck): string {
  const where = formatAddress(master);
  if (role.kind !== "role") return role.detail;
  if (role.role !== "master") return `${where} says it is ${role.role}`;
  return `the ROLE reply of ${where} is malformed`;
}

function keyOf(address: Address): string {
  return formatAddress(address).toLowerCase();
}
