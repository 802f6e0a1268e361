/**
 * The admin HTTP API: health and readiness for orchestrators, what the tunnel
 * thinks of the topology and the Sentinels, the resolved config (passwords
 * redacted), and Prometheus metrics. It is read-only and off unless
 * configured; it listens on loopback unless told otherwise.
 *
 * | path                 | what                                                   |
 * | -------------------- | ------------------------------------------------------ |
 * | `/healthz`           | 200 while the process runs                             |
 * | `/readyz`            | 200 when every database has a confirmed master, or 503 |
 * | `/api/topology`      | per database: master, how it was confirmed, replicas    |
 * | `/api/sentinels`     | known Sentinels, configured or discovered, reachability |
 * | `/api/configuration` | the resolved config, passwords redacted                |
 * | `/metrics`           | Prometheus text format, `sentinel_tunnel_*`            |
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { type Address, formatAddress } from "../shared/address.ts";
import { redactConfig } from "./config.ts";
import { renderPrometheus } from "./metrics.ts";
import { serveHttp } from "./http_server.ts";
import type { TunnelServer } from "./tunnel_server.ts";

const log = getLogger(["sentinel-tunnel", "admin"]);

/** The running admin API. */
export interface AdminServer {
  readonly address: Address;
  /** Settles when the server has stopped. */
  readonly finished: Promise<void>;
}

/**
 * Starts the admin API on `address`; it stops when `signal` aborts.
 *
 * @throws {ListenError} when the address cannot be opened
 */
export function startAdminServer(
  address: Address,
  tunnel: TunnelServer,
  signal: AbortSignal,
): AdminServer {
  const server = serveHttp({ address, signal, handler: (request) => handle(request, tunnel) });
  log.info("Admin API listening on {admin}", {
    admin: `http://${formatAddress(server.address)}`,
  });
  return { address: server.address, finished: server.finished };
}

function handle(request: Request, tunnel: TunnelServer): Response {
  const { pathname } = new URL(request.url);
  if (request.method !== "GET" && request.method !== "HEAD") {
    return json(405, {
      error: `${request.method} is not allowed: the admin API is read-only; use GET`,
    }, {
      allow: "GET, HEAD",
    });
  }
  switch (pathname) {
    case "/healthz":
      return new Response("ok\n", { headers: { "content-type": "text/plain; charset=utf-8" } });
    case "/readyz":
      return readiness(tunnel);
    case "/api/topology":
      return json(200, topology(tunnel));
    case "/api/sentinels":
      return json(200, sentinels(tunnel));
    case "/api/configuration":
      return json(200, redactConfig(tunnel.config));
    case "/metrics":
      return new Response(metrics(tunnel), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    default:
      return json(404, {
        error: `no such endpoint ${JSON.stringify(pathname)}`,
        endpoints: [
          "/healthz",
          "/readyz",
          "/api/topology",
          "/api/sentinels",
          "/api/configuration",
          "/metrics",
        ],
      });
  }
}

function readiness(tunnel: TunnelServer): Response {
  const databases = tunnel.databases.map(({ watcher }) => ({
    name: watcher.database.name,
    ready: watcher.master !== undefined,
    master: watcher.master ? formatAddress(watcher.master.address) : null,
    reason: watcher.master
      ? null
      : watcher.problem?.detail ?? "resolving: no answer from a Sentinel yet",
  }));
  const ready = databases.every((d) => d.ready);
  return json(ready ? 200 : 503, { ready, databases });
}

/** From the watchers' cached state: a request never opens a Sentinel connection. */
function topology(tunnel: TunnelServer): unknown {
  return {
    databases: tunnel.databases.map(({ watcher, registry, listener }) => {
      const master = watcher.master;
      const failover = watcher.failover;
      const replicas = watcher.replicas;
      return {
        name: watcher.database.name,
        listen: formatAddress({ hostname: listener.address.hostname, port: listener.address.port }),
        master: master
          ? {
            address: formatAddress(master.address),
            confirmedAt: new Date(master.confirmedAt).toISOString(),
            confirmedBy: "ROLE",
            learnedVia: master.via,
            configEpoch: master.epoch ?? null,
          }
          : null,
        failover: failover
          ? {
            master: formatAddress(failover.master),
            reason: failover.reason,
            since: iso(failover.since),
          }
          : null,
        problem: watcher.problem
          ? {
            kind: watcher.problem.kind,
            detail: watcher.problem.detail,
            since: iso(watcher.problem.since),
          }
          : null,
        replicas: replicas?.replicas ?? null,
        replicasReportedAt: replicas ? iso(replicas.at) : null,
        sentinels: tunnel.sentinels.watching(watcher.database.name).map((s) =>
          formatAddress(s.address)
        ),
        connections: {
          active: registry.size,
          byMaster: Object.fromEntries(registry.countsByMaster()),
        },
      };
    }),
  };
}

function sentinels(tunnel: TunnelServer): unknown {
  return {
    sentinels: tunnel.sentinels.sentinels.map((s) => ({
      address: formatAddress(s.address),
      origin: s.origin,
      reachable: s.lastError === undefined ? null : s.lastError === null,
      subscribed: s.subscribed,
      lastReplyAt: s.lastReplyAt === undefined ? null : iso(s.lastReplyAt),
      lastError: s.lastError ?? null,
      errors: s.errors,
    })),
  };
}

function metrics(tunnel: TunnelServer): string {
  return renderPrometheus(
    tunnel.databases.map(({ watcher, registry }) => ({
      name: watcher.database.name,
      stats: watcher.stats,
      activeConnections: registry.size,
      hasMaster: watcher.master !== undefined,
    })),
    tunnel.sentinels.sentinels.map((s) => ({
      address: formatAddress(s.address),
      errors: s.errors,
      reachable: s.lastError === null,
    })),
  );
}

function iso(epochMs: number): string {
  return new Date(epochMs).toISOString();
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body, null, 2) + "\n", {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}
