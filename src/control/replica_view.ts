/**
 * One master name's replicas: which of them its read ports may send clients
 * to. A replica is healthy only when all of these hold, at a check made
 * against the master confirmed now:
 *
 * 1. a Sentinel lists it (`SENTINEL replicas`): the list says which nodes to
 *    look at, nothing more;
 * 2. its own ROLE says `slave`, names the confirmed master, and is `connected`;
 * 3. the confirmed master's ROLE lists it as attached: a Sentinel's list alone
 *    never sends a client to a node, and a node that only claims to be a
 *    replica is not one.
 *
 * A Sentinel's flags and `master-link-status` for a replica are not rules:
 * Sentinel refreshes them from `INFO` every 10 s, so right after a failover
 * they say `err` or `disconnected` of a replica whose own ROLE, and the
 * master's, say it is connected and in step. The nodes' own word, asked at
 * every check, is the fresher evidence (a `+sdown` still cuts at once, and
 * the next check decides).
 *
 * Its lag is the master's offset minus its own, both read with ROLE at once
 * (the master's reply is the one that confirmed the master in the same
 * check). Each read port applies its own bound (`maxLagBytes`): a healthy
 * replica within it is usable on that port.
 *
 * A verdict holds for the master confirmation it was made against only: when
 * the master changes or is lost and confirmed again, no new client goes to
 * any replica until a check against the master confirmed now. During a
 * failover, while no master is confirmed, the replicas usable against the
 * master being replaced go on serving reads once a Sentinel has named the
 * node being promoted (which is out): they hold the data they held a moment
 * before, and the guard cuts any that stops being a replica or cannot be
 * reached; without that name, none is used. Events only cut clients off: a
 * promotion or a `+switch-master` naming a replica, or a Sentinel flagging it
 * down, closes its clients on every read port at once, and a check under way
 * keeps it out.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { type Address, addressKey, formatAddress, sameAddress } from "../shared/address.ts";
import type { Problem, Targets } from "../shared/route.ts";
import { DEFAULT_FAILOVER_TIMEOUT_MS } from "./failover_hold.ts";
import type { ConfirmedMaster, FailoverReads } from "./master_watcher.ts";
import type { MasterRole, RoleCheck, RoleChecker } from "./role_probe.ts";
import type { ReplicaInfo } from "./sentinel_client.ts";
import type { EventJournal } from "../shared/journal.ts";
import type { MasterStats } from "../shared/stats.ts";
import { type ClosedByPort, closedClause, plural } from "../shared/wording.ts";

const log = getLogger(["sentinel-tunnel", "replicas"]);

/** One replica as last checked, whatever a port's lag bound. */
export interface ReplicaHealth {
  readonly address: Address;
  /** Why it may not serve reads on any port; `undefined` when it is healthy. */
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

/** One replica as a read port sees it: healthy and within the port's `maxLagBytes`, or not. */
export interface ReplicaStatus extends ReplicaHealth {
  /** Whether new clients of the port may go to it now. */
  readonly usable: boolean;
}

/** A replica's health under a port's lag bound. */
export function statusFor(health: ReplicaHealth, maxLagBytes: number): ReplicaStatus {
  if (health.reason !== undefined) return { ...health, usable: false };
  const lag = health.lagBytes;
  if (lag !== undefined && lag > maxLagBytes) {
    return {
      ...health,
      usable: false,
      reason: `it is ${plural(lag, "byte")} behind the master (maxLagBytes ${maxLagBytes})`,
    };
  }
  return { ...health, usable: true };
}

/** A read port, as the replica view cuts its clients. */
export interface ReadPort {
  /** How the log names it, such as `port 6381`. */
  readonly label: string;
  /** The port's lag bound. */
  readonly maxLagBytes: number;
  /** Closes the port's clients of `address`; returns how many. */
  closeTo(address: Address): number;
}

/** Options for {@linkcode ReplicaView}. */
export interface ReplicaViewOptions {
  /** The master name, for the log. */
  name: () => string;
  /** The read ports of the name now. */
  ports: () => readonly ReadPort[];
  /** The master confirmed now. */
  master: () => ConfirmedMaster | undefined;
  /** How long a failover may take, as the Sentinels last said. */
  failoverTimeoutMs: () => number;
  checkRole: RoleChecker;
  /** Runs the next check soon; at once when `urgent`. */
  wake: (urgent?: boolean) => void;
  /** Wakes whoever waits for a change. */
  notify: () => void;
  /** Where what happened is recorded for the status page. */
  journal: EventJournal;
  /** Where clients cut are counted, by why. */
  stats: MasterStats;
}

/** The ROLE asked of each replica in one check, by address key. */
export type AskedReplicas = Map<string, { address: Address; role: Promise<RoleCheck> }>;

/** Replicas an event may take out while one check runs; past it, the check is void. */
const MAX_OUT_DURING_CHECK = 1024;

/** Replicas held as being promoted at once; the oldest goes first. */
const MAX_PROMOTING = 64;

/**
 * How long after a change of master the replicas are expected to be settling
 * (Sentinel points them at the new master; they resync): losing one then is
 * a routine step of the failover, logged at info.
 */
const SETTLING_MS = 10_000;

/** The replicas of one master name; see the module doc. */
export class ReplicaView {
  readonly #options: ReplicaViewOptions;
  /** Every replica last checked, by address key; replaced, never changed, so that it can key caches. */
  #replicas = new Map<string, ReplicaHealth>();
  /** The Sentinels' list last received, used while none answers. */
  #listed: readonly ReplicaInfo[] | undefined;
  /** Whether the last check had no answer to SENTINEL replicas, and used the list before. */
  #listStale = false;
  /** Why no replica may serve reads when no Sentinel lists one; `undefined` before the first check. */
  #noneListed: string | undefined;
  /** Since when no replica has been healthy (ms since the epoch). */
  #unhealthySince = Date.now();
  /**
   * While a check runs, the replicas an event took out meanwhile, with why and
   * whether it cut their clients: the check's verdict on them is stale, and
   * they stay out until the next one (a suspended one keeps its clients).
   */
  #outDuringCheck: Map<string, { reason: string; cut: boolean }> | undefined;
  /** Set when more replicas were taken out during a check than it can remember: it is void. */
  #checkVoid = false;
  /**
   * Replicas a Sentinel announced it is promoting, with why and until when
   * (`performance.now()`): out of use until the failover ends or times out,
   * whatever the master watcher makes of the event.
   */
  readonly #promoting = new Map<string, { reason: string; until: number; from: Address }>();
  /** Replicas taken out of use with their clients kept (they may be fine): guarded like those in use. */
  readonly #suspended = new Set<string>();
  /** The master confirmed last, to tell a change of master from a confirmation anew. */
  #lastMaster: Address | undefined;
  /** Until when (`performance.now()`) the replicas settle after a change of master. */
  #settlingUntil = -Infinity;
  /** The replicas the master's ROLE listed at the last check that had it, by address key. */
  #masterListed = new Set<string>();

  constructor(options: ReplicaViewOptions) {
    this.#options = options;
  }

  /** Every replica last checked, healthy or not, in the Sentinel's order. */
  get replicas(): ReplicaHealth[] {
    return [...this.#replicas.values()];
  }

  /** The map of the last verdicts: a new object whenever one changes. */
  get verdicts(): ReadonlyMap<string, ReplicaHealth> {
    return this.#replicas;
  }

  /** The replicas a Sentinel last listed, with its flags, for the admin API. */
  get listed(): readonly ReplicaInfo[] | undefined {
    return this.#listed;
  }

  /** The usable replicas of a port with `maxLagBytes`, checked against `master`. */
  targetsFor(maxLagBytes: number, master: ConfirmedMaster | undefined): Targets | undefined {
    if (!master) return undefined;
    const addresses: Address[] = [];
    for (const health of this.#replicas.values()) {
      // The same confirmation, not only the same address: a master lost and found again (a
      // failover that aborted) has its replicas checked again before they get clients.
      if (health.confirmation !== master.confirmation) continue;
      if (statusFor(health, maxLagBytes).usable) addresses.push(health.address);
    }
    return addresses.length > 0 ? { kind: "replica", addresses } : undefined;
  }

  /**
   * While a failover holds the master's clients (no master confirmed), and
   * the master watcher allows reads through it: the replicas usable against
   * the master it replaces, but the node it promotes. A replica that keeps
   * following the old master serves the same data it did a moment before; the
   * one being promoted, or any the failover touches (its link drops, it
   * follows another node, it says it is no replica), is out at once.
   */
  targetsDuringFailover(maxLagBytes: number, failover: FailoverReads): Targets | undefined {
    const targets = this.targetsFor(maxLagBytes, failover.held);
    const addresses = targets?.addresses.filter((a) => !sameAddress(a, failover.promoted)) ?? [];
    return addresses.length > 0 ? { kind: "replica", addresses } : undefined;
  }

  /**
   * Whether every replica listed is healthy against `master`'s confirmation:
   * after a failover, the plane checks more often until they are.
   */
  allHealthy(master: ConfirmedMaster): boolean {
    for (const health of this.#replicas.values()) {
      if (health.reason !== undefined || health.confirmation !== master.confirmation) return false;
    }
    return true;
  }

  /** Why a port with `maxLagBytes` has no usable replica while `master` is confirmed. */
  problemFor(maxLagBytes: number, master: ConfirmedMaster): Problem {
    const reasons = [...this.#replicas.values()].map((health) => {
      const status = statusFor(health, maxLagBytes);
      const reason = status.usable && health.confirmation !== master.confirmation
        ? `not checked yet against master ${formatAddress(master.address)}`
        : status.reason;
      return `replica ${formatAddress(health.address)}: ${reason}`;
    });
    return {
      kind: "unreachable",
      detail: this.#noneListed === undefined
        ? "the replicas are not checked yet"
        : reasons.length === 0
        ? this.#noneListed
        : reasons.join("; "),
      since: this.#unhealthySince,
    };
  }

  /** `+switch-master` from `from` to `to`: its failover is over, and `to` is a master now. */
  onSwitch(to: Address, from: Address): void {
    this.#endPromotions(from);
    this.#cut(to, `+switch-master from ${formatAddress(from)} makes it the master`, true);
  }

  /** A Sentinel announced that `replica` is being promoted: out of use until its failover ends. */
  onPromotion(replica: Address, channel: string, from: Address): void {
    const reason = `${channel} from ${formatAddress(from)}: it is being promoted`;
    this.#holdPromoted(replica, reason, from);
    this.#cut(replica, reason, true);
  }

  /** A Sentinel flags a replica down (`+sdown`). */
  onDown(replica: Address, from: Address): void {
    this.#cut(replica, `+sdown from ${formatAddress(from)}: Sentinel sees it down`);
  }

  /** Only the end of the announcing Sentinel's own failover releases its replica. */
  onFailoverEnd(from: Address): void {
    this.#endPromotions(from);
  }

  /**
   * A master is confirmed anew: a replica made master reads no more, and the
   * failover that promoted it (or aborted) is over.
   */
  onMasterConfirmed(master: ConfirmedMaster): void {
    this.#promoting.clear();
    const before = this.#lastMaster;
    this.#lastMaster = master.address;
    if (before && !sameAddress(before, master.address)) {
      this.#settlingUntil = performance.now() + SETTLING_MS;
    }
    // Only a node that was a replica can have clients here.
    if (this.#replicas.has(addressKey(master.address))) {
      this.#takeOut(master.address, "it is the confirmed master", true, true);
    }
  }

  /** A client could not connect to `address`: no new client goes there until a check passes. */
  reportUnreachable(address: Address): void {
    this.#suspend(address, "a client could not connect to it; checking it again");
  }

  /** A node closed its ROLE connection: it died or restarted, so whatever it is now, check first. */
  peerClosed(address: Address): void {
    this.#suspend(address, "it closed its ROLE connection; checking it again");
  }

  /** A check begins: events from now on make its verdicts on the replicas they name stale. */
  beginCheck(): void {
    this.#outDuringCheck = new Map();
    this.#checkVoid = false;
  }

  /** The check has ended. */
  endCheck(): void {
    this.#outDuringCheck = undefined;
  }

  /**
   * Asks ROLE, as the master is asked, of the replicas it listed last time
   * (and a Sentinel lists), so that their offsets are read
   * at the same moment as its own. Only replicas the master itself listed are
   * asked, so that a Sentinel's list, however long or false, opens no
   * connection anywhere else.
   */
  askKnown(master: Address, signal: AbortSignal): AskedReplicas {
    const asked: AskedReplicas = new Map();
    for (const address of this.#candidates(master)) {
      const key = addressKey(address);
      if (!this.#masterListed.has(key)) continue;
      asked.set(key, { address, role: this.#options.checkRole(address, signal) });
    }
    return asked;
  }

  /** The replicas a Sentinel listed now; `undefined` when none answered, and the last list stays. */
  noteListed(listed: ReplicaInfo[] | undefined): void {
    if (listed) this.#listed = listed;
    this.#listStale = listed === undefined;
  }

  /**
   * Judges every replica listed against `master`, confirmed by `masterRole`
   * in this check. Those the master lists and nobody asked yet are asked now.
   * Returns the replicas asked, or `undefined` when the check went stale (the
   * master changed under it): a fresh one runs at once.
   */
  async check(
    master: ConfirmedMaster,
    masterRole: RoleCheck,
    asked: AskedReplicas,
    signal: AbortSignal,
  ): Promise<Address[] | undefined> {
    const masterView = masterRole.kind === "role" && masterRole.role === "master"
      ? masterRole.asMaster
      : undefined;
    const listedNow = masterView
      ? new Set(masterView.replicas.map((r) => addressKey(r.address)))
      : this.#masterListed;
    const candidates = this.#candidates(master.address);
    for (const address of candidates) {
      const key = addressKey(address);
      if (asked.has(key) || !listedNow.has(key)) continue;
      asked.set(key, { address, role: this.#options.checkRole(address, signal) });
    }
    const roleOf = new Map<string, RoleCheck>();
    await Promise.all([...asked].map(async ([key, { role }]) => roleOf.set(key, await role)));
    if (signal.aborted) return undefined;
    if (this.#options.master()?.confirmation !== master.confirmation || this.#checkVoid) {
      // The master changed under this check: run a fresh one at once.
      this.#options.wake(true);
      return undefined;
    }
    this.#masterListed = listedNow;
    const masterDetail = masterView ? undefined : describeMasterRole(master.address, masterRole);
    const now = Date.now();
    const next = new Map<string, ReplicaHealth>();
    // Suspended by an event while this check ran: out until the next check, clients kept.
    const stillSuspended = new Set<string>();
    for (const address of candidates) {
      const key = addressKey(address);
      const before = this.#replicas.get(key);
      // An event that took it out while this check ran is newer than what the check saw.
      const during = this.#outDuringCheck?.get(key);
      const promoting = this.#promotingReason(key);
      const out = during?.reason ?? promoting;
      if (during && !during.cut && promoting === undefined && this.#suspended.has(key)) {
        stillSuspended.add(key);
      }
      const verdict = out !== undefined
        ? { reason: out, lagBytes: undefined }
        : judge(address, roleOf.get(key), master, masterView, masterDetail, before);
      next.set(key, {
        address,
        reason: verdict.reason,
        lagBytes: verdict.lagBytes,
        checkedAgainst: master.address,
        confirmation: master.confirmation,
        checkedAt: now,
      });
    }
    this.#noneListed = `no Sentinel lists a replica of master ${formatAddress(master.address)}${
      this.#listStale ? " (no Sentinel answered SENTINEL replicas)" : ""
    }`;
    this.#apply(next, master.address, stillSuspended);
    return [...asked.values()].map((a) => a.address);
  }

  /** Every replica in the list of now (or the last), less the master, with why a Sentinel rules it out. */
  #candidates(master: Address): Address[] {
    const candidates: Address[] = [];
    for (const info of this.#listed ?? []) {
      if (!sameAddress(info.replica, master)) candidates.push(info.replica);
    }
    return candidates;
  }

  /**
   * With no confirmed master, nothing is checked against one; but a replica
   * in use that says it is not a replica any more (promoted while events were
   * missed), or cannot be reached, loses its clients. Through a failover
   * (`failover`: the master it replaces and the node it promotes, if known),
   * so does one whose link is not up, or that follows any other node: what it
   * serves is no longer what the old master had. A ROLE already asked in this
   * check is not asked again.
   */
  async guardWithoutMaster(
    asked: AskedReplicas,
    signal: AbortSignal,
    failover?: { readonly master: Address; readonly promoted: Address | undefined },
  ): Promise<void> {
    const inUse = [...this.#replicas.values()].filter((r) =>
      r.reason === undefined || this.#suspended.has(addressKey(r.address))
    );
    const roles = await Promise.all(inUse.map((r) =>
      asked.get(addressKey(r.address))?.role ??
        this.#options.checkRole(r.address, signal)
    ));
    if (signal.aborted) return;
    inUse.forEach(({ address }, i) => {
      const role = roles[i]!;
      if (role.kind === "role" && role.role !== "slave") {
        this.#cut(address, `it says it is ${role.role}`);
      } else if (role.kind === "unreachable") {
        this.#cut(address, role.detail);
      } else if (failover && role.kind === "role") {
        const link = role.asReplica;
        const follows = link &&
          (sameAddress(link.master, failover.master) ||
            (failover.promoted !== undefined && sameAddress(link.master, failover.promoted)));
        if (!link || !follows) {
          this.#cut(
            address,
            `through the failover of ${formatAddress(failover.master)} it follows ${
              link ? formatAddress(link.master) : "an unknown node"
            }`,
          );
        } else if (link.state !== "connected") {
          // Sentinel pointing it at the promoted node is a routine step of the failover.
          const routine = failover.promoted !== undefined &&
            sameAddress(link.master, failover.promoted);
          this.#cut(
            address,
            `through a failover its link to ${formatAddress(link.master)} is ${link.state}`,
            routine,
          );
        }
      }
    });
  }

  /** Takes a check's verdicts: a port's clients of a replica no longer usable there are cut at once. */
  #apply(
    next: Map<string, ReplicaHealth>,
    master: Address,
    stillSuspended: ReadonlySet<string>,
  ): void {
    const name = this.#options.name();
    const ports = this.#options.ports();
    for (const [key, before] of this.#replicas) {
      // Out only until a check that saw it after the event: its clients stay meanwhile.
      if (stillSuspended.has(key)) continue;
      const after = next.get(key);
      const cuts = new Map<
        string,
        { closed: number; byPort: Record<string, number>; wasUsable: boolean }
      >();
      for (const port of ports) {
        const afterStatus = after && statusFor(after, port.maxLagBytes);
        if (afterStatus?.usable) continue;
        const closed = port.closeTo(before.address);
        const reason = afterStatus?.reason ?? "no Sentinel lists it any more";
        const entry = cuts.get(reason) ?? { closed: 0, byPort: {}, wasUsable: false };
        entry.closed += closed;
        if (closed > 0) entry.byPort[port.label] = (entry.byPort[port.label] ?? 0) + closed;
        entry.wasUsable ||= statusFor(before, port.maxLagBytes).usable;
        cuts.set(reason, entry);
      }
      // Right after a change of master, replicas resyncing with it are a routine step.
      const settling = performance.now() < this.#settlingUntil;
      for (const [reason, { closed, byPort, wasUsable }] of cuts) {
        if (!wasUsable && closed === 0) continue;
        const replica = formatAddress(before.address);
        const fields = {
          database: name,
          replica,
          reason,
          settling: settling ? " (settling after the change of master)" : "",
          cut: closedClause(byPort, " to it"),
          clientsClosed: closed,
          ports: Object.keys(byPort).join(", "),
        };
        const line =
          "Database {database}: replica {replica} is not usable{settling}: {reason}{cut}";
        if (settling) log.info(line, fields);
        else log.warn(line, fields);
        if (wasUsable) {
          this.#options.journal.record({ kind: "replica", name, replica, usable: false, reason });
        }
        this.#recordCut(replica, reason, closed, byPort);
      }
    }
    for (const [key, after] of next) {
      const before = this.#replicas.get(key);
      const nowUsable = ports.filter((p) =>
        statusFor(after, p.maxLagBytes).usable &&
        !(before && statusFor(before, p.maxLagBytes).usable)
      );
      if (nowUsable.length > 0) {
        const replica = formatAddress(after.address);
        log.info(
          "Database {database}: replica {replica} is usable ({ports}; {behind})",
          {
            database: name,
            replica,
            lag: after.lagBytes ?? null,
            behind: after.lagBytes === undefined
              ? `lag behind master ${formatAddress(master)} unknown`
              : `${plural(after.lagBytes, "byte")} behind master ${formatAddress(master)}`,
            master: formatAddress(master),
            ports: nowUsable.map((p) => p.label).join(", "),
          },
        );
        this.#options.journal.record({
          kind: "replica",
          name,
          replica,
          usable: true,
          reason: undefined,
        });
      } else if (
        after.reason !== undefined && before?.reason !== after.reason &&
        before?.reason !== undefined
      ) {
        log.debug("Database {database}: replica {replica} is not usable: {reason}", {
          database: name,
          replica: formatAddress(after.address),
          reason: after.reason,
        });
      }
    }
    this.#setVerdicts(next);
    // Every replica has its verdict now: the ones out of use lost their clients above, but
    // those suspended while the check ran, which the next check judges.
    for (const key of this.#suspended) if (!stillSuspended.has(key)) this.#suspended.delete(key);
    this.#options.notify();
  }

  #setVerdicts(next: Map<string, ReplicaHealth>): void {
    const wasHealthy = [...this.#replicas.values()].some((r) => r.reason === undefined);
    const isHealthy = [...next.values()].some((r) => r.reason === undefined);
    if (wasHealthy && !isHealthy) this.#unhealthySince = Date.now();
    this.#replicas = next;
  }

  /**
   * Cuts `address`'s clients and takes it out of use until a check finds it
   * usable again. `routine` for a failover's own steps (logged at info).
   */
  #cut(address: Address, reason: string, routine = false): void {
    this.#takeOut(address, reason, true, routine);
    this.#options.wake(true);
  }

  /**
   * Takes `address` out of use, keeping its clients, until a check finds it
   * usable: it may be fine. The check keeps the gap between checks, so that a
   * node that closes every connection cannot make them run back to back.
   */
  #suspend(address: Address, reason: string): void {
    this.#takeOut(address, reason, false, true);
    this.#options.wake();
  }

  /** Keeps `replica` out of use while a Sentinel's failover may promote it. */
  #holdPromoted(replica: Address, reason: string, from: Address): void {
    const key = addressKey(replica);
    this.#promoting.delete(key);
    if (this.#promoting.size >= MAX_PROMOTING) {
      // Full (a flood of announcements): nodes that are no replica here go first.
      const drop = [...this.#promoting.keys()].find((k) => !this.#replicas.has(k)) ??
        this.#promoting.keys().next().value!;
      this.#promoting.delete(drop);
    }
    // At least Sentinel's default failover-timeout: one Sentinel's small value shortens nothing.
    const holdMs = Math.max(this.#options.failoverTimeoutMs(), DEFAULT_FAILOVER_TIMEOUT_MS);
    this.#promoting.set(key, { reason, until: performance.now() + holdMs, from });
  }

  /** The failover `from` announced is over: its replicas are held no more. */
  #endPromotions(from: Address): void {
    for (const [key, promoting] of this.#promoting) {
      if (sameAddress(promoting.from, from)) this.#promoting.delete(key);
    }
  }

  #takeOut(address: Address, reason: string, cutClients: boolean, routine: boolean): void {
    const key = addressKey(address);
    // Only this replica's verdict goes stale: a flood of events about one replica starves no check.
    if (this.#outDuringCheck) {
      if (this.#outDuringCheck.size < MAX_OUT_DURING_CHECK) {
        const earlier = this.#outDuringCheck.get(key);
        this.#outDuringCheck.set(key, { reason, cut: cutClients || earlier?.cut === true });
      } else this.#checkVoid = true;
    }
    const before = this.#replicas.get(key);
    const wasInUse = before?.reason === undefined && before !== undefined;
    if (wasInUse) {
      const next = new Map(this.#replicas);
      next.set(key, { ...before, reason });
      this.#setVerdicts(next);
    }
    let closed = 0;
    const byPort: Record<string, number> = {};
    if (cutClients) {
      for (const port of this.#options.ports()) {
        const n = port.closeTo(address);
        closed += n;
        if (n > 0) byPort[port.label] = (byPort[port.label] ?? 0) + n;
      }
      this.#suspended.delete(key);
    } else if (wasInUse || this.#suspended.has(key)) {
      this.#suspended.add(key);
    }
    if (wasInUse || closed > 0) {
      const name = this.#options.name();
      const replica = formatAddress(address);
      const fields = {
        database: name,
        replica,
        reason,
        then: cutClients
          ? closedClause(byPort, " to it")
          : "; no new client goes to it until it is checked",
        clientsClosed: closed,
      };
      if (routine) log.info("Database {database}: replica {replica}: {reason}{then}", fields);
      else log.warn("Database {database}: replica {replica}: {reason}{then}", fields);
      if (wasInUse) {
        this.#options.journal.record({ kind: "replica", name, replica, usable: false, reason });
      }
      this.#recordCut(replica, reason, closed, byPort);
    }
    this.#options.notify();
  }

  /** Counts a cut of read clients and records it for the status page, when it closed any. */
  #recordCut(replica: string, detail: string, closed: number, byPort: ClosedByPort): void {
    if (closed === 0) return;
    const { stats, journal, name } = this.#options;
    stats.clientsCut.set("replica", (stats.clientsCut.get("replica") ?? 0) + closed);
    journal.record({
      kind: "cut",
      name: name(),
      node: replica,
      reason: "replica",
      detail,
      clients: closed,
      ports: byPort,
    });
  }

  /** Why a replica a Sentinel is promoting is out of use, while it is. */
  #promotingReason(key: string): string | undefined {
    const promoting = this.#promoting.get(key);
    if (!promoting) return undefined;
    if (performance.now() < promoting.until) return promoting.reason;
    this.#promoting.delete(key);
    return undefined;
  }
}

/** Whether one replica is healthy, from its ROLE and the master's, and how far behind it is. */
function judge(
  address: Address,
  /** Absent when it was not asked: the master does not list it, or cannot say. */
  role: RoleCheck | undefined,
  master: ConfirmedMaster,
  masterView: MasterRole | undefined,
  masterDetail: string | undefined,
  before: ReplicaHealth | undefined,
): { reason: string | undefined; lagBytes: number | undefined } {
  const no = (reason: string) => ({ reason, lagBytes: undefined });
  const where = formatAddress(master.address);
  if (!role) {
    return no(
      masterView
        ? `master ${where} does not list it among its replicas`
        : `the master cannot confirm it: ${masterDetail}`,
    );
  }
  if (role.kind !== "role") return no(role.detail);
  if (role.role !== "slave") return no(`it says it is ${role.role}`);
  const own = role.asReplica;
  if (!own) return no("its ROLE reply is malformed");
  if (!sameAddress(own.master, master.address)) {
    return no(
      `it replicates from ${formatAddress(own.master)}, not the confirmed master ${where}`,
    );
  }
  if (own.state !== "connected") return no(`its link to the master is ${own.state}`);
  if (!masterView) {
    // The master cannot say (busy, say): a replica already healthy against it stays so on its
    // own word; a new one waits for the master's.
    if (before?.reason === undefined && before?.confirmation === master.confirmation) {
      return { reason: undefined, lagBytes: before.lagBytes };
    }
    return no(`the master cannot confirm it: ${masterDetail}`);
  }
  if (!masterView.replicas.some((r) => sameAddress(r.address, address))) {
    return no(`master ${where} does not list it among its replicas`);
  }
  return { reason: undefined, lagBytes: Math.max(0, masterView.offset - own.offset) };
}

function describeMasterRole(master: Address, role: RoleCheck): string {
  const where = formatAddress(master);
  if (role.kind !== "role") return role.detail;
  if (role.role !== "master") return `${where} says it is ${role.role}`;
  return `the ROLE reply of ${where} is malformed`;
}
