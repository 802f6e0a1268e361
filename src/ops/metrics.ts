/**
 * The Prometheus text rendering of what the tunnel counts (`shared/stats.ts`).
 *
 * Every per-database series is labelled by its entry: `database` (the master
 * name), `port` (the local port) and `role` (`master`, or `replica` for a read
 * port), since one name may be served on several ports. When two entries of one
 * name and role share a port number on different addresses, their `port` label
 * is the whole listen address (`127.0.0.1:6380`), so that no two series clash.
 * A read port's replicas have series of their own, labelled `replica`; its
 * `bytes_total` directions say `master` for whichever node a tunnel went to.
 *
 * @module
 */

import type { DatabaseStats } from "../shared/stats.ts";
import { logLinesDropped } from "./log.ts";

/** One database entry (a listen address) as the metrics see it. */
export interface DatabaseSample {
  readonly name: string;
  /** What the port serves. */
  readonly role: "master" | "replica";
  /** The local port. */
  readonly port: number;
  /** The listen address, `host:port`: the `port` label when the port number alone is ambiguous. */
  readonly listen: string;
  readonly stats: DatabaseStats;
  /** Live tunnels of the port, to the master and to replicas together. */
  readonly activeConnections: number;
  /** Ready connections to the master (`preconnect`) open now. */
  readonly readyConnections: number;
  readonly hasMaster: boolean;
  /** A read port's replicas as last checked; empty on a master port. */
  readonly replicas: readonly ReplicaSample[];
}

/** One replica of a read port as the metrics see it. */
export interface ReplicaSample {
  /** `host:port`. */
  readonly address: string;
  readonly usable: boolean;
  /** How far behind the master it was at its last check; `undefined` when unknown. */
  readonly lagBytes: number | undefined;
  /** Live clients of the port that read from it. */
  readonly clients: number;
}

/** One Sentinel as the metrics see it. */
export interface SentinelSample {
  readonly address: string;
  readonly errors: number;
  readonly reachable: boolean;
}

/** Renders the samples in the Prometheus text format (version 0.0.4). */
export function renderPrometheus(
  databases: readonly DatabaseSample[],
  sentinels: readonly SentinelSample[],
): string {
  const lines: string[] = [];
  const family = (
    name: string,
    type: "counter" | "gauge" | "histogram",
    help: string,
    samples: Iterable<string>,
  ) => {
    lines.push(`# HELP sentinel_tunnel_${name} ${help}`, `# TYPE sentinel_tunnel_${name} ${type}`);
    for (const sample of samples) lines.push(`sentinel_tunnel_${sample}`);
  };
  const ports = new Map(databases.map((d) => [d, escapeLabel(portLabel(d, databases))]));
  const entry = (d: DatabaseSample) => `database="${escapeLabel(d.name)}",port="${ports.get(d)}"`;
  const labels = (d: DatabaseSample) => `${entry(d)},role="${d.role}"`;
  const perDatabase = (metric: string, value: (d: DatabaseSample) => number) =>
    databases.map((d) => `${metric}{${labels(d)}} ${value(d)}`);
  // An unknown value (a lag not measured) has no sample rather than a made-up one.
  const perReplica = (metric: string, value: (r: ReplicaSample) => number | undefined) =>
    databases.flatMap((d) =>
      d.replicas.flatMap((r) => {
        const v = value(r);
        return v === undefined
          ? []
          : [`${metric}{${entry(d)},replica="${escapeLabel(r.address)}"} ${v}`];
      })
    );

  family(
    "connections_active",
    "gauge",
    "Client connections tunnelled right now.",
    perDatabase("connections_active", (d) => d.activeConnections),
  );
  family(
    "ready_connections",
    "gauge",
    "Connections open to the master and untouched, waiting for a client (preconnect); they count against maxClients.",
    perDatabase("ready_connections", (d) => d.readyConnections),
  );
  family(
    "ready_connections_used_total",
    "counter",
    "Clients that took a ready connection instead of dialling the master.",
    perDatabase("ready_connections_used_total", (d) => d.stats.readyConnectionsUsed),
  );
  family(
    "ready_connections_discarded_total",
    "counter",
    "Ready connections closed unused: cut off with the master, closed by the master, replaced for age, or shed for a client over maxClients.",
    perDatabase("ready_connections_discarded_total", (d) => d.stats.readyConnectionsDiscarded),
  );
  family(
    "connections_total",
    "counter",
    "Client connections accepted.",
    perDatabase("connections_total", (d) => d.stats.connectionsTotal),
  );
  family(
    "connections_rejected_total",
    "counter",
    "Client connections answered with an error because no master (or replica) could take them.",
    perDatabase("connections_rejected_total", (d) => d.stats.connectionsRejected),
  );
  family(
    "connections_over_limit_total",
    "counter",
    "Client connections answered with an error because maxClients was reached, of the database or of all databases together.",
    [
      ...perDatabase("connections_over_limit_total", (d) => d.stats.connectionsOverDatabaseLimit)
        .map((s) => s.replace("{", '{limit="database",')),
      ...perDatabase("connections_over_limit_total", (d) => d.stats.connectionsOverTotalLimit)
        .map((s) => s.replace("{", '{limit="total",')),
    ],
  );
  family(
    "connections_idle_closed_total",
    "counter",
    "Tunnels closed after carrying no byte either way for clientIdleMs.",
    perDatabase("connections_idle_closed_total", (d) => d.stats.connectionsIdleClosed),
  );
  family(
    "connections_aborted_before_accept_total",
    "counter",
    "Client connections that reset or aborted before they were accepted, skipped.",
    perDatabase(
      "connections_aborted_before_accept_total",
      (d) => d.stats.connectionsAbortedBeforeAccept,
    ),
  );
  family("bytes_total", "counter", "Bytes copied through tunnels, by direction.", [
    ...perDatabase("bytes_total", (d) => d.stats.bytesClientToMaster).map((s) =>
      s.replace("{", '{direction="client_to_master",')
    ),
    ...perDatabase("bytes_total", (d) => d.stats.bytesMasterToClient).map((s) =>
      s.replace("{", '{direction="master_to_client",')
    ),
  ]);
  family(
    "master_changes_total",
    "counter",
    "Confirmed changes of master.",
    perDatabase("master_changes_total", (d) => d.stats.masterChanges),
  );
  family(
    "master_confirmed",
    "gauge",
    "1 when the database has a confirmed master.",
    perDatabase("master_confirmed", (d) => d.hasMaster ? 1 : 0),
  );
  family(
    "replica_usable",
    "gauge",
    "1 when a replica port may send new clients to the replica.",
    perReplica("replica_usable", (r) => r.usable ? 1 : 0),
  );
  family(
    "replica_lag_bytes",
    "gauge",
    "How far behind the master the replica was at its last check, in bytes; absent when unknown.",
    perReplica("replica_lag_bytes", (r) => r.lagBytes),
  );
  family(
    "replica_clients",
    "gauge",
    "Client connections of a replica port reading from the replica right now.",
    perReplica("replica_clients", (r) => r.clients),
  );
  family(
    "resolution_duration_seconds",
    "histogram",
    "Time to ask Sentinel for the master and confirm it with ROLE.",
    databases.flatMap((d) => {
      const h = d.stats.resolutionSeconds;
      const label = labels(d);
      return [
        ...h.bounds.map((bound, i) =>
          `resolution_duration_seconds_bucket{${label},le="${bound}"} ${h.counts[i]}`
        ),
        `resolution_duration_seconds_bucket{${label},le="+Inf"} ${h.count}`,
        `resolution_duration_seconds_sum{${label}} ${h.sum}`,
        `resolution_duration_seconds_count{${label}} ${h.count}`,
      ];
    }),
  );
  family(
    "sentinel_errors_total",
    "counter",
    "Failed calls to a Sentinel.",
    sentinels.map((s) => `sentinel_errors_total{sentinel="${escapeLabel(s.address)}"} ${s.errors}`),
  );
  family(
    "sentinel_reachable",
    "gauge",
    "1 when the Sentinel's last call succeeded.",
    sentinels.map((s) =>
      `sentinel_reachable{sentinel="${escapeLabel(s.address)}"} ${s.reachable ? 1 : 0}`
    ),
  );
  family(
    "log_lines_dropped_total",
    "counter",
    "Log lines lost because the log reader was stuck or writing failed.",
    [`log_lines_dropped_total ${logLinesDropped()}`],
  );
  return lines.join("\n") + "\n";
}

/** The port, or the listen address when another entry of the name and role has the same port. */
function portLabel(d: DatabaseSample, databases: readonly DatabaseSample[]): string {
  const ambiguous = databases.some((other) =>
    other !== d && other.name === d.name && other.role === d.role && other.port === d.port
  );
  return ambiguous ? d.listen : String(d.port);
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}
