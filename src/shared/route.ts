/**
 * What the data plane asks the control plane about one port, and nothing
 * more: where a new client may go (targets), why nowhere (the problem), and
 * how long to wait for somewhere. A port's own settings (its deadlines, its
 * caps, its TLS) are the port's; the control plane of the port's master name
 * answers these questions for every port that serves the name.
 *
 * @module
 */
import type { Address } from "./address.ts";

/**
 * Where a new client may go: the confirmed master, or the replicas usable now.
 * The control plane replaces the object when it changes, never edits it; on a
 * master port the object is the same exactly while one confirmation of the
 * master lasts, so a connection made for one confirmation is never used for
 * another.
 */
export interface Targets {
  readonly kind: "master" | "replica";
  readonly addresses: readonly Address[];
}

/** What kind of trouble keeps clients from a master (or a read port from its replicas). */
export type ProblemKind =
  /** No Sentinel answered, or they agree on nothing. */
  | "unreachable"
  /** The Sentinels do not know the master name: a client is answered at once. */
  | "unknown"
  /** The node the Sentinels name says it is not master. */
  | "not-master"
  /** The node the Sentinels name cannot be reached. */
  | "master-unreachable"
  /** The master is alive but gave no answer in time (`-BUSY`, `-LOADING`): it stays in use. */
  | "busy"
  /** A failover is promoting a replica: no client may reach the old master. */
  | "failover"
  /** Anything else: AUTH refused, a malformed reply. */
  | "error"
  /** The write fence is closed: no configured majority confirmed the master for `fence.afterMs`. */
  | "fenced";

/** Why a port cannot serve a client now, or what is wrong although it can. */
export interface Problem {
  readonly kind: ProblemKind;
  readonly detail: string;
  /** Since when (ms since the epoch) the same problem has held. */
  readonly since: number;
}

/** The control plane of one port's master name, as that port's listener sees it. */
export interface RouteSource {
  /** Where a new client may go now; `undefined` while nowhere. */
  readonly targets: Targets | undefined;
  /** Why nowhere; `unknown` means the Sentinels do not know the name. */
  readonly problem: Problem | undefined;
  /** Settles at the next change of targets or problem. */
  readonly nextChange: Promise<void>;
  /** Waits up to `timeoutMs` for targets; at once `undefined` for an unknown name. */
  waitForTargets(timeoutMs: number, signal: AbortSignal): Promise<Targets | undefined>;
  /** A client could not connect to `address`: check it now. */
  reportUnreachable(address: Address): void;
  /** Waits up to `timeoutMs` for the check under way, or the next one, to end. */
  nextResolution(timeoutMs: number, signal: AbortSignal): Promise<void>;
}
