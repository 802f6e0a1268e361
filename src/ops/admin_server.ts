/**
 * The admin HTTP API: a status page for people, health and readiness for
 * orchestrators, what the tunnel thinks of the topology and the Sentinels,
 * recent events, the resolved config (passwords redacted), and Prometheus
 * metrics. It is read-only and off unless configured; it listens on loopback
 * unless told otherwise.
 *
 * | path                 | what                                                                |
 * | -------------------- | ------------------------------------------------------------------- |
 * | `/`                  | the status page (`status_page.ts`), which reads the two below       |
 * | `/api/status`        | per master name: master, failover, fence, ports, replicas, Sentinels|
 * | `/api/events`        | recent events, `?after=ID` for the newer ones (`status.ts`)         |
 * | `/api`               | the list of endpoints (also in every 404)                           |
 * | `/healthz`           | 200 while the process runs                                          |
 * | `/readyz`            | 200 when every entry can serve a client now, or 503; per entry, why |
 * | `/api/topology`      | per entry: role, master and how confirmed, replicas, connections;   |
 * |                      | on a read port each replica's last check and live clients           |
 * | `/api/sentinels`     | known Sentinels, configured or discovered, reachability             |
 * | `/api/configuration` | the resolved config, passwords redacted                             |
 * | `/metrics`           | Prometheus text, `sentinel_tunnel_*`, by `database`, `port`, `role` |
 *
 * One master name may be served on several ports: as its master, or as its
 * replicas (`"role": "replica"`, a read port). Every answer lists entries, in
 * config order, each named by its listen address as well as its name. A read
 * port is ready when a new client would be sent somewhere now: to a usable
 * replica, or to the master under `whenNoReplica: "master"`.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { type Address, formatAddress } from "../shared/address.ts";
import { redactConfig } from "../config/mod.ts";
import { metricsText } from "./metrics.ts";
import { serveHttp } from "./http_server.ts";
import {
  eventsReport,
  failoverJson,
  iso,
  parseAfter,
  problemJson,
  sentinelJson,
  statusReport,
} from "./status.ts";
import {
  STATUS_PAGE_CSP,
  STATUS_PAGE_CSS,
  STATUS_PAGE_HTML,
  STATUS_PAGE_SCRIPT,
} from "./status_page.ts";
import type { RunningPort, RunningTunnel } from "./running.ts";

const log = getLogger(["sentinel-tunnel", "admin"]);

/** Every endpoint, as `/api` and a 404 list them. */
export const ENDPOINTS = [
  "/",
  "/api",
  "/api/status",
  "/api/events",
  "/healthz",
  "/readyz",
  "/api/topology",
  "/api/sentinels",
  "/api/configuration",
  "/metrics",
] as const;

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
  tunnel: RunningTunnel,
  signal: AbortSignal,
): AdminServer {
  const server = serveHttp({ address, signal, handler: (request) => handle(request, tunnel) });
  log.info("Admin API listening on {admin}", {
    admin: `http://${formatAddress(server.address)}`,
  });
  return { address: server.address, finished: server.finished };
}

function handle(request: Request, tunnel: RunningTunnel): Response | Promise<Response> {
  const url = new URL(request.url);
  const { pathname } = url;
  if (request.method !== "GET" && request.method !== "HEAD") {
    return json(405, {
      error: `${request.method} is not allowed: the admin API is read-only; use GET`,
    }, {
      allow: "GET, HEAD",
    });
  }
  switch (pathname) {
    case "/":
      return asset(STATUS_PAGE_HTML, "text/html; charset=utf-8", {
        "content-security-policy": STATUS_PAGE_CSP,
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
      });
    case "/status.js":
      return asset(STATUS_PAGE_SCRIPT, "text/javascript; charset=utf-8");
    case "/status.css":
      return asset(STATUS_PAGE_CSS, "text/css; charset=utf-8");
    case "/api":
      return json(200, { endpoints: ENDPOINTS });
    case "/api/status":
      return json(200, statusReport(tunnel));
    case "/api/events":
      return events(url, tunnel);
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
      return metrics(tunnel);
    default:
      return json(404, {
        error: `no such endpoint ${JSON.stringify(pathname)}`,
        endpoints: ENDPOINTS,
      });
  }
}

/** A rendering that fails answers 500 (the HTTP server's catch), not a cut-off body. */
async function metrics(tunnel: RunningTunnel): Promise<Response> {
  return new Response(await metricsText(tunnel), {
    headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
  });
}

function events(url: URL, tunnel: RunningTunnel): Response {
  let after: number;
  try {
    after = parseAfter(url.searchParams.get("after"));
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    return json(400, { error: error.message });
  }
  return json(200, eventsReport(tunnel.journal, after, tunnel.startedAt));
}

/** A part of the status page: the same bytes every time, never cached past a restart. */
function asset(body: string, contentType: string, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    headers: {
      "content-type": contentType,
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
      ...headers,
    },
  });
}

function readiness(tunnel: RunningTunnel): Response {
  const databases = tunnel.ports.map((port) => {
    const { plane, route } = port;
    const targets = route.targets;
    return {
      name: port.settings.name,
      role: port.settings.role,
      listen: listenOf(port),
      ready: targets !== undefined,
      master: plane.master ? formatAddress(plane.master.address) : null,
      /** Where new clients go now: `replica` or `master`; `null` while nowhere. */
      serving: targets?.kind ?? null,
      // Ready but degraded (every Sentinel gone, a busy master): the master's problem.
      reason: targets
        ? plane.problem?.detail ?? null
        : route.problem?.detail ?? "resolving: no answer from a Sentinel yet",
    };
  });
  const ready = databases.every((d) => d.ready);
  return json(ready ? 200 : 503, { ready, databases });
}

/** From the control planes' cached state: a request never opens a Sentinel or node connection. */
function topology(tunnel: RunningTunnel): unknown {
  return {
    databases: tunnel.ports.map((port) => {
      const { plane, route, toMaster, toReplicas, settings } = port;
      const master = plane.master;
      const failover = plane.failover;
      const problem = plane.problem;
      const reported = plane.reportedReplicas;
      const reads = settings.role === "replica";
      const targets = reads ? route.targets : undefined;
      const readProblem = reads ? route.problem : undefined;
      return {
        name: settings.name,
        role: settings.role,
        listen: listenOf(port),
        master: master
          ? {
            address: formatAddress(master.address),
            confirmedAt: new Date(master.confirmedAt).toISOString(),
            confirmedBy: "ROLE",
            learnedVia: master.via,
            configEpoch: master.epoch ?? null,
          }
          : null,
        failover: failoverJson(failover),
        problem: problemJson(problem),
        // Field by field: the Sentinel client's own record may grow (a parsed address, say).
        replicas: reported?.replicas.map((r) => ({
          address: r.address,
          flags: r.flags,
          masterLinkStatus: r.masterLinkStatus,
          replicationOffset: r.replicationOffset,
          reportedBy: r.reportedBy,
        })) ?? null,
        replicasReportedAt: reported ? iso(reported.at) : null,
        // A read port's own view: each replica as last checked, and where new clients go.
        readReplicas: reads
          ? route.replicas.map((r) => ({
            address: formatAddress(r.address),
            usable: r.usable,
            reason: r.usable ? null : r.reason ?? null,
            lagBytes: r.lagBytes ?? null,
            checkedAgainst: r.checkedAgainst ? formatAddress(r.checkedAgainst) : null,
            checkedAt: iso(r.checkedAt),
            liveClients: toReplicas?.countTo(r.address) ?? 0,
          }))
          : null,
        readTargets: targets
          ? { kind: targets.kind, addresses: targets.addresses.map((a) => formatAddress(a)) }
          : null,
        readProblem: readProblem ? { kind: readProblem.kind, detail: readProblem.detail } : null,
        sentinels: tunnel.sentinels.watching(settings.name).map((s) => formatAddress(s.address)),
        connections: {
          active: toMaster.size + (toReplicas?.size ?? 0),
          toMaster: toMaster.size,
          toReplicas: toReplicas?.size ?? 0,
          byMaster: Object.fromEntries(toMaster.countsByMaster()),
          byReplica: Object.fromEntries(toReplicas?.countsByMaster() ?? []),
          // Open to the master, untouched, waiting for a client (preconnect); not in `active`.
          ready: port.ready?.size ?? 0,
        },
      };
    }),
  };
}

function sentinels(tunnel: RunningTunnel): unknown {
  return {
    sentinels: tunnel.sentinels.sentinels.map((s) => ({ ...sentinelJson(s), errors: s.errors })),
  };
}

function listenOf({ listen }: RunningPort): string {
  return formatAddress({ hostname: listen.hostname, port: listen.port });
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body, null, 2) + "\n", {
    status,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      ...headers,
    },
  });
}
