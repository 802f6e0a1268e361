/**
 * The failover hold: from the moment a Sentinel announces that a replica is
 * being promoted, whatever the old master acknowledges is discarded when it
 * rejoins as a replica, so its clients are cut and new clients wait. This
 * module says when a hold ends: with a switch (the Sentinels name another
 * master), or, when the failover is over without one, with the old master
 * checked again. The Sentinel that announced it is asked in its own words: a
 * round without its answer ends nothing, and a hold ends only with a view
 * that names a master.
 *
 * @module
 */
import { type Address, sameAddress } from "../shared/address.ts";
import type { Agreement, SentinelView } from "./master_agreement.ts";

/** When a failover's Sentinel does not say: Sentinel's own default failover-timeout. */
export const DEFAULT_FAILOVER_TIMEOUT_MS = 180_000;

/**
 * How long read ports may go on serving through a failover: ten polls, and
 * at least 2 s. A routine failover switches well within it; past it, or in
 * one that stalls, reads wait for the new master.
 */
export function failoverReadsMs(settings: { readonly pollIntervalMs: number }): number {
  return Math.max(2_000, 10 * settings.pollIntervalMs);
}

/** How a hold ends; see {@linkcode FailoverHold.endsWith}. */
export type HoldEnd =
  /** The Sentinels name another master: the switch. */
  | { readonly kind: "switched" }
  /**
   * The failover is over without a switch. `refuted` when no check ever saw
   * it under way: its announcer's word was false, and it is to be distrusted.
   */
  | { readonly kind: "ended"; readonly why: string; readonly refuted: boolean };

/** A failover of `master` under way: no client may reach it. */
export class FailoverHold {
  readonly master: Address;
  /** Why, such as `+selected-slave from 10.0.0.9:26379`. */
  readonly reason: string;
  /** When it started (ms since the epoch). */
  readonly since: number;
  /** The Sentinel whose event started it; none when a check found the failover. */
  readonly from: Address | undefined;
  /** When it started (`performance.now()`): reads go on through it only for a while. */
  readonly startedAt: number;
  /** The node being promoted, as the events this hold took named it. */
  #promoted: Address | undefined;
  /** Whether two of those events named different nodes: then none is known. */
  #promotedDisputed = false;
  /** When it ends at the latest without a switch (`performance.now()`), unless a configured Sentinel still reports it. */
  readonly #until: number;
  /** Whether a check has seen a Sentinel report the failover under way. */
  #seen: boolean;

  constructor(
    master: Address,
    reason: string,
    from: Address | undefined,
    failoverTimeoutMs: number,
  ) {
    this.master = master;
    this.reason = reason;
    this.from = from;
    this.since = Date.now();
    this.startedAt = performance.now();
    this.#until = this.startedAt + failoverTimeoutMs;
    this.#seen = from === undefined;
  }

  /**
   * The node this failover promotes, when the events taken about it (a
   * trusted Sentinel's, about this master) named it, and named one only.
   */
  get promoted(): Address | undefined {
    return this.#promotedDisputed ? undefined : this.#promoted;
  }

  /** A trusted Sentinel's event about this failover names the node it promotes. */
  namePromoted(node: Address): void {
    if (this.#promoted === undefined) this.#promoted = node;
    else if (!sameAddress(this.#promoted, node)) this.#promotedDisputed = true;
  }

  /** Whether this check ends the hold, and how; `undefined` while it holds. */
  endsWith(views: readonly SentinelView[], agreement: Agreement): HoldEnd | undefined {
    if (agreement.kind !== "agreed") return undefined;
    if (!sameAddress(agreement.address, this.master)) return { kind: "switched" };
    const from = this.from;
    const own = from === undefined
      ? undefined
      : views.find((v) => sameAddress(v.sentinel, from))?.answer;
    const ownNamesHeld = own?.kind === "master" && sameAddress(own.address, this.master);
    const ownUnderWay = ownNamesHeld && own.flags.includes("failover_in_progress");
    const expired = performance.now() >= this.#until;
    if (agreement.failoverInProgress || ownUnderWay) {
      this.#seen = true;
      // A configured Sentinel's word holds for as long as it says; the time limit bounds the rest.
      if (!expired || agreement.failoverReportedByConfigured) return undefined;
    } else if (from !== undefined && !ownNamesHeld && !expired) {
      // The announcing Sentinel's own view did not come (or names another node): wait for it.
      return undefined;
    }
    return {
      kind: "ended",
      why: expired
        ? "it outlived the failover-timeout with no switch"
        : "no Sentinel reports a failover under way",
      refuted: !this.#seen,
    };
  }
}
