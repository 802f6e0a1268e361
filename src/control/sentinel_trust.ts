/**
 * How far a Sentinel's events are believed. An event may cut clients off
 * (always safe) but never routes them; when a check does not bear out what a
 * Sentinel announced (a `+switch-master` no view confirms, a failover nobody
 * reports), that Sentinel is distrusted for a while: its events then only
 * trigger checks, and cut nobody. A reply lost in one round costs an honest
 * Sentinel nothing: it is distrusted only when its own view came and
 * contradicted it.
 *
 * @module
 */
import { type Address, addressKey, sameAddress } from "../shared/address.ts";
import type { Agreement, SentinelView } from "./master_agreement.ts";

/** A distrusted Sentinel's events only trigger checks, for this many polls... */
export const DISTRUST_POLLS = 5;
/** ...and at least this long. */
export const MIN_DISTRUST_MS = 10_000;

/** A `+switch-master` waiting for the check that bears it out. */
export interface PendingSwitch {
  readonly to: Address;
  readonly sentinel: Address;
}

/** What to make of a `+switch-master`; see {@linkcode SentinelTrust.onSwitch}. */
export type SwitchVerdict =
  /** Nothing new: it names the master in use, or the switch already pending. */
  | { readonly kind: "known" }
  /** The Sentinel named another new master before a check settled its first: now distrusted. */
  | { readonly kind: "flood"; readonly earlier: Address }
  /** Distrusted: check, cut nobody. */
  | { readonly kind: "check" }
  /** Cut the other nodes' clients now; the next check corroborates it or refuses it. */
  | { readonly kind: "cut" };

/** A `+switch-master` that a check refused, for the log. */
export interface RefusedSwitch extends PendingSwitch {
  /** Whether the Sentinel's own view came in that check (and it was distrusted for it). */
  readonly distrusted: boolean;
}

/** Which Sentinels' events are believed; see the module doc. */
export class SentinelTrust {
  readonly #distrusted = new Map<string, number>();
  #pending: PendingSwitch | undefined;

  /** Whether `sentinel`'s events only trigger checks now. */
  isDistrusted(sentinel: Address): boolean {
    const key = addressKey(sentinel);
    const until = this.#distrusted.get(key);
    if (until === undefined) return false;
    if (performance.now() < until) return true;
    this.#distrusted.delete(key);
    return false;
  }

  /** Distrusts `sentinel` for {@linkcode DISTRUST_POLLS} polls, {@linkcode MIN_DISTRUST_MS} at least. */
  distrust(sentinel: Address, pollIntervalMs: number): void {
    const now = performance.now();
    for (const [key, until] of this.#distrusted) if (until <= now) this.#distrusted.delete(key);
    const ms = Math.max(MIN_DISTRUST_MS, DISTRUST_POLLS * pollIntervalMs);
    this.#distrusted.set(addressKey(sentinel), now + ms);
  }

  /**
   * What to make of a `+switch-master` to `to` from `sentinel`, while `master`
   * is the master in use (if any). A verdict of `cut` makes it the pending
   * switch, which the next check settles.
   */
  onSwitch(
    to: Address,
    sentinel: Address,
    master: Address | undefined,
    pollIntervalMs: number,
  ): SwitchVerdict {
    if (master && sameAddress(master, to)) return { kind: "known" };
    const pending = this.#pending;
    if (pending && sameAddress(pending.to, to)) return { kind: "known" };
    if (pending && sameAddress(pending.sentinel, sentinel)) {
      // A Sentinel that names two new masters before one check could settle the first is not to be believed.
      this.distrust(sentinel, pollIntervalMs);
      return { kind: "flood", earlier: pending.to };
    }
    if (this.isDistrusted(sentinel)) return { kind: "check" };
    this.#pending = { to, sentinel };
    return { kind: "cut" };
  }

  /**
   * Settles the pending switch with a check's views: borne out when they agree
   * on its new master; otherwise refused, and its Sentinel distrusted when its
   * own view came. Returns the refused switch, if any.
   */
  settle(
    views: readonly SentinelView[],
    agreement: Agreement,
    pollIntervalMs: number,
  ): RefusedSwitch | undefined {
    const pending = this.#pending;
    if (!pending) return undefined;
    this.#pending = undefined;
    if (agreement.kind === "agreed" && sameAddress(agreement.address, pending.to)) return undefined;
    const own = views.find((v) => sameAddress(v.sentinel, pending.sentinel))?.answer;
    const distrusted = own?.kind === "master";
    if (distrusted) this.distrust(pending.sentinel, pollIntervalMs);
    return { ...pending, distrusted };
  }

  /** The Sentinel list changed: what the old ones said, and who was distrusted, no longer counts. */
  clear(): void {
    this.#distrusted.clear();
    this.#pending = undefined;
  }
}
