/**
 * The Prometheus text rendering of what the tunnel counts (`shared/stats.ts`).
 *
 * Two kinds of series, so that no sum double counts:
 * - about a master name, once per name, labelled `database` (the master
 *   name): master changes, whether a master is confirmed, failovers, the
 *   write fence, check durations, and each replica's lag;
 * - about a port's clients and bytes, per entry, labelled `database`, `port`
 *   (the local port) and `role` (`master`, or `replica` for a read port).
 *   When two entries of one name and role share a port number on different
 *   addresses, their `port` label is the whole listen address
 *   (`127.0.0.1:6380`), so that no two series clash. A read port's replicas
 *   have series of their own, labelled `replica`; its `bytes_total` directions
 *   say `master` for whichever node a tunnel went to.
 *
 * @module
 */

import { formatAddress } from "../shared/address.ts";
import type { MasterStats, PortStats } from "../shared/stats.ts";
import type { RunningTunnel } from "./running.ts";
import { logLinesDropped } from "./log.ts";

/** One master name as the metrics see it. */
export interface MasterSample {
  readonly name: string;
  readonly stats: MasterStats;
  readonly hasMaster: boolean;
  /** Whether the write fence is closed now. */
  readonly fenced: boolean;
  /** Each replica as last checked: its lag, when known. */
  readonly replicas: readonly { readonly address: string; readonly lagBytes: number | undefined }[];
}

/** One entry (a listen address) as the metrics see it. */
export interface PortSample {
  readonly name: string;
  /** What the port serves. */
  readonly role: "master" | "replica";
  /** The local port. */
  readonly port: number;
  /** The listen address, `host:port`: the `port` label when the port number alone is ambiguous. */
  readonly listen: string;
  readonly stats: PortStats;
  /** Live tunnels of the port, to the master and to replicas together. */
  readonly activeConnections: number;
  /** Ready connections to the master (`preconnect`) open now. */
  readonly readyConnections: number;
  /** A read port's replicas under its own lag bound; empty on a master port. */
  readonly replicas: readonly ReplicaSample[];
}

/** One replica of a read port as the metrics see it. */
export interface ReplicaSample {
  /** `host:port`. */
  readonly address: string;
  readonly usable: boolean;
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
  masters: readonly MasterSample[],
  databases: readonly PortSample[],
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
  const entry = (d: PortSample) => `database="${escapeLabel(d.name)}",port="${ports.get(d)}"`;
  const labels = (d: PortSample) => `${entry(d)},role="${d.role}"`;
  const perDatabase = (metric: string, value: (d: PortSample) => number) =>
    databases.map((d) => `${metric}{${labels(d)}} ${value(d)}`);
  const perReplica = (metric: string, value: (r: ReplicaSample) => number) =>
    databases.flatMap((d) =>
      d.replicas.map((r) =>
        `${metric}{${entry(d)},replica="${escapeLabel(r.address)}"} ${value(r)}`
      )
    );
  const name = (m: MasterSample) => `database="${escapeLabel(m.name)}"`;
  const perMaster = (metric: string, value: (m: MasterSample) => number) =>
    masters.map((m) => `${metric}{${name(m)}} ${value(m)}`);

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
    "Confirmed changes of master, per master name.",
    perMaster("master_changes_total", (m) => m.stats.masterChanges),
  );
  family(
    "master_confirmed",
    "gauge",
    "1 when the master name has a confirmed master.",
    perMaster("master_confirmed", (m) => m.hasMaster ? 1 : 0),
  );
  family(
    "failovers_total",
    "counter",
    "Failovers that held clients (a promotion announced, or found under way), per master name.",
    perMaster("failovers_total", (m) => m.stats.failovers),
  );
  family(
    "write_fence_closed",
    "gauge",
    "1 while the write fence of the master name is closed.",
    perMaster("write_fence_closed", (m) => m.fenced ? 1 : 0),
  );
  family(
    "write_fence_closures_total",
    "counter",
    "Times the write fence of the master name closed.",
    perMaster("write_fence_closures_total", (m) => m.stats.fenceClosures),
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
    "How far behind the master the replica was at its last check, in bytes, per master name; absent when unknown.",
    // An unknown value (a lag not measured) has no sample rather than a made-up one.
    masters.flatMap((m) =>
      m.replicas.flatMap((r) =>
        r.lagBytes === undefined
          ? []
          : [`replica_lag_bytes{${name(m)},replica="${escapeLabel(r.address)}"} ${r.lagBytes}`]
      )
    ),
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
    "Time to ask Sentinel for the master and confirm it with ROLE, per master name.",
    masters.flatMap((m) => {
      const h = m.stats.resolutionSeconds;
      const label = name(m);
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
function portLabel(d: PortSample, databases: readonly PortSample[]): string {
  const ambiguous = databases.some((other) =>
    other !== d && other.name === d.name && other.role === d.role && other.port === d.port
  );
  return ambiguous ? d.listen : String(d.port);
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** The metrics of the running tunnel, in the Prometheus text format. */
export function renderMetrics(tunnel: RunningTunnel): string {
  return renderPrometheus(
    tunnel.planes.map((plane) => ({
      name: plane.name,
      stats: plane.stats,
      hasMaster: plane.master !== undefined,
      fenced: plane.fencedSince !== undefined,
      replicas: plane.replicaHealth.map((r) => ({
        address: formatAddress(r.address),
        lagBytes: r.lagBytes,
      })),
    })),
    tunnel.ports.map((port) => ({
      name: port.settings.name,
      role: port.settings.role,
      port: port.listen.port,
      listen: formatAddress({ hostname: port.listen.hostname, port: port.listen.port }),
      stats: port.stats,
      activeConnections: port.toMaster.size + (port.toReplicas?.size ?? 0),
      readyConnections: port.ready?.size ?? 0,
      replicas: port.settings.role === "replica"
        ? port.route.replicas.map((r) => ({
          address: formatAddress(r.address),
          usable: r.usable,
          clients: port.toReplicas?.countTo(r.address) ?? 0,
        }))
        : [],
    })),
    tunnel.sentinels.sentinels.map((s) => ({
      address: formatAddress(s.address),
      errors: s.errors,
      reachable: s.lastError === null,
    })),
  );
}
