/**
 * One master name's master: which node its clients go to, and every change
 * of that state. The state is explicit: a confirmed master or none, a
 * failover hold or none, the write fence open or closed, and the last
 * problem. Its control plane runs the checks and hands each one's findings
 * here in two steps ({@linkcode MasterWatcher.decide} with the Sentinels'
 * views, {@linkcode MasterWatcher.actOnRole} with the chosen node's ROLE);
 * Sentinel events only cut clients off (always safe) and wake the checks.
 *
 * The rules each step applies live in their own modules: what the Sentinels
 * agree on (`master_agreement.ts`), which node to ask and what its answer
 * means (`master_decision.ts`), the failover hold (`failover_hold.ts`), the
 * write fence (`write_fence.ts`), a silent master (`master_silence.ts`) and
 * which Sentinels' events are believed (`sentinel_trust.ts`). This module
 * applies them, cuts clients off through the plane, and logs each change once.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { type Address, formatAddress, sameAddress } from "../shared/address.ts";
import { LogThrottle } from "../shared/log_throttle.ts";
import type { MasterSettings } from "../shared/master_settings.ts";
import type { Problem, ProblemKind, Targets } from "../shared/route.ts";
import type { MasterStats } from "../shared/stats.ts";
import type { CutReason, EventJournal } from "../shared/journal.ts";
import { type ClosedByPort, closedClause } from "../shared/wording.ts";
import { type Agreement, agreeOnMaster, type SentinelView } from "./master_agreement.ts";
import {
  type Candidate,
  chooseCandidate,
  namedByConfiguredMajority,
  roleVerdict,
} from "./master_decision.ts";
import { DEFAULT_FAILOVER_TIMEOUT_MS, FailoverHold, failoverReadsMs } from "./failover_hold.ts";
import { MasterSilence } from "./master_silence.ts";
import type { RoleCheck } from "./role_probe.ts";
import { SentinelTrust } from "./sentinel_trust.ts";
import { WriteFence } from "./write_fence.ts";

const log = getLogger(["sentinel-tunnel", "watcher"]);

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

/** What read ports may serve through a failover; see {@linkcode MasterWatcher.failoverReads}. */
export interface FailoverReads {
  /** The confirmation of the master the failover replaces: replicas judged against it may serve. */
  readonly held: ConfirmedMaster;
  /** The node the failover promotes: it serves no reads. */
  readonly promoted: Address;
}

/** A confirmed change of master, for hooks. */
export interface MasterChange {
  readonly database: string;
  /** The master confirmed before, if any. */
  readonly from: Address | undefined;
  readonly to: Address;
  readonly via: string;
}

/** What a cut-off closed, on every port of the name. */
export interface Cut {
  /** Client connections closed, on every port together. */
  readonly closed: number;
  /** How many on each port that had some, by port label (`port 6380`). */
  readonly byPort: ClosedByPort;
}

/** How the watcher cuts clients off: on every port of its name, ready connections included. */
export interface MasterCutter {
  /** Closes every connection to `address`. */
  closeTo(address: Address): Cut;
  /** Closes every connection to anywhere but `address`. */
  closeAllExcept(address: Address): Cut;
}

/** Who sent an event. */
export interface EventSource {
  readonly address: Address;
  readonly origin: "configured" | "discovered";
}

/** What the first step of a check leaves to ask. */
export type Step =
  /** Nothing: the state is settled for this check (a hold goes on, no master can be named). */
  | { readonly kind: "done" }
  /** Ask `candidate` for its ROLE, then {@linkcode MasterWatcher.actOnRole}. */
  | {
    readonly kind: "ask";
    readonly candidate: Candidate;
    readonly agreement: Agreement;
    /** Whether a majority of the configured Sentinels names it: the fence's time starts again. */
    readonly namedByMajority: boolean;
  }
  /**
   * Nothing names a master, but a silent node still has tunnels: ask it, to
   * cut them once the silence is long enough, never to confirm it.
   */
  | { readonly kind: "probe-silence"; readonly address: Address };

/** Options for {@linkcode MasterWatcher}. */
export interface MasterWatcherOptions {
  /** The name's settings in force; a reload may change them. */
  settings: () => MasterSettings;
  cutter: MasterCutter;
  stats: MasterStats;
  /** Runs the next check soon; at once when `urgent`. */
  wake: (urgent?: boolean) => void;
  /** Wakes whoever waits for a change of state. */
  notify: () => void;
  /** Called after each confirmed master that differs from the one before; it must not throw. */
  onMasterChange: (change: MasterChange) => void;
  /** Where what happened is recorded for the status page. */
  journal: EventJournal;
}

/** A problem repeated every poll is logged at most this often, with a count. */
const PROBLEM_LOG_INTERVAL_MS = 30_000;
/** Sentinels counted apart in `sentinel_distrusted_total`; the ones past it count as `other`. */
export const MAX_DISTRUSTED_SERIES = 64;

/** The master of one name; see the module doc. */
export class MasterWatcher {
  readonly #settings: () => MasterSettings;
  readonly #cutter: MasterCutter;
  readonly #stats: MasterStats;
  readonly #wake: (urgent?: boolean) => void;
  readonly #notify: () => void;
  readonly #onMasterChange: (change: MasterChange) => void;
  readonly #journal: EventJournal;
  readonly #fence: WriteFence;
  readonly #silence = new MasterSilence();
  readonly #trust = new SentinelTrust();
  readonly #problemLog = new LogThrottle(PROBLEM_LOG_INTERVAL_MS);
  #master: ConfirmedMaster | undefined;
  #confirmations = 0;
  /** One targets object per confirmation: a new epoch of the same confirmation keeps it. */
  #targets: { confirmation: number; targets: Targets } | undefined;
  /** The last master confirmed, kept while none is: a blip of the same master is no change. */
  #lastConfirmed: Address | undefined;
  /** The last confirmation of a master, kept while none is (for reads during a failover). */
  #lastConfirmation: ConfirmedMaster | undefined;
  /** Since when (`performance.now()`) no master has been confirmed, after one was. */
  #withoutMasterSince: number | undefined;
  /** The node the last cut of the others named, until a master is confirmed. */
  #lastNamed: Address | undefined;
  /** The config-epoch of the view last acted on: an older view never overrides it. */
  #epoch: number | undefined;
  #failoverTimeoutMs = DEFAULT_FAILOVER_TIMEOUT_MS;
  #hold: FailoverHold | undefined;
  #problem: Problem | undefined;
  /**
   * The last failure recorded and since when it has held: kept while a master
   * is served despite it (no Sentinel reachable, say), so that its `since` is
   * when it began, not the last check.
   */
  #lastFailure: { key: string; since: number } | undefined;
  /** Bumped by every event that makes a check under way stale. */
  #generation = 0;

  constructor(options: MasterWatcherOptions) {
    this.#settings = options.settings;
    this.#cutter = options.cutter;
    this.#stats = options.stats;
    this.#wake = options.wake;
    this.#notify = options.notify;
    this.#onMasterChange = options.onMasterChange;
    this.#journal = options.journal;
    this.#fence = new WriteFence(() => this.#settings().fence, (ms) => this.#fenceExpired(ms));
  }

  /** The confirmed master, if any: the only node new clients are tunnelled to. */
  get master(): ConfirmedMaster | undefined {
    return this.#master;
  }

  /**
   * Where a new client of a master port may go: the confirmed master, if any.
   * The same object for as long as one confirmation lasts, a new one for each:
   * connections made for one are never used for another (the ready pool).
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

  /** Why there is no confirmed master, or the last failed check while there is one. */
  get problem(): Problem | undefined {
    return this.#problem;
  }

  /** The failover holding clients, if any. */
  get failover(): { master: Address; reason: string; since: number } | undefined {
    const hold = this.#hold;
    return hold && { master: hold.master, reason: hold.reason, since: hold.since };
  }

  /** Whether a failover holds clients: checks run more often. */
  get holding(): boolean {
    return this.#hold !== undefined;
  }

  /**
   * Whether read ports may go on serving, through the failover under way, the
   * replicas usable against the master it replaces: only while a trusted
   * Sentinel's event has named the one node it promotes (which is left out),
   * the write fence is open, and for a bounded time (a routine failover
   * switches within a few polls). Otherwise reads wait for the new master.
   */
  get failoverReads(): FailoverReads | undefined {
    const hold = this.#hold;
    const held = this.#lastConfirmation;
    const promoted = hold?.promoted;
    if (!hold || !held || !promoted || !sameAddress(held.address, hold.master)) return undefined;
    if (this.#fence.closedSince !== undefined) return undefined;
    if (performance.now() - hold.startedAt >= failoverReadsMs(this.#settings())) return undefined;
    return { held, promoted };
  }

  /** The master a failover under way replaces, and the node it promotes, as far as known. */
  get failoverNodes(): { master: Address; promoted: Address | undefined } | undefined {
    const hold = this.#hold;
    return hold && { master: hold.master, promoted: hold.promoted };
  }

  /** When the write fence closed (ms since the epoch), while it is closed. */
  get fencedSince(): number | undefined {
    return this.#fence.closedSince;
  }

  /** How long a failover may take, as the Sentinels last said (`failover-timeout`). */
  get failoverTimeoutMs(): number {
    return this.#failoverTimeoutMs;
  }

  /** Which events have come so far: a check that began at another generation is stale. */
  get generation(): number {
    return this.#generation;
  }

  /**
   * The first step of a check: what the Sentinels' views mean. It may start
   * or end a failover hold, cut the clients of nodes a trusted view demotes,
   * and record why no master can be named; it returns what is left to ask.
   */
  decide(views: readonly SentinelView[]): Step {
    const settings = this.#settings();
    const agreement = agreeOnMaster(settings.name, views);
    if (agreement.kind === "agreed") this.#failoverTimeoutMs = agreement.failoverTimeoutMs;
    this.#settleSwitch(views, agreement);

    if (this.#hold) {
      if (!this.#holdEnds(this.#hold, views, agreement)) return { kind: "done" };
      this.#hold = undefined;
    } else if (
      agreement.kind === "agreed" && agreement.failoverInProgress && this.#lastConfirmed &&
      sameAddress(agreement.address, this.#lastConfirmed)
    ) {
      // A failover is under way that no event announced here (a missed message): hold now.
      this.#startHold(this.#lastConfirmed, `a failover reported by ${agreement.via}`, undefined);
      return { kind: "done" };
    }

    const known = this.#master?.address ?? this.#lastConfirmed;
    const candidate = chooseCandidate(agreement, {
      master: this.#master?.address,
      last: known,
      epoch: this.#epoch,
    });
    if (!candidate) {
      // Only when the Sentinels agree on nothing and no master is in use.
      const detail = agreement.kind === "agreed" ? agreement.via : agreement.detail;
      this.#fail(agreement.kind === "unknown" ? "unknown" : "unreachable", detail);
      const silent = this.#silence.uncut;
      return silent ? { kind: "probe-silence", address: silent } : { kind: "done" };
    }
    if (
      this.#fence.closedSince !== undefined &&
      !(agreement.kind === "agreed" && namedByConfiguredMajority(views, candidate.address))
    ) {
      // The fence opens only with a majority of the configured Sentinels behind a master.
      this.#fail(
        "fenced",
        `no majority of the configured Sentinels names ${formatAddress(candidate.address)} (${
          agreement.kind === "agreed" ? agreement.via : agreement.detail
        })`,
      );
      return { kind: "done" };
    }
    const namedByMajority = agreement.kind === "agreed" &&
      sameAddress(agreement.address, candidate.address) &&
      namedByConfiguredMajority(views, candidate.address);
    if (namedByMajority && this.#master && sameAddress(this.#master.address, candidate.address)) {
      // A majority names the master in use: the fence's time starts again, however long its
      // ROLE takes (a busy master is not lost).
      this.#renewFence();
    }
    if (known && !sameAddress(known, candidate.address)) {
      // A trusted view names another node: every other node is demoted, so cut their clients now.
      this.#cutOff(candidate.address, candidate.via);
    }
    return { kind: "ask", candidate, agreement, namedByMajority };
  }

  /** The second step of a check: the candidate's ROLE answer. */
  actOnRole(step: Extract<Step, { kind: "ask" }>, role: RoleCheck): void {
    const { candidate, agreement, namedByMajority } = step;
    const { address, via } = candidate;
    const where = formatAddress(address);
    const silentMs = this.#silence.observe(address, role, this.#settings().pollIntervalMs);
    const verdict = roleVerdict(candidate, role, this.#master?.address);
    switch (verdict.kind) {
      case "confirm":
        this.#confirm(address, via, candidate.epoch);
        break;
      case "demote":
        this.#demote(address, `it says it is ${verdict.role}`);
        // If it was kept against an older view, that view may be right after all (Sentinels redeployed).
        if (this.#lastConfirmed && sameAddress(this.#lastConfirmed, address)) {
          this.#epoch = undefined;
        }
        this.#fail("not-master", `${via} names ${where}, but it says it is ${verdict.role}`);
        break;
      case "busy":
        // Alive but slow or busy, and still the master Sentinel names: clients get Redis's own answer.
        this.#fail("busy", `master ${where} is busy: ${verdict.detail}`);
        break;
      case "lost":
        // Not known to be demoted: keep its tunnels, but send no new client there.
        this.#lose();
        this.#fail("master-unreachable", `master ${where} from ${via}: ${verdict.detail}`);
        break;
      case "error":
        this.#lose();
        this.#fail("error", verdict.detail);
        break;
    }
    if (silentMs !== undefined) this.#cutSilent(address, silentMs);
    if (this.#master && sameAddress(this.#master.address, address)) {
      // Confirmed. With a majority behind it the fence's time starts again; without one (a
      // minority cut off with this host, discovered Sentinels) it runs on, started if it was not.
      if (namedByMajority) this.#renewFence();
      else this.#fence.runOn();
    }
    if (this.#master && agreement.kind !== "agreed") {
      // Serving, but say why the Sentinels did not agree (readiness and the log show it).
      this.#fail(agreement.kind === "unknown" ? "unknown" : "unreachable", agreement.detail);
    }
  }

  /** The answer of a silent node asked while nothing names a master (a `probe-silence` step). */
  actOnSilence(address: Address, role: RoleCheck): void {
    const silentMs = this.#silence.observe(address, role, this.#settings().pollIntervalMs);
    if (silentMs !== undefined) this.#cutSilent(address, silentMs);
  }

  /**
   * A `+switch-master` from a Sentinel that watches this master: the other
   * nodes' clients are cut at once, and the next check decides where new
   * clients go. Nothing here routes a client anywhere new.
   */
  onSwitch(to: Address, from: Address, source: EventSource): void {
    const sentinel = formatAddress(source.address);
    const settings = this.#settings();
    const verdict = this.#trust.onSwitch(
      to,
      source.address,
      this.#master?.address,
      settings.pollIntervalMs,
    );
    switch (verdict.kind) {
      case "known":
        return;
      case "flood": {
        const why = `it named ${formatAddress(verdict.earlier)} moments ago`;
        log.warn(
          "Database {database}: ignored +switch-master from {sentinel} to {to}: {why}; its events only trigger checks for a while",
          { database: settings.name, sentinel, to: formatAddress(to), why },
        );
        this.#noteDistrusted(sentinel, why);
        return;
      }
      case "check":
        log.debug(
          "Database {database}: +switch-master from {sentinel} to {to} only triggers a check: its last word was refused",
          { database: settings.name, sentinel, to: formatAddress(to) },
        );
        return this.#wake();
      case "cut":
        // Whatever a check under way learns now is older than this message: drop it.
        this.#generation++;
        if (this.#hold && sameAddress(this.#hold.master, from)) this.#hold.namePromoted(to);
        this.#cutOff(to, `+switch-master from ${sentinel}`);
        return this.#wake(true);
    }
  }

  /**
   * A Sentinel announced that a replica of `masterAddress` is being promoted:
   * if that is the master in use, its clients are cut and new ones wait.
   */
  onPromotion(
    masterAddress: Address,
    reason: string,
    source: EventSource,
    promoted: Address | undefined,
  ): void {
    const current = this.#master?.address ?? this.#lastConfirmed;
    if (!current || !sameAddress(current, masterAddress)) {
      // About a node this name does not use: the Sentinels know something it does not. Check.
      return this.#wake();
    }
    if (this.#trust.isDistrusted(source.address)) return this.#wake();
    if (this.#hold) {
      // More news of the failover under way: the node it promotes, if it names one.
      if (promoted) {
        this.#hold.namePromoted(promoted);
        this.#notify();
      }
      return;
    }
    this.#generation++;
    this.#startHold(current, reason, source.address);
    if (promoted) this.#hold!.namePromoted(promoted);
    this.#wake(true);
  }

  /** A Sentinel says a failover ended: a check under way may still see it, the next one will not. */
  onFailoverEnd(): void {
    if (this.#hold) this.#wake();
  }

  /** A client could not connect to `address`: check it now rather than at the next poll. */
  reportUnreachable(address: Address): void {
    if (this.#master && sameAddress(this.#master.address, address)) this.#wake();
  }

  /** Whatever a check under way learns is stale: the ROLE connections changed under it. */
  voidCheck(): void {
    this.#generation++;
  }

  /** The fence's settings changed (a reload). */
  fenceChanged(): void {
    this.#fence.settingsChanged();
  }

  /**
   * The Sentinel list changed (a reload): what the old Sentinels said no longer
   * counts. Their epoch and the Sentinels distrusted are forgotten.
   */
  sentinelsChanged(): void {
    this.#generation++;
    this.#epoch = undefined;
    this.#trust.clear();
  }

  /** Stops the fence's clock: the checks have stopped. */
  stop(): void {
    this.#fence.stop();
  }

  /** The checks run again (after a failure): the fence's clock goes on from where its time runs. */
  resume(): void {
    this.#fence.resume();
  }

  /**
   * A +switch-master that the views do not bear out is refused. Its Sentinel
   * is distrusted for a while only when its own view came, so that a reply
   * lost in one round costs an honest Sentinel nothing.
   */
  #settleSwitch(views: readonly SentinelView[], agreement: Agreement): void {
    const settings = this.#settings();
    const refused = this.#trust.settle(views, agreement, settings.pollIntervalMs);
    if (!refused) return;
    const sentinel = formatAddress(refused.sentinel);
    const why = `no configured Sentinel or majority names ${formatAddress(refused.to)} (${
      agreement.kind === "agreed"
        ? `they name ${formatAddress(agreement.address)}: ${agreement.via}`
        : agreement.detail
    })`;
    log.warn(
      "Database {database}: ignored +switch-master from {sentinel} to {to}: {why}{distrusted}",
      {
        database: settings.name,
        sentinel,
        to: formatAddress(refused.to),
        why,
        distrusted: refused.distrusted ? "; its events only trigger checks for a while" : "",
      },
    );
    if (refused.distrusted) {
      this.#noteDistrusted(sentinel, why);
    }
  }

  /** Whether a hold ends with this check; see `failover_hold.ts`. Logs how it ended. */
  #holdEnds(hold: FailoverHold, views: readonly SentinelView[], agreement: Agreement): boolean {
    const end = hold.endsWith(views, agreement);
    if (!end) return false;
    if (end.kind === "switched") return true;
    const settings = this.#settings();
    const master = formatAddress(hold.master);
    if (end.refuted && hold.from !== undefined) {
      this.#trust.distrust(hold.from, settings.pollIntervalMs);
      const sentinel = formatAddress(hold.from);
      log.warn(
        "Database {database}: ignored {reason}: {why}; checking {master} again, and {sentinel}'s events only trigger checks for a while",
        { database: settings.name, reason: hold.reason, why: end.why, master, sentinel },
      );
      this.#noteDistrusted(sentinel, `${hold.reason}: ${end.why}`);
    } else {
      // A failover that aborts or stalls is news: the routine ones end with a switch.
      log.warn(
        "Database {database}: the failover of {master} ended without a switch ({why}); checking it again",
        { database: settings.name, master, why: end.why },
      );
    }
    this.#journal.record({ kind: "failover-ended", name: settings.name, master, why: end.why });
    return true;
  }

  #startHold(master: Address, reason: string, sentinel: Address | undefined): void {
    this.#hold = new FailoverHold(master, reason, sentinel, this.#failoverTimeoutMs);
    this.#stats.failovers++;
    this.#lose();
    const cut = this.#cutter.closeTo(master);
    const name = this.#settings().name;
    const detail = `failover of ${formatAddress(master)} under way (${reason})`;
    // A routine step of every failover: new clients wait for the new master.
    log.info("Database {database}: {detail}: new clients wait for the new master{cut}", {
      database: name,
      detail,
      cut: closedClause(cut.byPort, " to the old master"),
      clientsClosed: cut.closed,
    });
    this.#journal.record({ kind: "failover", name, master: formatAddress(master), reason });
    this.#recordCut(formatAddress(master), "failover", reason, cut);
    this.#fail("failover", detail);
  }

  /** A trusted view names `address`: every other node is demoted, so cut their clients off now. */
  #cutOff(address: Address, reason: string): void {
    const previous = this.#master;
    this.#lose();
    const cut = this.#cutter.closeAllExcept(address);
    const before = previous?.address ?? this.#lastConfirmed;
    // The check that bears out a +switch-master names the same node again: said once is enough.
    const again = this.#lastNamed !== undefined && sameAddress(this.#lastNamed, address);
    this.#lastNamed = address;
    if (again && cut.closed === 0) return this.#notify();
    log.info("Database {database}: {to} is named by {reason}{instead}{cut}", {
      database: this.#settings().name,
      reason,
      to: formatAddress(address),
      from: before ? formatAddress(before) : null,
      instead: before ? ` instead of ${formatAddress(before)}` : "",
      cut: closedClause(cut.byPort, " to other nodes"),
      clientsClosed: cut.closed,
    });
    this.#recordCut(
      "other nodes",
      "switch",
      `${formatAddress(address)} is named by ${reason}`,
      cut,
    );
    this.#notify();
  }

  /** A Sentinel was distrusted: counted by Sentinel, and recorded for the status page. */
  #noteDistrusted(sentinel: string, why: string): void {
    const counts = this.#stats.sentinelsDistrusted;
    // One series per Sentinel, up to a bound: discovered Sentinels come and go over months.
    const key = counts.has(sentinel) || counts.size < MAX_DISTRUSTED_SERIES ? sentinel : "other";
    counts.set(key, (counts.get(key) ?? 0) + 1);
    this.#journal.record({
      kind: "sentinel-distrusted",
      name: this.#settings().name,
      sentinel,
      why,
    });
  }

  /** No master is confirmed from now on: remember since when, for the status page. */
  #lose(): void {
    if (this.#master) this.#withoutMasterSince ??= performance.now();
    this.#master = undefined;
  }

  /** Counts a cut-off and records it for the status page, when it closed any client. */
  #recordCut(node: string, reason: CutReason, detail: string, cut: Cut): void {
    if (cut.closed === 0) return;
    this.#stats.clientsCut.set(reason, (this.#stats.clientsCut.get(reason) ?? 0) + cut.closed);
    this.#journal.record({
      kind: "cut",
      name: this.#settings().name,
      node,
      reason,
      detail,
      clients: cut.closed,
      ports: cut.byPort,
    });
  }

  #confirm(address: Address, via: string, epoch: number | undefined): void {
    const previous = this.#master;
    const recovered = this.#problem;
    this.#problem = undefined;
    if (recovered?.kind !== "unreachable" && recovered?.kind !== "unknown") {
      // The next failure is news, even the same one as before.
      this.#problemLog.reset();
      this.#lastFailure = undefined;
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
    this.#lastConfirmation = this.#master;
    const cut = this.#cutter.closeAllExcept(address);
    const from = this.#lastConfirmed;
    this.#lastConfirmed = address;
    const database = this.#settings().name;
    if (!from || !sameAddress(from, address)) {
      if (from) this.#stats.masterChanges++;
      this.#onMasterChange({ database, from, to: address, via });
    }
    const lostAt = this.#withoutMasterSince;
    this.#withoutMasterSince = undefined;
    this.#lastNamed = undefined;
    const withoutMasterMs = lostAt === undefined
      ? undefined
      : Math.round(performance.now() - lostAt);
    // "was" names the master before, confirmed or last confirmed; "first" when there was none.
    const before = previous?.address ?? from;
    log.info("Database {database}: master is {to} ({was}), learned via {via}{cut}", {
      database,
      to: formatAddress(address),
      from: before ? formatAddress(before) : null,
      was: !before
        ? "the first master"
        : `was ${formatAddress(before)}${
          withoutMasterMs === undefined
            ? ""
            : `; ${(withoutMasterMs / 1000).toFixed(1)} s without a confirmed master`
        }`,
      via,
      withoutMasterMs: withoutMasterMs ?? null,
      cut: closedClause(cut.byPort, " to other nodes"),
      clientsClosed: cut.closed,
    });
    this.#journal.record({
      kind: "master-confirmed",
      name: database,
      from: before ? formatAddress(before) : undefined,
      to: formatAddress(address),
      via,
      withoutMasterMs,
    });
    this.#recordCut("other nodes", "new-master", `master is ${formatAddress(address)}`, cut);
    this.#notify();
  }

  /** `address` is not master: close its tunnels, and stop sending clients there. */
  #demote(address: Address, reason: string): void {
    if (this.#master && sameAddress(this.#master.address, address)) this.#lose();
    const cut = this.#cutter.closeTo(address);
    this.#notify();
    if (cut.closed === 0) return;
    log.warn("Database {database}: {from} is not master: {reason}{cut}", {
      database: this.#settings().name,
      from: formatAddress(address),
      reason,
      cut: closedClause(cut.byPort, " to it"),
      clientsClosed: cut.closed,
    });
    this.#recordCut(formatAddress(address), "not-master", reason, cut);
  }

  /** Every connect to `address` timed out for long enough: cut its tunnels. */
  #cutSilent(address: Address, silentMs: number): void {
    const cut = this.#cutter.closeTo(address);
    const why = `silent for ${Math.round(silentMs)} ms (every connect timed out)`;
    log.warn(
      "Database {database}: master {master} has been {why}{cut}",
      {
        database: this.#settings().name,
        master: formatAddress(address),
        why,
        cut: cut.closed > 0
          ? `${closedClause(cut.byPort, " to it")}, which would hang until TCP gives up`
          : "",
        clientsClosed: cut.closed,
      },
    );
    this.#recordCut(formatAddress(address), "silent", why, cut);
  }

  /** A majority of the configured Sentinels named the master: the fence's time starts again. */
  #renewFence(): void {
    if (!this.#fence.renew()) return;
    const master = this.#master ? formatAddress(this.#master.address) : undefined;
    const name = this.#settings().name;
    log.info(
      "Database {database}: write fence open again: a majority of the configured Sentinels confirmed master {master}",
      { database: name, master: master ?? null },
    );
    this.#journal.record({ kind: "fence", name, state: "open", master });
  }

  /**
   * No majority of the configured Sentinels confirmed the master for `afterMs`:
   * stop tunnelling to it until one does. A check under way, which might keep
   * it on its own word, is void.
   */
  #fenceExpired(afterMs: number): void {
    const master = this.#master?.address ?? this.#lastConfirmed;
    const settings = this.#settings();
    if (!master || !settings.fence) return;
    this.#generation++;
    this.#lose();
    this.#fence.close();
    this.#stats.fenceClosures++;
    // What the Sentinels said before the fence is stale: a majority's next word is taken as is
    // (redeployed Sentinels restart their epochs).
    this.#epoch = undefined;
    const cut = this.#cutter.closeTo(master);
    const detail =
      `write fence closed: no majority of the configured Sentinels has confirmed master ${
        formatAddress(master)
      } for ${afterMs} ms (fence.afterMs); nothing is tunnelled to it until a majority confirms a master`;
    log.warn("Database {database}: {detail}{cut}", {
      database: settings.name,
      detail,
      cut: closedClause(cut.byPort, " to it"),
      clientsClosed: cut.closed,
    });
    this.#journal.record({
      kind: "fence",
      name: settings.name,
      state: "closed",
      master: formatAddress(master),
    });
    this.#recordCut(formatAddress(master), "fence", detail, cut);
    this.#fail("fenced", detail);
    this.#wake(true);
  }

  /** Records a problem and wakes waiters; it changes no master by itself. */
  #fail(failed: ProblemKind, failure: string): void {
    // While the fence is closed, every problem is the fence's and says so first: it is why no
    // master is used.
    const fencedSince = this.#fence.closedSince;
    const kind = fencedSince === undefined ? failed : "fenced";
    const detail = fencedSince !== undefined && failed !== "fenced"
      ? `write fence closed since ${
        new Date(fencedSince).toISOString()
      } (no majority of the configured Sentinels confirms a master); ${failure}`
      : failure;
    // The same failure, whatever delay it says the next attempt comes after.
    const key = `${kind} ${detail.replace(/; next attempt in \d+ ms/g, "")}`;
    const since = this.#lastFailure?.key === key ? this.#lastFailure.since : Date.now();
    this.#lastFailure = { key, since };
    this.#problem = { kind, detail, since };
    // A failover under way is said once, by the line that starts it.
    if (kind === "failover") return this.#notify();
    // The same failure every poll would flood the log: repeat it at most every 30 s, with a count.
    const admitted = this.#problemLog.admit(key);
    if (admitted) {
      log.warn(
        "Database {database}: check failed ({kind}): {detail}{keeping}{repeats}",
        {
          database: this.#settings().name,
          kind,
          detail,
          keeping: this.#master ? `; keeping master ${formatAddress(this.#master.address)}` : "",
          master: this.#master ? formatAddress(this.#master.address) : null,
          repeats: admitted.held > 0
            ? ` (failed ${admitted.held + 1} times since the last report)`
            : "",
        },
      );
    }
    this.#notify();
  }
}
