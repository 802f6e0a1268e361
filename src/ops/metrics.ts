/**
 * The Prometheus text rendering of what the tunnel counts (`shared/stats.ts`),
 * of the process, and of the build, with prom-client's registry and metric
 * types doing the exposition format.
 *
 * ```ts ignore
 * const text = await metricsText(tunnel); // what GET /metrics answers
 * ```
 *
 * Every name starts `sentinel_tunnel_`. Three kinds of series, so that no sum
 * double counts:
 * - about a master name, once per name, labelled `database` (the master
 *   name): which node is the master (`master_info`, with its `address`),
 *   master changes, failovers (and one in progress), the write fence, check
 *   durations, clients cut by reason, hook runs, each replica's lag, and the
 *   Sentinels distrusted;
 * - about a port's clients and bytes, per entry, labelled `database`, `port`
 *   (the local port) and `role` (`master`, or `replica` for a read port).
 *   When two entries of one name and role share a port number on different
 *   addresses, their `port` label is the whole listen address
 *   (`127.0.0.1:6380`), so that no two series clash. A read port's replicas
 *   have series of their own, labelled `replica`. `bytes_total` says
 *   `client_to_server` and `server_to_client`, whichever node a tunnel went
 *   to; the ready connections (`preconnect`) are a master port's only;
 * - about the process: the build, memory, CPU, start time, the event loop's
 *   lag, and the open file descriptors and their limit where Deno lets the
 *   process read `/proc/self` (only under `--allow-all`: see
 *   {@linkcode readProcess}).
 *
 * What it does not do: prom-client's default process metrics
 * (`collectDefaultMetrics`) are not used, because under Deno 2.9 they report
 * a resident memory and open file descriptors of 0 (Deno refuses the reads of
 * `/proc/self` they make, and they swallow the error), leave out the fd limit,
 * and their event-loop delay (`perf_hooks.monitorEventLoopDelay`) does not
 * see the loop blocked. The collectors here measure what Deno lets them.
 *
 * @module
 */

import process from "node:process";
import { Counter, Gauge, type Metric, Registry } from "prom-client";
import denoJson from "../../deno.json" with { type: "json" };
import { formatAddress } from "../shared/address.ts";
import type { CutReason } from "../shared/journal.ts";
import { Histogram, type MasterStats, type PortStats } from "../shared/stats.ts";
import type { RunningTunnel } from "./running.ts";
import { logLinesDropped } from "./log.ts";

/** One master name as the metrics see it. */
export interface MasterSample {
  readonly name: string;
  readonly stats: MasterStats;
  /** The confirmed master, `host:port`; `undefined` while none is. */
  readonly master: string | undefined;
  /** Whether a failover holds the name's clients now. */
  readonly failover: boolean;
  /** Whether the write fence is closed now. */
  readonly fenced: boolean;
  /** Each replica as last checked: its lag, when known. */
  readonly replicas: readonly { readonly address: string; readonly lagBytes: number | undefined }[];
  /** Times each Sentinel (`host:port`) was distrusted for this name; a Sentinel never distrusted may be absent. */
  readonly distrusted: ReadonlyMap<string, number>;
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
  /** Ready connections to the master (`preconnect`) open now; rendered for a master port only. */
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

/** The process as the metrics see it; {@linkcode readProcess} reads it. */
export interface ProcessSample {
  /** Resident set size, in bytes. */
  readonly residentBytes: number;
  /** V8 heap in use, in bytes. */
  readonly heapUsedBytes: number;
  /** User and system CPU time, in seconds. */
  readonly cpuSeconds: number;
  /** When the tunnel started, in seconds since the epoch. */
  readonly startTimeSeconds: number;
  /** Open file descriptors; `undefined` where they cannot be read. */
  readonly openFds: number | undefined;
  /** The soft limit on open file descriptors; `undefined` where it cannot be read. */
  readonly maxFds: number | undefined;
  /** How late the event loop ran a timer, per sample (see {@linkcode EventLoopLag}). */
  readonly eventLoopLag: Histogram;
}

/** What {@linkcode renderPrometheus} renders. */
export interface TunnelSample {
  /** One per master name. */
  readonly masters: readonly MasterSample[];
  /** One per entry. */
  readonly ports: readonly PortSample[];
  readonly sentinels: readonly SentinelSample[];
  /** The process; without it, no process series. */
  readonly process?: ProcessSample | undefined;
  /** The build; without it, no `build_info`. */
  readonly build?: { readonly version: string; readonly deno: string } | undefined;
}

/** Every reason a client is cut off, so that each has a series (at 0) from the start. */
export const CUT_REASONS = [
  "switch",
  "failover",
  "not-master",
  "fence",
  "silent",
  "new-master",
  "replica",
  "reload",
] as const satisfies readonly CutReason[];
// A reason added to CutReason and not to CUT_REASONS fails the type check here.
const _everyCutReason: [Exclude<CutReason, typeof CUT_REASONS[number]>] extends [never] ? true
  : never = true;

/** Upper bounds of the event loop's lag histogram, in seconds. */
export const EVENT_LOOP_LAG_BUCKETS = [
  0.001,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
] as const;

const PREFIX = "sentinel_tunnel_";

/**
 * Renders the samples in the Prometheus text format (version 0.0.4).
 *
 * @throws {Error} when two samples of one metric have the same labels (two entries the
 *   `port` label cannot tell apart): a scrape that would otherwise lose one of them
 */
export async function renderPrometheus(sample: TunnelSample): Promise<string> {
  const { masters, ports: databases, sentinels } = sample;
  const registry = new Registry();
  const metrics = new Families(registry);
  const ports = new Map(databases.map((d) => [d, portLabel(d, databases)]));
  const entry = (d: PortSample) => ({ database: d.name, port: ports.get(d)! });
  const labels = (d: PortSample) => ({ ...entry(d), role: d.role });
  const masterPorts = databases.filter((d) => d.role === "master");
  const perPort = ["database", "port", "role"] as const;
  const perReplica = ["database", "port", "replica"] as const;

  if (sample.build) {
    const build = ["version", "deno"];
    metrics.gauge("build_info", "The tunnel's version and its Deno's, as labels; always 1.", build)
      .set(sample.build, 1);
  }

  const active = metrics.gauge(
    "connections_active",
    "Client connections tunnelled right now.",
    perPort,
  );
  for (const d of databases) active.set(labels(d), d.activeConnections);
  const ready = metrics.gauge(
    "ready_connections",
    "Connections open to the master and untouched, waiting for a client (preconnect); they count against maxClients. Master ports only.",
    perPort,
  );
  for (const d of masterPorts) ready.set(labels(d), d.readyConnections);
  metrics.counter(
    "ready_connections_used_total",
    "Clients that took a ready connection instead of dialling the master. Master ports only.",
    perPort,
    masterPorts.map((d) => [labels(d), d.stats.readyConnectionsUsed]),
  );
  metrics.counter(
    "ready_connections_discarded_total",
    "Ready connections closed unused: cut off with the master, closed by the master, replaced for age, or shed for a client over maxClients. Master ports only.",
    perPort,
    masterPorts.map((d) => [labels(d), d.stats.readyConnectionsDiscarded]),
  );
  metrics.counter(
    "connections_total",
    "Client connections accepted.",
    perPort,
    databases.map((d) => [labels(d), d.stats.connectionsTotal]),
  );
  metrics.counter(
    "connections_rejected_total",
    "Client connections answered with an error because no master (or replica) could take them.",
    perPort,
    databases.map((d) => [labels(d), d.stats.connectionsRejected]),
  );
  metrics.counter(
    "connections_over_limit_total",
    "Client connections answered with an error because maxClients was reached, of the database or of all databases together.",
    ["limit", ...perPort],
    [
      ...databases.map((d) =>
        [{ limit: "database", ...labels(d) }, d.stats.connectionsOverDatabaseLimit] as const
      ),
      ...databases.map((d) =>
        [{ limit: "total", ...labels(d) }, d.stats.connectionsOverTotalLimit] as const
      ),
    ],
  );
  metrics.counter(
    "connections_idle_closed_total",
    "Tunnels closed after carrying no byte either way for clientIdleMs.",
    perPort,
    databases.map((d) => [labels(d), d.stats.connectionsIdleClosed]),
  );
  metrics.counter(
    "connections_aborted_before_accept_total",
    "Client connections that reset or aborted before they were accepted, skipped.",
    perPort,
    databases.map((d) => [labels(d), d.stats.connectionsAbortedBeforeAccept]),
  );
  metrics.counter(
    "accepts_out_of_descriptors_total",
    "Episodes of accepts failing for lack of file descriptors (EMFILE, ENFILE): raise ulimit -n (LimitNOFILE), or lower maxClients.",
    perPort,
    databases.map((d) => [labels(d), d.stats.acceptsOutOfDescriptors]),
  );
  metrics.counter(
    "bytes_total",
    "Bytes copied through tunnels, by direction: client_to_server from the clients to the master or replica, server_to_client back.",
    ["direction", ...perPort],
    [
      ...databases.map((d) =>
        [{ direction: "client_to_server", ...labels(d) }, d.stats.bytesClientToMaster] as const
      ),
      ...databases.map((d) =>
        [{ direction: "server_to_client", ...labels(d) }, d.stats.bytesMasterToClient] as const
      ),
    ],
  );
  metrics.histogram(
    "client_wait_seconds",
    "How long each new client that found nowhere to go waited for somewhere, or until it was refused or left.",
    perPort,
    databases.map((d) => [labels(d), d.stats.clientWaitSeconds]),
  );

  const name = (m: MasterSample) => ({ database: m.name });
  const perName = ["database"] as const;
  const masterInfo = metrics.gauge(
    "master_info",
    "1 for the confirmed master of the master name, its address as a label; absent while none is.",
    ["database", "address"],
  );
  for (const m of masters) {
    if (m.master !== undefined) masterInfo.set({ ...name(m), address: m.master }, 1);
  }
  metrics.counter(
    "master_changes_total",
    "Confirmed changes of master, per master name.",
    perName,
    masters.map((m) => [name(m), m.stats.masterChanges]),
  );
  const confirmed = metrics.gauge(
    "master_confirmed",
    "1 when the master name has a confirmed master.",
    perName,
  );
  for (const m of masters) confirmed.set(name(m), m.master !== undefined ? 1 : 0);
  metrics.counter(
    "failovers_total",
    "Failovers that held clients (a promotion announced, or found under way), per master name.",
    perName,
    masters.map((m) => [name(m), m.stats.failovers]),
  );
  const failover = metrics.gauge(
    "failover_in_progress",
    "1 while a failover holds the master name's clients.",
    perName,
  );
  for (const m of masters) failover.set(name(m), m.failover ? 1 : 0);
  const fenced = metrics.gauge(
    "write_fence_closed",
    "1 while the write fence of the master name is closed.",
    perName,
  );
  for (const m of masters) fenced.set(name(m), m.fenced ? 1 : 0);
  metrics.counter(
    "write_fence_closures_total",
    "Times the write fence of the master name closed.",
    perName,
    masters.map((m) => [name(m), m.stats.fenceClosures]),
  );
  metrics.counter(
    "clients_cut_total",
    "Client connections cut off, by reason, on every port of the master name together.",
    ["database", "reason"],
    masters.flatMap((m) => {
      const reasons = new Set<string>([...CUT_REASONS, ...m.stats.clientsCut.keys()]);
      return [...reasons].map((reason) =>
        [{ ...name(m), reason }, m.stats.clientsCut.get(reason as CutReason) ?? 0] as const
      );
    }),
  );
  metrics.counter(
    "hook_runs_total",
    "Runs of the master name's onMasterChange hook.",
    perName,
    masters.map((m) => [name(m), m.stats.hookRuns]),
  );
  metrics.counter(
    "hook_failures_total",
    "Runs of the master name's onMasterChange hook that failed or timed out.",
    perName,
    masters.map((m) => [name(m), m.stats.hookFailures]),
  );
  const usable = metrics.gauge(
    "replica_usable",
    "1 when a replica port may send new clients to the replica.",
    perReplica,
  );
  const replicaClients = metrics.gauge(
    "replica_clients",
    "Client connections of a replica port reading from the replica right now.",
    perReplica,
  );
  for (const d of databases) {
    for (const r of d.replicas) {
      usable.set({ ...entry(d), replica: r.address }, r.usable ? 1 : 0);
      replicaClients.set({ ...entry(d), replica: r.address }, r.clients);
    }
  }
  const lag = metrics.gauge(
    "replica_lag_bytes",
    "How far behind the master the replica was at its last check, in bytes, per master name; absent when unknown.",
    ["database", "replica"],
  );
  for (const m of masters) {
    // An unknown value (a lag not measured) has no sample rather than a made-up one.
    for (const r of m.replicas) {
      if (r.lagBytes !== undefined) lag.set({ ...name(m), replica: r.address }, r.lagBytes);
    }
  }
  metrics.histogram(
    "resolution_duration_seconds",
    "Time to ask Sentinel for the master and confirm it with ROLE, per master name.",
    perName,
    masters.map((m) => [name(m), m.stats.resolutionSeconds]),
  );

  metrics.counter(
    "sentinel_errors_total",
    "Failed calls to a Sentinel.",
    ["sentinel"],
    sentinels.map((s) => [{ sentinel: s.address }, s.errors]),
  );
  const reachable = metrics.gauge(
    "sentinel_reachable",
    "1 when the Sentinel's last call succeeded.",
    ["sentinel"],
  );
  for (const s of sentinels) reachable.set({ sentinel: s.address }, s.reachable ? 1 : 0);
  metrics.counter(
    "sentinel_distrusted_total",
    "Times a Sentinel's word was refused for the master name (it named another new master before a check settled the first): its events then only trigger checks for a while.",
    ["database", "sentinel"],
    masters.flatMap((m) => {
      const known = new Set([...sentinels.map((s) => s.address), ...m.distrusted.keys()]);
      return [...known].map((s) =>
        [{ ...name(m), sentinel: s }, m.distrusted.get(s) ?? 0] as const
      );
    }),
  );
  metrics.counter(
    "log_lines_dropped_total",
    "Log lines lost because the log reader was stuck or writing failed.",
    [],
    [[{}, logLinesDropped()]],
  );

  const proc = sample.process;
  if (proc) {
    const value = (metric: string, help: string, v: number | undefined) => {
      if (v !== undefined) metrics.gauge(metric, help, []).set(v);
    };
    value("process_resident_memory_bytes", "Resident memory size in bytes.", proc.residentBytes);
    value("process_heap_used_bytes", "V8 heap in use, in bytes.", proc.heapUsedBytes);
    metrics.counter(
      "process_cpu_seconds_total",
      "User and system CPU time spent, in seconds.",
      [],
      [[{}, proc.cpuSeconds]],
    );
    value(
      "process_start_time_seconds",
      "When the tunnel started, in seconds since the epoch.",
      proc.startTimeSeconds,
    );
    value(
      "process_open_fds",
      "Open file descriptors; absent where Deno refuses to read /proc/self/fd (without --allow-all).",
      proc.openFds,
    );
    value(
      "process_max_fds",
      "The soft limit on open file descriptors; absent where Deno refuses to read /proc/self/limits (without --allow-all).",
      proc.maxFds,
    );
    metrics.histogram(
      "event_loop_lag_seconds",
      "How late the event loop ran a timer due every 100 ms, per timer, in seconds: time the loop was blocked.",
      [],
      [[{}, proc.eventLoopLag]],
    );
  }
  return await registry.metrics();
}

type Labels = Record<string, string>;

/** The families of one rendering, each registered with its registry. */
class Families {
  readonly #registry: Registry;

  constructor(registry: Registry) {
    this.#registry = registry;
  }

  /** A gauge; set each series once, or the rendering throws. */
  gauge(
    name: string,
    help: string,
    labelNames: readonly string[],
  ): { set(...args: [Labels, number] | [number]): void } {
    const gauge = new Gauge({ name: PREFIX + name, help, labelNames, registers: [this.#registry] });
    const seen = new Set<string>();
    return {
      set: (...args: [Labels, number] | [number]) => {
        if (args.length === 1) return gauge.set(args[0]);
        unique(seen, name, args[0]);
        gauge.set(args[0], args[1]);
      },
    };
  }

  /** A counter at the totals given. */
  counter(
    name: string,
    help: string,
    labelNames: readonly string[],
    totals: readonly (readonly [Labels, number])[],
  ): void {
    const counter = new Counter({
      name: PREFIX + name,
      help,
      labelNames,
      registers: [this.#registry],
    });
    const seen = new Set<string>();
    for (const [labels, total] of totals) {
      unique(seen, name, labels);
      counter.inc(labels, total);
    }
  }

  /** A histogram of the counts given. */
  histogram(
    name: string,
    help: string,
    labelNames: readonly string[],
    series: readonly (readonly [Labels, Histogram])[],
  ): void {
    const seen = new Set<string>();
    for (const [labels] of series) {
      // What prom-client checks of its own metrics' labels.
      const names = Object.keys(labels);
      if (names.length !== labelNames.length || names.some((l) => !labelNames.includes(l))) {
        throw new Error(
          `${PREFIX}${name} takes the labels ${labelNames.join(", ")}, not ${names.join(", ")}`,
        );
      }
      unique(seen, name, labels);
    }
    this.#registry.registerMetric(
      new CountedHistogram(PREFIX + name, help, series) as unknown as Metric,
    );
  }
}

function unique(seen: Set<string>, name: string, labels: Labels): void {
  const key = JSON.stringify(Object.entries(labels).sort());
  if (seen.has(key)) {
    throw new Error(`Two samples of ${PREFIX}${name} have the same labels: ${key}`);
  }
  seen.add(key);
}

/**
 * A histogram whose buckets the tunnel counted itself, in prom-client's
 * registry. prom-client's own `Histogram` takes observations one by one, and
 * cannot be given counts; its registry renders any metric from what `get()`
 * returns (the protocol its own types follow), which is this.
 */
class CountedHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly #series: readonly (readonly [Labels, Histogram])[];

  constructor(name: string, help: string, series: readonly (readonly [Labels, Histogram])[]) {
    this.name = name;
    this.help = help;
    this.#series = series;
  }

  get(): Promise<unknown> {
    const values = this.#series.flatMap(([labels, h]) => [
      ...h.bounds.map((bound, i) => ({
        metricName: `${this.name}_bucket`,
        labels: { ...labels, le: bound },
        value: h.counts[i]!,
      })),
      { metricName: `${this.name}_bucket`, labels: { ...labels, le: "+Inf" }, value: h.count },
      { metricName: `${this.name}_sum`, labels, value: h.sum },
      { metricName: `${this.name}_count`, labels, value: h.count },
    ]);
    const { name, help, type, aggregator } = this;
    return Promise.resolve({ name, help, type, aggregator, values });
  }
}

/** The port, or the listen address when another entry of the name and role has the same port. */
function portLabel(d: PortSample, databases: readonly PortSample[]): string {
  const ambiguous = databases.some((other) =>
    other !== d && other.name === d.name && other.role === d.role && other.port === d.port
  );
  return ambiguous ? d.listen : String(d.port);
}

/**
 * Measures how late the event loop runs a timer: one timer every
 * `intervalMs`, unref'd (it never holds the process open), each one's delay
 * past its due time observed in {@linkcode EventLoopLag.histogram}. A loop
 * blocked for 2 s shows as one sample of about 2 s. Node's
 * `perf_hooks.monitorEventLoopDelay` is not used: under Deno 2.9 it does not
 * see the loop blocked (300 ms of busy work read as a 2.6 ms maximum).
 */
export class EventLoopLag {
  /** The delays seen, in seconds. */
  readonly histogram: Histogram = new Histogram(EVENT_LOOP_LAG_BUCKETS);
  readonly #intervalMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** @param intervalMs how often to sample; @default {100} */
  constructor(intervalMs = 100) {
    if (!(intervalMs > 0)) {
      throw new RangeError(`Invalid interval "${intervalMs}": must be positive`);
    }
    this.#intervalMs = intervalMs;
  }

  /** Whether it is sampling. */
  get running(): boolean {
    return this.#timer !== undefined;
  }

  /** Starts sampling; does nothing when it already is. */
  start(): void {
    if (this.#timer !== undefined) return;
    const schedule = () => {
      const due = performance.now() + this.#intervalMs;
      const timer = setTimeout(() => {
        this.histogram.observe(Math.max(0, performance.now() - due) / 1000);
        schedule();
      }, this.#intervalMs);
      Deno.unrefTimer(timer);
      this.#timer = timer;
    };
    schedule();
  }

  /** Stops sampling; the histogram keeps what it saw. */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  [Symbol.dispose](): void {
    this.stop();
  }
}

/** What `/proc/self` answered last: `false` once Deno refused it or it is not there. */
let procReadable = true;

/**
 * Reads the process's memory, CPU time and file descriptors now.
 *
 * The descriptors come from `/proc/self/fd` and `/proc/self/limits` (Linux),
 * which Deno 2.9 lets a process read only under `--allow-all`: neither
 * `--allow-read` nor `--allow-read=/proc/self` grants them ("Requires all
 * access"). The tunnel runs with `--allow-read` (and its compiled binary with
 * the same list), so there they are `undefined`; after one refusal they are
 * not asked again.
 */
export async function readProcess(options: ReadProcessOptions): Promise<ProcessSample> {
  const memory = Deno.memoryUsage();
  const cpu = process.cpuUsage();
  let openFds: number | undefined;
  let maxFds: number | undefined;
  if (procReadable && Deno.build.os === "linux") {
    try {
      let count = 0;
      for await (const _ of Deno.readDir("/proc/self/fd")) count++;
      // The directory being read was one of them.
      openFds = count - 1;
      const limits = await Deno.readTextFile("/proc/self/limits");
      const soft = /^Max open files\s+(\d+|unlimited)\s/m.exec(limits)?.[1];
      maxFds = soft === undefined || soft === "unlimited" ? undefined : Number(soft);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.NotFound)) {
        throw error;
      }
      procReadable = false;
      openFds = undefined;
      maxFds = undefined;
    }
  }
  return {
    residentBytes: memory.rss,
    heapUsedBytes: memory.heapUsed,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    startTimeSeconds: options.startedAt / 1000,
    openFds,
    maxFds,
    eventLoopLag: options.eventLoopLag.histogram,
  };
}

/** Options for {@linkcode readProcess}. */
export interface ReadProcessOptions {
  /** When the tunnel started, ms since the epoch. */
  startedAt: number;
  /** Whose histogram to report. */
  eventLoopLag: EventLoopLag;
}

/** Samples the event loop from the first scrape on. */
const eventLoopLag = new EventLoopLag();

/** The metrics of the running tunnel, in the Prometheus text format. */
export async function metricsText(tunnel: RunningTunnel): Promise<string> {
  eventLoopLag.start();
  const proc = await readProcess({ startedAt: tunnel.startedAt, eventLoopLag });
  return await renderPrometheus({
    build: { version: denoJson.version, deno: Deno.version.deno },
    masters: tunnel.planes.map((plane) => ({
      name: plane.name,
      stats: plane.stats,
      master: plane.master && formatAddress(plane.master.address),
      failover: plane.failover !== undefined,
      fenced: plane.fencedSince !== undefined,
      replicas: plane.replicaHealth.map((r) => ({
        address: formatAddress(r.address),
        lagBytes: r.lagBytes,
      })),
      distrusted: plane.stats.sentinelsDistrusted,
    })),
    ports: tunnel.ports.map((port) => ({
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
    sentinels: tunnel.sentinels.sentinels.map((s) => ({
      address: formatAddress(s.address),
      errors: s.errors,
      reachable: s.lastError === null,
    })),
    process: proc,
  });
}
