/**
 * The decision of one check, in two pure steps: which node to ask for its
 * ROLE, on whose word ({@linkcode chooseCandidate}), and what its answer means
 * ({@linkcode roleVerdict}). What the Sentinels agree on is
 * `master_agreement.ts`'s; acting on the verdict is the master watcher's.
 *
 * @module
 */
import { type Address, formatAddress, sameAddress } from "../shared/address.ts";
import type { Agreement, SentinelView } from "./master_agreement.ts";
import type { RoleCheck } from "./role_probe.ts";

/** The node a check asks for its ROLE, and why. */
export interface Candidate {
  readonly address: Address;
  /** How it was learned, such as `3 of 3 configured Sentinels at config-epoch 2`. */
  readonly via: string;
  /** The config-epoch it was named at, when the configured Sentinels named it. */
  readonly epoch: number | undefined;
  /** Whether the Sentinels' view names it (or named it at a newer epoch), not only its own word. */
  readonly named: boolean;
}

/** What is known before a check: the master in use, the last one confirmed, and the newest epoch acted on. */
export interface Known {
  /** The master confirmed now, if any. */
  readonly master: Address | undefined;
  /** The master confirmed now, else the last one confirmed. */
  readonly last: Address | undefined;
  /** The config-epoch of the view last acted on. */
  readonly epoch: number | undefined;
}

/**
 * Which node to ask, from what the Sentinels agree on and what is known; `undefined`
 * when there is none (they agree on nothing, and no master is in use).
 *
 * - An older view never overrides a newer one: the master there is is asked.
 * - No agreement (every Sentinel down, say): a master still in use, never cut
 *   since a view named it, keeps serving while it says it is master.
 */
export function chooseCandidate(agreement: Agreement, known: Known): Candidate | undefined {
  if (agreement.kind === "agreed") {
    const { last, epoch } = known;
    if (
      last && !sameAddress(agreement.address, last) && epoch !== undefined &&
      agreement.epoch < epoch
    ) {
      return {
        address: last,
        via: `the master confirmed at config-epoch ${epoch} (Sentinels now name ${
          formatAddress(agreement.address)
        } at the older config-epoch ${agreement.epoch})`,
        epoch,
        named: true,
      };
    }
    return {
      address: agreement.address,
      via: agreement.via,
      epoch: agreement.origin === "configured" ? agreement.epoch : undefined,
      named: true,
    };
  }
  if (!known.master) return undefined;
  return {
    address: known.master,
    via: `the master confirmed before (${agreement.detail})`,
    epoch: known.epoch,
    named: false,
  };
}

/** What a candidate's ROLE answer means. */
export type RoleVerdict =
  /** It says `master`: confirmed. */
  | { readonly kind: "confirm" }
  /** It says it is something else: nobody may keep writing to it through the tunnel. */
  | { readonly kind: "demote"; readonly role: string }
  /** The master in use, still named, is alive but slow or busy: it stays in use. */
  | { readonly kind: "busy"; readonly detail: string }
  /** Not known to be demoted, but not usable: its tunnels stay, no new client goes there. */
  | { readonly kind: "lost"; readonly detail: string; readonly silent: boolean }
  /** Anything else (AUTH refused, a malformed reply): not usable. */
  | { readonly kind: "error"; readonly detail: string };

/** Sorts `role`, the answer of `candidate`, while `master` is in use. */
export function roleVerdict(
  candidate: Candidate,
  role: RoleCheck,
  master: Address | undefined,
): RoleVerdict {
  if (role.kind === "role") {
    return role.role === "master" ? { kind: "confirm" } : { kind: "demote", role: role.role };
  }
  if (
    role.kind === "busy" && candidate.named && master && sameAddress(master, candidate.address)
  ) {
    return { kind: "busy", detail: role.detail };
  }
  if (role.kind === "unreachable" || role.kind === "busy") {
    return {
      kind: "lost",
      detail: role.detail,
      silent: role.kind === "unreachable" && role.silent === true,
    };
  }
  return { kind: "error", detail: role.detail };
}

/** Whether a strict majority of the configured Sentinels name `address`. */
export function namedByConfiguredMajority(
  views: readonly SentinelView[],
  address: Address,
): boolean {
  let configured = 0;
  let naming = 0;
  for (const { origin, answer } of views) {
    if (origin !== "configured") continue;
    configured++;
    if (answer.kind === "master" && sameAddress(answer.address, address)) naming++;
  }
  return naming * 2 > configured;
}
