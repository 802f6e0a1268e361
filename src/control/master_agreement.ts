/**
 * Which master the Sentinels agree on, from what each of them said when asked
 * `SENTINEL MASTER <name>`. Pure: the Sentinel client gathers the views, the
 * master watcher acts on the verdict.
 *
 * The rules:
 * - The configured Sentinels decide whenever one of them answers: the address
 *   they name at the newest `config-epoch` wins, even against a majority of
 *   older views (a Sentinel that lags names the old master at the old epoch),
 *   and an older view never overrides a newer one. At the same epoch, a view
 *   flagged `failover_in_progress` yields to the others (the leader of a
 *   failover names the old address at the new epoch until it ends); two
 *   settled views naming different addresses agree on nothing.
 * - Discovered Sentinels count only when no configured Sentinel answers, and
 *   then only a strict majority of every Sentinel watching the master names
 *   a master: a discovered Sentinel never names one by itself.
 *
 * @module
 */
import { type Address, addressKey, formatAddress, sameAddress } from "../shared/address.ts";

/** Where the client learned of a Sentinel. */
export type SentinelOrigin = "configured" | "discovered";

/** What a Sentinel said of a master. */
export type MasterAnswer =
  | {
    readonly kind: "master";
    readonly address: Address;
    readonly epoch: number;
    /** Its flags for the master, such as `master`, `s_down`, `o_down`, `failover_in_progress`. */
    readonly flags: readonly string[];
    /** Sentinel's `failover-timeout` for the master, in ms. */
    readonly failoverTimeoutMs: number;
  }
  /** It answered that it does not monitor a master of that name. */
  | { readonly kind: "unknown"; readonly detail: string }
  /** No usable answer: unreachable, too slow, an error, a malformed reply. */
  | { readonly kind: "failed"; readonly detail: string };

/** One Sentinel's answer. */
export interface SentinelView {
  readonly sentinel: Address;
  readonly origin: SentinelOrigin;
  readonly answer: MasterAnswer;
}

/** The verdict of {@linkcode agreeOnMaster}. */
export type Agreement =
  | {
    readonly kind: "agreed";
    readonly address: Address;
    readonly epoch: number;
    /** Such as `configured Sentinels 10.0.0.1:26379, 10.0.0.2:26379 (2 of 3) at config-epoch 4`. */
    readonly via: string;
    /** Who decided: the configured Sentinels, or a majority when none of them answered. */
    readonly origin: "configured" | "majority";
    /** Whether a deciding Sentinel that names this master reports a failover of it under way. */
    readonly failoverInProgress: boolean;
    /** Whether a configured Sentinel is among those that report it. */
    readonly failoverReportedByConfigured: boolean;
    /** The deciding Sentinels' `failover-timeout` for this master: how long a failover may hold. */
    readonly failoverTimeoutMs: number;
  }
  /** Every configured Sentinel answered, and none monitors the name. */
  | { readonly kind: "unknown"; readonly detail: string }
  /** No agreement: nobody answered, or the answers disagree. */
  | { readonly kind: "none"; readonly detail: string };

/** Decides what `views` agree on; see the module doc for the rules. */
export function agreeOnMaster(masterName: string, views: readonly SentinelView[]): Agreement {
  const named = views.filter((v) => v.answer.kind === "master") as (SentinelView & {
    answer: Extract<MasterAnswer, { kind: "master" }>;
  })[];
  const configured = views.filter((v) => v.origin === "configured");
  const configuredNamed = named.filter((v) => v.origin === "configured");
  const tally = () => describeViews(views);

  if (configuredNamed.length > 0) {
    const newest = Math.max(...configuredNamed.map((v) => v.answer.epoch));
    let atNewest = configuredNamed.filter((v) => v.answer.epoch === newest);
    // The Sentinel leading a failover reports the new epoch with the old address until it has
    // reconfigured the replicas, while the others already follow its hello messages: a view
    // mid-failover yields to settled views at the same epoch.
    const settled = atNewest.filter((v) => !v.answer.flags.includes("failover_in_progress"));
    if (settled.length > 0) atNewest = settled;
    const address = atNewest[0]!.answer.address;
    if (atNewest.some((v) => !sameAddress(v.answer.address, address))) {
      return {
        kind: "none",
        detail:
          `configured Sentinels name different masters at config-epoch ${newest} (${tally()})`,
      };
    }
    return agreed(
      "configured",
      configuredNamed,
      address,
      newest,
      `${
        namesOf(atNewest, "configured Sentinel")
      } (${atNewest.length} of ${configured.length}) at config-epoch ${newest}`,
    );
  }

  if (named.length > 0) {
    const needed = Math.floor(views.length / 2) + 1;
    const groups = new Map<string, typeof named>();
    for (const view of named) {
      const key = addressKey(view.answer.address);
      groups.set(key, [...(groups.get(key) ?? []), view]);
    }
    const winner = [...groups.values()].find((group) => group.length >= needed);
    if (winner) {
      // The lowest epoch of the majority: one member cannot raise it by itself.
      const epoch = Math.min(...winner.map((v) => v.answer.epoch));
      return agreed(
        "majority",
        winner,
        winner[0]!.answer.address,
        epoch,
        `${
          namesOf(winner, "discovered Sentinel")
        } (${winner.length} of ${views.length}, no configured Sentinel answered)`,
      );
    }
    return {
      kind: "none",
      detail:
        `no configured Sentinel answered, and no master is named by ${needed} of ${views.length} Sentinels (${tally()})`,
    };
  }

  const failed = views.filter((v) => v.answer.kind === "failed");
  if (
    configured.length > 0 && configured.every((v) => v.answer.kind === "unknown")
  ) {
    return {
      kind: "unknown",
      detail: `no Sentinel knows master "${masterName}" (${tally()})`,
    };
  }
  const what = failed.length === views.length
    ? "no Sentinel reachable"
    : "no Sentinel named a master";
  return { kind: "none", detail: `${what} (${tally() || "none configured"})` };
}

function agreed(
  origin: "configured" | "majority",
  deciding: readonly (SentinelView & { answer: Extract<MasterAnswer, { kind: "master" }> })[],
  address: Address,
  epoch: number,
  via: string,
): Agreement {
  // Only the Sentinels that decided speak of a failover, so that nobody else can hold clients.
  const same = deciding.filter((v) => sameAddress(v.answer.address, address));
  const reporting = same.filter((v) => v.answer.flags.includes("failover_in_progress"));
  const timeouts = same.map((v) => v.answer.failoverTimeoutMs);
  return {
    kind: "agreed",
    origin,
    address,
    epoch,
    via,
    failoverInProgress: reporting.length > 0,
    failoverReportedByConfigured: reporting.some((v) => v.origin === "configured"),
    failoverTimeoutMs: Math.min(...timeouts),
  };
}

/** Such as `configured Sentinels 127.0.0.1:26379, 127.0.0.1:26380`, at most three named. */
function namesOf(views: readonly SentinelView[], what: string): string {
  const names = views.slice(0, 3).map((v) => formatAddress(v.sentinel));
  if (views.length > 3) names.push(`${views.length - 3} more`);
  return `${what}${views.length === 1 ? "" : "s"} ${names.join(", ")}`;
}

/** One entry per Sentinel, such as `127.0.0.1:26379: 127.0.0.1:6379 at epoch 2`. */
function describeViews(views: readonly SentinelView[]): string {
  return views.map((v) => {
    const who = `${formatAddress(v.sentinel)}${v.origin === "discovered" ? " (discovered)" : ""}`;
    const { answer } = v;
    return answer.kind === "master"
      ? `${who}: ${formatAddress(answer.address)} at epoch ${answer.epoch}`
      : `${who}: ${answer.detail}`;
  }).join("; ");
}
