/**
 * The JSON the status page reads, built from the running tunnel's cached
 * state (a request never opens a Sentinel or node connection):
 *
 * - {@linkcode statusReport} for `/api/status`: per master name (not per
 *   entry), the confirmed master and how it was learned, the failover and
 *   the write fence, each port's clients and ready connections, each
 *   replica (usable on which read port, or why not, its lag), and each
 *   Sentinel (up or not, what it names at which config-epoch);
 * - {@linkcode eventsReport} for `/api/events`: the journal's events, newer
 *   than an id, each with a sentence that says what happened.
 *
 * Both are bounded: by the config (names, ports, Sentinels, replicas) and by
 * the journal's capacity. Neither carries a password.
 *
 * @module
 */
import { type Address, addressKey, formatAddress } from "../shared/address.ts";
import type { DatabaseConfig } from "../shared/settings.ts";
import { plural } from "../shared/wording.ts";
import type { EventJournal, JournalEntry, JournalEvent } from "../shared/journal.ts";
import type { ControlPlane, PortRoute } from "../control/control_plane.ts";
import type { KnownSentinel, SentinelClient } from "../control/sentinel_client.ts";
import type { ConnectionRegistry } from "../data/connection_registry.ts";
import type { ReadyPool } from "../data/ready_pool.ts";

/** What {@linkcode statusReport} reads of a control plane. */
export type StatusPlane = Pick<
  ControlPlane,
  | "name"
  | "settings"
  | "master"
  | "problem"
  | "failover"
  | "fencedSince"
  | "views"
  | "replicaHealth"
  | "reportedReplicas"
>;

/** What {@linkcode statusReport} reads of a port. */
export interface StatusPort {
  readonly settings: Pick<DatabaseConfig, "name" | "role">;
  readonly listen: { readonly hostname: string; readonly port: number };
  readonly route: Pick<PortRoute, "targets" | "problem" | "replicas">;
  readonly toMaster: Pick<ConnectionRegistry, "size">;
  readonly toReplicas: Pick<ConnectionRegistry, "size" | "countTo"> | undefined;
  readonly ready: Pick<ReadyPool, "size"> | undefined;
}

/** What {@linkcode statusReport} reads of the running tunnel; a `RunningTunnel` is one. */
export interface StatusSource {
  readonly planes: readonly StatusPlane[];
  readonly ports: readonly StatusPort[];
  readonly sentinels: Pick<SentinelClient, "watching">;
  readonly journal: Pick<EventJournal, "capacity" | "lastId">;
  readonly startedAt: number;
}

/** `/api/status`. Times are ISO 8601; `generatedAt` is the tunnel's clock, to measure ages by. */
export interface StatusReport {
  readonly generatedAt: string;
  readonly startedAt: string;
  /** The journal behind `/api/events`: how many events it keeps, and the newest one's id. */
  readonly journal: { readonly capacity: number; readonly lastId: number };
  /** One per master name, in config order. */
  readonly names: readonly NameStatus[];
}

/** The headline of a master name, worst first. */
export type NameState = "failover" | "fenced" | "no-master" | "degraded" | "ok";

/** One master name. */
/** A failover under way: the master it replaces, what announced it, since when. */
export interface FailoverJson {
  readonly master: string;
  readonly reason: string;
  readonly since: string;
}

/** A master name's problem: its kind, what went wrong, since when. */
export interface ProblemJson {
  readonly kind: string;
  readonly detail: string;
  readonly since: string;
}

export interface NameStatus {
  readonly name: string;
  readonly state: NameState;
  readonly master: {
    readonly address: string;
    readonly confirmedAt: string;
    /** How it was learned, such as `3 of 3 configured Sentinels at config-epoch 2`. */
    readonly via: string;
    readonly configEpoch: number | null;
  } | null;
  /** Why there is no master, or the last failed check while there is one. */
  readonly problem: ProblemJson | null;
  /** A failover holding the name's new clients. */
  readonly failover: FailoverJson | null;
  readonly fence: {
    /** How long the master may go unconfirmed by a majority before it closes; `null`: no fence. */
    readonly afterMs: number | null;
    /** Since when it is closed; `null` while open. */
    readonly closedSince: string | null;
  };
  readonly ports: readonly PortStatus[];
  readonly replicas: readonly ReplicaStatusRow[];
  readonly sentinels: readonly SentinelStatus[];
}

/** One port (entry) of a name. */
export interface PortStatus {
  readonly listen: string;
  readonly role: "master" | "replica";
  /** Whether a new client would be sent somewhere now. */
  readonly ready: boolean;
  /** Where new clients go: the master or the replicas; `null` while nowhere. */
  readonly serving: "master" | "replica" | null;
  readonly servingAddresses: readonly string[];
  /** Why nowhere. */
  readonly reason: string | null;
  /** Live clients, to the master and to replicas. */
  readonly clients: number;
  readonly clientsToMaster: number;
  readonly clientsToReplicas: number;
  /** Ready connections to the master (`preconnect`); `null` on a read port. */
  readonly readyConnections: number | null;
}

/** One replica of a name, as checked and as a Sentinel reported it. */
export interface ReplicaStatusRow {
  readonly address: string;
  /** Why it may serve reads on no port; `null` when healthy or not checked. */
  readonly reason: string | null;
  readonly lagBytes: number | null;
  readonly checkedAt: string | null;
  readonly checkedAgainst: string | null;
  /** Live read clients on every read port together. */
  readonly clients: number;
  /** Per read port: whether its new clients may go there (under its own `maxLagBytes`). */
  readonly readPorts: readonly {
    readonly listen: string;
    readonly usable: boolean;
    readonly reason: string | null;
  }[];
  /** As a Sentinel last reported it; `null` when no Sentinel listed it. */
  readonly reported: {
    readonly flags: readonly string[];
    readonly masterLinkStatus: string | null;
    readonly reportedBy: string;
  } | null;
}

/** One Sentinel that counts for a name. */
export interface SentinelStatus {
  readonly address: string;
  readonly origin: "configured" | "discovered";
  /** Its last call's outcome: `null` before the first. */
  readonly reachable: boolean | null;
  readonly subscribed: boolean;
  readonly lastReplyAt: string | null;
  readonly lastError: string | null;
  /** What it said of the name at the last check that heard it. */
  readonly view:
    | {
      readonly kind: "master";
      readonly address: string;
      readonly configEpoch: number;
      readonly flags: readonly string[];
    }
    | { readonly kind: "unknown" | "failed"; readonly detail: string }
    | null;
}

/** Builds `/api/status`; see {@linkcode StatusReport}. */
export function statusReport(tunnel: StatusSource, now: number = Date.now()): StatusReport {
  return {
    generatedAt: iso(now),
    startedAt: iso(tunnel.startedAt),
    journal: { capacity: tunnel.journal.capacity, lastId: tunnel.journal.lastId },
    names: tunnel.planes.map((plane) =>
      nameStatus(
        plane,
        tunnel.ports.filter((port) => port.settings.name === plane.name),
        tunnel.sentinels,
      )
    ),
  };
}

function nameStatus(
  plane: StatusPlane,
  ports: readonly StatusPort[],
  sentinels: StatusSource["sentinels"],
): NameStatus {
  const { master, problem, failover, fencedSince } = plane;
  const state: NameState = failover
    ? "failover"
    : fencedSince !== undefined
    ? "fenced"
    : !master
    ? "no-master"
    : problem
    ? "degraded"
    : "ok";
  return {
    name: plane.name,
    state,
    master: master
      ? {
        address: formatAddress(master.address),
        confirmedAt: iso(master.confirmedAt),
        via: master.via,
        configEpoch: master.epoch ?? null,
      }
      : null,
    problem: problemJson(problem),
    failover: failoverJson(failover),
    fence: {
      afterMs: plane.settings.fence?.afterMs ?? null,
      closedSince: fencedSince === undefined ? null : iso(fencedSince),
    },
    ports: ports.map(portStatus),
    replicas: replicaRows(plane, ports),
    sentinels: sentinelRows(plane, sentinels),
  };
}

function portStatus(port: StatusPort): PortStatus {
  const targets = port.route.targets;
  const toMaster = port.toMaster.size;
  const toReplicas = port.toReplicas?.size ?? 0;
  return {
    listen: formatAddress(port.listen),
    role: port.settings.role,
    ready: targets !== undefined,
    serving: targets?.kind ?? null,
    servingAddresses: targets?.addresses.map((a) => formatAddress(a)) ?? [],
    reason: targets
      ? null
      : port.route.problem?.detail ?? "resolving: no answer from a Sentinel yet",
    clients: toMaster + toReplicas,
    clientsToMaster: toMaster,
    clientsToReplicas: toReplicas,
    readyConnections: port.settings.role === "master" ? port.ready?.size ?? 0 : null,
  };
}

/** Every replica the name's checks or its Sentinels know, checked ones first. */
function replicaRows(plane: StatusPlane, ports: readonly StatusPort[]): ReplicaStatusRow[] {
  const readPorts = ports.filter((p) => p.settings.role === "replica");
  const reported = new Map(
    (plane.reportedReplicas?.replicas ?? []).map((r) => [addressKey(r.replica), r]),
  );
  const rows = new Map<string, { address: Address }>();
  for (const health of plane.replicaHealth) rows.set(addressKey(health.address), health);
  // A Sentinel's list lags a failover: the master it still lists as a replica is not one.
  const master = plane.master ? addressKey(plane.master.address) : undefined;
  for (const [key, info] of reported) {
    if (!rows.has(key) && key !== master) rows.set(key, { address: info.replica });
  }
  return [...rows].map(([key, { address }]) => {
    const health = plane.replicaHealth.find((h) => addressKey(h.address) === key);
    const info = reported.get(key);
    return {
      address: formatAddress(address),
      reason: health?.reason ?? null,
      lagBytes: health?.lagBytes ?? null,
      checkedAt: health ? iso(health.checkedAt) : null,
      checkedAgainst: health?.checkedAgainst ? formatAddress(health.checkedAgainst) : null,
      clients: readPorts.reduce((n, p) => n + (p.toReplicas?.countTo(address) ?? 0), 0),
      readPorts: readPorts.map((port) => {
        const status = port.route.replicas.find((r) => addressKey(r.address) === key);
        return {
          listen: formatAddress(port.listen),
          usable: status?.usable ?? false,
          reason: status ? (status.usable ? null : status.reason ?? null) : "not checked yet",
        };
      }),
      reported: info
        ? {
          flags: info.flags,
          masterLinkStatus: info.masterLinkStatus,
          reportedBy: info.reportedBy,
        }
        : null,
    };
  });
}

function sentinelRows(
  plane: StatusPlane,
  sentinels: StatusSource["sentinels"],
): SentinelStatus[] {
  const views = new Map(plane.views.map((v) => [addressKey(v.sentinel), v]));
  return sentinels.watching(plane.name).map((s) => {
    const answer = views.get(addressKey(s.address))?.answer;
    return {
      ...sentinelJson(s),
      view: answer === undefined ? null : answer.kind === "master"
        ? {
          kind: "master",
          address: formatAddress(answer.address),
          configEpoch: answer.epoch,
          flags: answer.flags,
        }
        : { kind: answer.kind, detail: answer.detail },
    };
  });
}

/** `/api/events`: the journal's events newer than `after`, at most its capacity. */
export interface EventsReport {
  /** How many events the journal keeps (the newest ones). */
  readonly capacity: number;
  /** Where they live, and what a restart does to them. */
  readonly note: string;
  /** When the tunnel started: a page that sees it change knows the ids started again. */
  readonly startedAt: string;
  /** The newest event's id, 0 before the first. */
  readonly lastId: number;
  /** The oldest event kept, `null` when none. */
  readonly firstId: number | null;
  /** Whether events after `after` were dropped (the history is full) before they were asked for. */
  readonly missed: boolean;
  /** Oldest first. */
  readonly events: readonly EventRow[];
}

/** One event: the journal's, with a sentence for people. */
export interface EventRow {
  readonly id: number;
  readonly at: string;
  readonly kind: JournalEvent["kind"];
  /** The master name, `null` for the tunnel's own events (reloads). */
  readonly name: string | null;
  /** What happened, in a sentence. */
  readonly text: string;
  readonly event: JournalEvent;
}

/** The note `/api/events` carries. */
export const EVENTS_NOTE =
  "Kept in memory only: a restart of the tunnel loses them (its log keeps every one)";

/**
 * Builds `/api/events`: the events with an id above `after` (every kept one
 * for 0), oldest first.
 */
export function eventsReport(
  journal: Pick<EventJournal, "capacity" | "lastId" | "entries">,
  after: number,
  startedAt: number,
): EventsReport {
  const all = journal.entries();
  const first = all[0]?.id ?? null;
  const events = after <= 0 ? all : all.filter((e) => e.id > after);
  return {
    capacity: journal.capacity,
    note: EVENTS_NOTE,
    startedAt: iso(startedAt),
    lastId: journal.lastId,
    firstId: first,
    missed: first !== null ? after < first - 1 : after < journal.lastId,
    // The journal keeps at most its capacity; the slice guards a journal that would keep more.
    events: events.slice(-journal.capacity).map(eventRow),
  };
}

/**
 * Parses `after` of `/api/events?after=ID`: absent is 0.
 *
 * @throws {RangeError} when it is not a whole number from 0
 */
export function parseAfter(value: string | null): number {
  if (value === null || value === "") return 0;
  const after = /^\d{1,15}$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(after)) {
    throw new RangeError(
      `Invalid after ${
        JSON.stringify(value)
      }: give the id of the last event seen, a whole number from 0`,
    );
  }
  return after;
}

function eventRow(entry: JournalEntry): EventRow {
  const { event } = entry;
  return {
    id: entry.id,
    at: iso(entry.at),
    kind: event.kind,
    name: event.kind === "reload" ? null : event.name,
    text: describeEvent(event),
    event,
  };
}

/** What an event says, in a sentence. */
export function describeEvent(event: JournalEvent): string {
  switch (event.kind) {
    case "master-confirmed": {
      const before = event.from === undefined ? "first master" : `was ${event.from}`;
      const gap = event.withoutMasterMs === undefined
        ? ""
        : `, ${formatDuration(event.withoutMasterMs)} without a master`;
      return `Master ${event.to} confirmed (${before}${gap}), learned from ${event.via}`;
    }
    case "failover":
      return `Failover of ${event.master} started: ${event.reason}; new clients wait`;
    case "failover-ended":
      return `Failover of ${event.master} ended without a switch: ${event.why}`;
    case "cut": {
      const ports = Object.entries(event.ports).map(([port, n]) => `${n} on ${port}`).join(", ");
      return `Cut ${
        plural(event.clients, "client")
      } of ${event.node} (${event.reason}): ${event.detail}${ports === "" ? "" : ` (${ports})`}`;
    }
    case "fence":
      return event.state === "closed"
        ? `Write fence closed${
          event.master === undefined ? "" : ` on ${event.master}`
        }: no majority of the configured Sentinels confirmed the master`
        : `Write fence opened${event.master === undefined ? "" : ` on ${event.master}`}`;
    case "sentinel-distrusted":
      return `Sentinel ${event.sentinel} distrusted: ${event.why}`;
    case "replica":
      return event.usable
        ? `Replica ${event.replica} usable for reads`
        : `Replica ${event.replica} out of use${
          event.reason === undefined ? "" : `: ${event.reason}`
        }`;
    case "reload":
      return event.outcome === "applied"
        ? `Config reloaded: ${event.detail}`
        : `Reload refused: ${event.detail}`;
  }
}

/** Such as `850 ms`, `2.3 s`, `4 min 5 s`, `2 h 3 min`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** A time as JSON shows it. */
export function iso(epochMs: number): string {
  return new Date(epochMs).toISOString();
}

/** A known Sentinel's state, as JSON shows it (the status page and `/api/sentinels`). */
export function sentinelJson(s: Readonly<KnownSentinel>) {
  return {
    address: formatAddress(s.address),
    origin: s.origin,
    reachable: s.lastError === undefined ? null : s.lastError === null,
    subscribed: s.subscribed,
    lastReplyAt: s.lastReplyAt === undefined ? null : iso(s.lastReplyAt),
    lastError: s.lastError ?? null,
  };
}

/** A failover under way, as JSON shows it (the status page and `/api/topology`). */
export function failoverJson(failover: StatusPlane["failover"]): FailoverJson | null {
  return failover
    ? {
      master: formatAddress(failover.master),
      reason: failover.reason,
      since: iso(failover.since),
    }
    : null;
}

/** Why the master name is not as it should be, as JSON shows it. */
export function problemJson(problem: StatusPlane["problem"]): ProblemJson | null {
  return problem ? { kind: problem.kind, detail: problem.detail, since: iso(problem.since) } : null;
}
