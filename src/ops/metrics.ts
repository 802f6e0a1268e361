/**
 * The Prometheus text rendering of what the tunnel counts (`shared/stats.ts`).
 *
 * @module
 */

import type { DatabaseStats } from "../shared/stats.ts";
import { logLinesDropped } from "./log.ts";

/** One database as the metrics see it. */
export interface DatabaseSample {
  readonly name: string;
  readonly stats: DatabaseStats;
  readonly activeConnections: number;
  readonly hasMaster: boolean;
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
  const perDatabase = (metric: string, value: (d: DatabaseSample) => number) =>
    databases.map((d) => `${metric}{database="${escapeLabel(d.name)}"} ${value(d)}`);

  family(
    "connections_active",
    "gauge",
    "Client connections tunnelled right now.",
    perDatabase("connections_active", (d) => d.activeConnections),
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
    "Client connections answered with an error because no master was confirmed.",
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
    "resolution_duration_seconds",
    "histogram",
    "Time to ask Sentinel for the master and confirm it with ROLE.",
    databases.flatMap((d) => {
      const h = d.stats.resolutionSeconds;
      const label = `database="${escapeLabel(d.name)}"`;
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

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}
