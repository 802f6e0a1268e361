/**
 * `make bench`: sentinel-tunnel against direct Redis, with HAProxy as a
 * reference, on a throwaway local deployment.
 *
 * It starts one master, two replicas and three Sentinels on loopback, the
 * tunnel (the bundle under `make bench`), the Deno floor (bench/floor_proxy.ts,
 * a minimal Deno proxy straight to the master) and, when it is installed,
 * HAProxy with the usual `role:master` tcp-check. Then:
 *
 * - redis-benchmark workloads, in interleaved rounds: each round runs each
 *   workload against every target back to back, the target order rotating,
 *   so that noise on a shared machine hits every target alike. The report
 *   gives medians over rounds, as ratios to direct Redis in the same round;
 * - idle connections: the proxy's memory per connection (the tunnel's, the
 *   Deno floor's and HAProxy's), and whether every connection still gets
 *   answers;
 * - failover: the time from `+switch-master` to the first write the new
 *   master acknowledges through each proxy, over forced failovers;
 * - TLS: a second, TLS-only deployment, with redis-benchmark straight to its
 *   master over TLS, and in plaintext to a tunnel (and HAProxy) that reach it
 *   over TLS, against the plaintext targets in the same interleaved rounds;
 *   and the time a new connection takes to answer a PING, TLS or not.
 *
 * It prints the tables and, for a full run, writes them with a description of
 * the machine to bench/RESULTS.md, keeping that file's "What was tried"
 * section. A partial run with `--write` replaces only the sections it
 * measured. Every process it starts is stopped at the end, also on failure
 * and on Ctrl-C.
 *
 * ```sh
 * make bench BENCH_ARGS="--rounds 5"
 * make bench BENCH_ARGS="--only clients50,pipeline16 --no-haproxy"
 * make bench BENCH_ARGS="--only tls --rounds 5 --write"
 * make bench-smoke
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { deploymentTls, makeCertificates } from "../tests/_certs.ts";
import { type Deployment, freePort, startDeployment } from "../tests/_deployment.ts";
import { startTunnel, TUNNEL_UNDER_TEST } from "../tests/_tunnel.ts";
import { type FailoverSample, measureFailover, waitConverged } from "./_failover.ts";
import {
  ensureHaproxy,
  type HaproxyAvailability,
  haproxyConfig,
  type HaproxyServerTls,
  startHaproxy,
} from "./_haproxy.ts";
import { FLOOR_SCRIPT, IDLE_FLOOR_BUFFER_BYTES, startFloor } from "./_floor.ts";
import { measureIdleConnections } from "./_idle.ts";
import { benchmarkCommand, runRedisBenchmark } from "./_redis_benchmark.ts";
import { delayBedUnavailable } from "./_delay_bed.ts";
import {
  RTT_GROUP,
  RTT_NAMES,
  type RttSection,
  rttSectionMarkdown,
  runRttSection,
} from "./_rtt.ts";
import {
  type ConnectRun,
  connectTable,
  describeMachine,
  failoverTable,
  type IdleReport,
  idleTable,
  type Machine,
  machineSection,
  mergeSections,
  readWhatWasTried,
  summarize,
  TARGET_LABELS,
  type TargetName,
  throughputTable,
  tlsThroughputTable,
  WHAT_WAS_TRIED,
  type WorkloadRuns,
} from "./_report.ts";
import { type Dialer, negotiated, timeConnects } from "./_tls.ts";
import { sleep, waitRoutesTo } from "./_wait.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const RESULTS_FILE = "bench/RESULTS.md";
const MASTER_NAME = "mymaster";

/** One redis-benchmark workload. */
interface Workload {
  /** The name `--only` takes. */
  name: string;
  title: string;
  /** redis-benchmark arguments, without `-n`. */
  args: readonly string[];
  /** `-n` of a full run. */
  requests: number;
  /** `-n` of a smoke run. */
  smokeRequests: number;
}

// Request counts keep each run at one to a few seconds against direct Redis on a small machine.
const WORKLOADS: readonly Workload[] = [
  {
    name: "clients50",
    title: "50 clients",
    args: ["-t", "set,get", "-c", "50"],
    requests: 100_000,
    smokeRequests: 2000,
  },
  {
    name: "pipeline16",
    title: "50 clients, -P 16",
    args: ["-t", "set,get", "-c", "50", "-P", "16"],
    requests: 500_000,
    smokeRequests: 2000,
  },
  {
    name: "client1",
    title: "1 client",
    args: ["-t", "set,get", "-c", "1"],
    requests: 20_000,
    smokeRequests: 1000,
  },
  {
    name: "churn",
    title: "50 clients, -k 0 (a connection per request)",
    args: ["-t", "set,get", "-c", "50", "-k", "0"],
    requests: 5000,
    smokeRequests: 500,
  },
  {
    name: "large",
    title: "50 clients, 100 KB values",
    args: ["-t", "set,get", "-c", "50", "-d", "102400"],
    requests: 2000,
    smokeRequests: 200,
  },
];

/**
 * The TLS section's redis-benchmark workloads: the loopback ones with
 * persistent clients, and a new connection per request. The `-k 0` one runs
 * fewer requests: a TLS handshake costs milliseconds here.
 */
const TLS_WORKLOADS: readonly Workload[] = [
  {
    name: "tls-clients50",
    title: "50 clients",
    args: ["-t", "set,get", "-c", "50"],
    requests: 100_000,
    smokeRequests: 1000,
  },
  {
    name: "tls-pipeline16",
    title: "50 clients, -P 16",
    args: ["-t", "set,get", "-c", "50", "-P", "16"],
    requests: 500_000,
    smokeRequests: 1000,
  },
  {
    name: "tls-churn",
    title: "50 clients, -k 0 (a connection per request)",
    args: ["-t", "set,get", "-c", "50", "-k", "0"],
    requests: 2500,
    smokeRequests: 100,
  },
];
/** The TLS section's timed sequential connections. */
const TLS_CONNECT = "tls-connect";
const TLS_CONNECTS = 200;
const TLS_CONNECTS_SMOKE = 10;
const TLS_NAMES = [...TLS_WORKLOADS.map((workload) => workload.name), TLS_CONNECT];
/** The TLS deployment of a full run, as the plaintext one; a smoke run starts less. */
const TLS_SHAPE = { replicas: 2, sentinels: 3 };
const TLS_SMOKE_SHAPE = { replicas: 0, sentinels: 1 };
/** What `--only tls` stands for. */
const TLS_GROUP = "tls";

/** Measurements that are not redis-benchmark workloads. */
const EXTRAS = ["idle", "failover"] as const;
const ALL_NAMES = [
  ...WORKLOADS.map((workload) => workload.name),
  ...TLS_NAMES,
  ...RTT_NAMES,
  ...EXTRAS,
];

const IDLE_MAX = 10_000;
const IDLE_SMOKE = 200;
/** File descriptors kept aside for everything a proxy holds besides its client connections. */
const FD_RESERVE = 100;
const REDIS_MAXCLIENTS = 12_000;
const FAILOVERS = 5;
const TUNNEL_FAILOVER_WAIT_MS = 15_000;
const HAPROXY_FAILOVER_WAIT_MS = 45_000;

const USAGE = `Usage: deno run --allow-all bench/bench.ts [options]

  --rounds N      interleaved rounds of the redis-benchmark workloads (default 5: the goals are medians of at least 5)
  --smoke         one short round, few requests, ${IDLE_SMOKE} idle connections, one failover;
                  writes no results file unless --write is given
  --write         write ${RESULTS_FILE} even for a smoke or --only run: the sections this
                  run measured replace theirs, the rest of the file is kept
  --only A,B      run only these: ${ALL_NAMES.join(", ")};
                  "${TLS_GROUP}" stands for all of ${TLS_NAMES.join(", ")};
                  "${RTT_GROUP}" for all of ${RTT_NAMES.join(", ")} (needs root)
  --no-haproxy    leave out the HAProxy column
  -h, --help      show this help`;

/** The parsed command line. */
interface BenchOptions {
  rounds: number;
  smoke: boolean;
  write: boolean;
  /** The selected workloads and measurements; all of them when `--only` is absent. */
  only: ReadonlySet<string>;
  haproxy: boolean;
}

/** A port redis-benchmark and the clients connect to. */
interface Target {
  name: TargetName;
  port: number;
  /** The process whose memory the idle measurement reads. */
  pid: number;
  /** redis-benchmark arguments that reach it, such as `--tls`; none for plaintext. */
  benchArgs?: readonly string[];
  /** How the timed connections reach it. @default {{ kind: "plain" }} */
  dialer?: Dialer;
}

/** The TLS section. */
interface TlsSection {
  startedAt: Date;
  /** What the TLS deployment runs, such as "1 master, 2 replicas, 3 Sentinels". */
  shape: string;
  targets: TargetName[];
  workloads: WorkloadRuns[];
  /** The timed sequential connections; undefined when not selected. */
  connects: ConnectRun[] | undefined;
  connectCount: number;
  /** What the TLS master negotiates with OpenSSL's client. */
  negotiated: string;
  /** redis-benchmark's TLS arguments, with file names for paths. */
  benchTlsArgs: string[];
  /** The TLS part of the tunnel's config, with file names for paths. */
  tunnelTls: Record<string, string>;
  /** Why there is no HAProxy → TLS row, when there is none. */
  haproxyNote: string | undefined;
  /** The HAProxy config lines that differ from the plaintext one, with file names for paths. */
  haproxyTlsLines: string[];
  /** The 1-minute load average when the section started and when it ended. */
  loadAverage: [string, string];
}

/** The idle-connection measurement. */
interface IdleSection {
  count: number;
  /** Why the count is what it is. */
  countNote: string;
  /** `maxclients` of the master, as read back after raising it. */
  maxclients: string;
  reports: IdleReport[];
}

/** Everything one run measured. */
interface BenchResults {
  startedAt: Date;
  durationMs: number;
  options: BenchOptions;
  machine: Machine;
  targets: TargetName[];
  /** Why there is no HAProxy column, when there is none. */
  haproxyNote: string | undefined;
  haproxyConfig: string | undefined;
  workloads: WorkloadRuns[];
  idle: IdleSection | undefined;
  failovers: FailoverSample[] | undefined;
  failoverTargets: TargetName[];
  tls: TlsSection | undefined;
  /** The section over a 1 ms round trip (bench/_rtt.ts). */
  rtt: RttSection | undefined;
}

/**
 * Parses the command line.
 *
 * @throws {TypeError} on an unknown flag
 * @throws {RangeError} on a bad `--rounds` or `--only` value
 */
function parseOptions(args: string[]): BenchOptions | "help" {
  const { values } = parseArgs({
    args,
    options: {
      rounds: { type: "string" },
      smoke: { type: "boolean", default: false },
      write: { type: "boolean", default: false },
      only: { type: "string" },
      "no-haproxy": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return "help";
  const rounds = values.rounds === undefined ? (values.smoke ? 1 : 5) : Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50) {
    throw new RangeError(
      `Invalid --rounds "${values.rounds}": must be a whole number from 1 to 50`,
    );
  }
  const only = values.only === undefined ? new Set(ALL_NAMES) : new Set(
    values.only.split(",").map((name) => name.trim()).filter(Boolean).flatMap((name) =>
      name === TLS_GROUP ? TLS_NAMES : name === RTT_GROUP ? RTT_NAMES : [name]
    ),
  );
  const unknown = [...only].filter((name) => !ALL_NAMES.includes(name));
  if (unknown.length > 0 || only.size === 0) {
    throw new RangeError(
      `Invalid --only "${values.only}": choose from ${
        ALL_NAMES.join(", ")
      }, or ${TLS_GROUP}, or ${RTT_GROUP}`,
    );
  }
  return {
    rounds,
    smoke: values.smoke,
    write: values.write,
    only,
    haproxy: !values["no-haproxy"],
  };
}

const started = performance.now();

/** A progress line on stderr, so that stdout carries only the tables. */
function progress(message: string): void {
  const seconds = ((performance.now() - started) / 1000).toFixed(1).padStart(6);
  console.error(`[${seconds}s] ${message}`);
}

/** Starts the deployment, the tunnel and HAProxy, runs every selected measurement, and stops them. */
async function runBench(options: BenchOptions, signal: AbortSignal): Promise<BenchResults> {
  const startedAt = new Date();
  // Before anything runs: the round-trip section needs root, ip and gcc.
  const rttMissing = RTT_NAMES.some((name) => options.only.has(name))
    ? await delayBedUnavailable()
    : undefined;
  if (rttMissing) {
    throw new Error(
      `Cannot run the round-trip section ("${RTT_GROUP}"): ${rttMissing}; or leave it out with --only`,
    );
  }
  const haproxy = options.haproxy
    ? await ensureHaproxy(signal)
    : { available: false as const, reason: "left out with --no-haproxy" };
  const machine = await describeMachine(haproxy.available ? haproxy.version : "not used");
  const idleCount = await idleConnectionCount(options.smoke);

  progress("starting Redis: 1 master, 2 replicas, 3 Sentinels");
  await using deployment = await startDeployment({
    masterName: MASTER_NAME,
    replicas: 2,
    sentinels: 3,
    signal,
  });
  const master = deployment.nodes[0]!;

  const tunnelPort = freePort();
  progress(`starting the tunnel (${TUNNEL_UNDER_TEST}) on port ${tunnelPort}`);
  await using tunnel = await startTunnel({
    sentinels: deployment.sentinels.map((sentinel) => sentinel.address),
    databases: [{ name: MASTER_NAME, port: tunnelPort }],
  }, { ports: [tunnelPort] });
  await waitRoutesTo(tunnelPort, master.port, { consecutive: 1, signal });
  // The Deno floor, for throughput: a minimal Deno proxy straight to the master, 64 KiB buffers.
  const floorPort = freePort();
  progress(`starting the Deno floor (${FLOOR_SCRIPT}) on port ${floorPort}`);
  await using floor = await startFloor({ port: floorPort, upstream: master.address });

  const servers = deployment.nodes.map((node) => node.address);
  const haproxyPort = freePort();
  const haproxyOptions = { port: haproxyPort, maxconn: idleCount.count + 10 };
  if (haproxy.available) progress(`starting HAProxy ${haproxy.version} on port ${haproxyPort}`);
  else progress(`no HAProxy column: ${haproxy.reason}`);
  await using haproxyProcess = haproxy.available
    ? await startHaproxy(servers, haproxyOptions)
    : undefined;
  // Until its checks have failed three times, HAProxy sends clients to the replicas too.
  if (haproxyProcess) {
    await waitRoutesTo(haproxyPort, master.port, { consecutive: 4, signal });
  }

  const targets: Target[] = [
    { name: "direct", port: master.port, pid: master.pid },
    { name: "tunnel", port: tunnelPort, pid: tunnel.pid },
    { name: "floor", port: floorPort, pid: floor.pid },
    ...(haproxyProcess
      ? [{ name: "haproxy" as const, port: haproxyPort, pid: haproxyProcess.pid }]
      : []),
  ];
  // The floor follows no failover: the idle measurement starts its own, and failovers leave it out.
  const proxies = targets.filter((target) => target.name !== "direct" && target.name !== "floor");

  const workloads = await runWorkloads(
    WORKLOADS.filter((workload) => options.only.has(workload.name)),
    targets,
    options,
    signal,
  );
  // Before the failovers, which move the master away from the "direct" port.
  const tls = TLS_NAMES.some((name) => options.only.has(name))
    ? await runTlsSection(
      targets.filter((target) => target.name !== "floor"),
      haproxy,
      options,
      signal,
    )
    : undefined;
  const rtt = RTT_NAMES.some((name) => options.only.has(name))
    ? await runRttSection({
      ...options,
      fullRun: options.only.size === ALL_NAMES.length,
      haproxy,
      signal,
      progress,
    })
    : undefined;
  const idle = options.only.has("idle")
    ? await measureIdleOnFreshTunnel(deployment, proxies, idleCount, signal)
    : undefined;
  const failovers = options.only.has("failover")
    ? await runFailovers(deployment, proxies, options.smoke ? 1 : FAILOVERS, signal)
    : undefined;
  progress("stopping every process");
  return {
    startedAt,
    durationMs: 0,
    options,
    machine,
    targets: targets.map((target) => target.name),
    haproxyNote: haproxy.available ? undefined : haproxy.reason,
    haproxyConfig: haproxy.available ? haproxyConfig(servers, haproxyOptions) : undefined,
    workloads,
    idle,
    failovers,
    failoverTargets: proxies.map((target) => target.name),
    tls,
    rtt,
  };
}

/**
 * The TLS section: starts a TLS-only deployment (certificates from
 * tests/_certs.ts), a tunnel configured with `tls` towards it and, when
 * HAProxy is there, an HAProxy that reaches its nodes over TLS; runs the TLS
 * workloads in interleaved rounds against those and `plainTargets`, timing
 * sequential new connections at the end of each round; stops what it started.
 */
async function runTlsSection(
  plainTargets: readonly Target[],
  haproxy: HaproxyAvailability,
  options: BenchOptions,
  signal: AbortSignal,
): Promise<TlsSection> {
  const startedAt = new Date();
  const loadBefore = await loadAverage();
  const dir = await Deno.makeTempDir({ prefix: "st-bench-tls-" });
  // Declared first, so disposed last: after every process that reads the files.
  await using _files = {
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
  };
  progress("TLS: making certificates");
  const certs = await makeCertificates(dir);
  const client = certs.client;
  const crtFile = `${dir}/client.pem`;
  const [ca, cert, key] = await Promise.all(
    [certs.caFile, client.certFile, client.keyFile].map((path) => Deno.readTextFile(path)),
  );
  await Deno.writeTextFile(crtFile, cert! + key!);
  const named = (text: string) => text.replaceAll(`${dir}/`, "");

  const shape = options.smoke ? TLS_SMOKE_SHAPE : TLS_SHAPE;
  progress(`TLS: starting a TLS-only Redis: ${describeShape(shape)}`);
  await using deployment = await startDeployment({
    masterName: MASTER_NAME,
    ...shape,
    tls: deploymentTls(certs),
    signal,
  });
  const master = deployment.nodes[0]!;

  const tunnelPort = freePort();
  const tunnelTls = { caFile: certs.caFile, certFile: client.certFile, keyFile: client.keyFile };
  progress(`TLS: starting a tunnel to it on port ${tunnelPort}`);
  await using tunnel = await startTunnel({
    sentinels: deployment.sentinels.map((sentinel) => sentinel.address),
    tls: tunnelTls,
    databases: [{ name: MASTER_NAME, port: tunnelPort }],
  }, { ports: [tunnelPort] });
  await waitRoutesTo(tunnelPort, master.port, { consecutive: 1, parameter: "tls-port", signal });

  const servers = deployment.nodes.map((node) => node.address);
  const haproxyPort = freePort();
  const serverTls: HaproxyServerTls = {
    caFile: certs.caFile,
    crtFile,
    verifyHost: "localhost",
  };
  const haproxyOptions = { port: haproxyPort, maxconn: 1000, tls: serverTls };
  if (haproxy.available) progress(`TLS: starting HAProxy to it on port ${haproxyPort}`);
  await using haproxyProcess = haproxy.available
    ? await startHaproxy(servers, haproxyOptions)
    : undefined;
  if (haproxyProcess) {
    await waitRoutesTo(haproxyPort, master.port, { consecutive: 4, parameter: "tls-port", signal });
  }

  const benchTlsArgs = [
    ...["--tls", "--cacert", certs.caFile],
    ...["--cert", client.certFile, "--key", client.keyFile],
  ];
  const plain = (name: TargetName) => plainTargets.find((target) => target.name === name);
  const targets = [
    plain("direct"),
    {
      name: "direct_tls" as const,
      port: master.port,
      pid: master.pid,
      benchArgs: benchTlsArgs,
      dialer: { kind: "tls" as const, ca: ca!, cert: cert!, key: key! },
    },
    plain("tunnel"),
    { name: "tunnel_tls" as const, port: tunnelPort, pid: tunnel.pid },
    plain("haproxy"),
    ...(haproxyProcess
      ? [{ name: "haproxy_tls" as const, port: haproxyPort, pid: haproxyProcess.pid }]
      : []),
  ].filter((target) => target !== undefined);

  const connectCount = options.smoke ? TLS_CONNECTS_SMOKE : TLS_CONNECTS;
  const connects: ConnectRun[] | undefined = options.only.has(TLS_CONNECT) ? [] : undefined;
  const timeRound = async (round: number, order: readonly Target[]) => {
    for (const target of order) {
      const times = await timeConnects(target.port, connectCount, target.dialer ?? PLAIN, {
        signal,
      });
      connects!.push({ round, target: target.name, times });
      const sorted = times.toSorted((a, b) => a - b);
      progress(
        `TLS round ${round}/${options.rounds} ${TLS_CONNECT} ${target.name}: median ${
          sorted[Math.floor(sorted.length / 2)]!.toFixed(3)
        } ms`,
      );
    }
  };
  if (connects) {
    for (const target of targets) {
      await timeConnects(target.port, 10, target.dialer ?? PLAIN, { signal });
    }
  }
  const workloads = await runWorkloads(
    TLS_WORKLOADS.filter((workload) => options.only.has(workload.name)),
    targets,
    options,
    signal,
    { label: "TLS ", afterRound: connects ? timeRound : undefined },
  );
  const serverLine = haproxyConfig(servers, haproxyOptions).split("\n")
    .find((line) => line.trim().startsWith("server node1 "));
  return {
    startedAt,
    shape: describeShape(shape),
    targets: targets.map((target) => target.name),
    workloads,
    connects,
    connectCount,
    negotiated: await negotiated(master.port, { caFile: certs.caFile, ...client }),
    benchTlsArgs: benchTlsArgs.map(named),
    tunnelTls: Object.fromEntries(
      Object.entries(tunnelTls).map(([name, path]) => [name, named(path)]),
    ),
    haproxyNote: haproxy.available ? undefined : haproxy.reason,
    haproxyTlsLines: serverLine
      ? [
        "tcp-check connect ssl",
        named(serverLine.trim()).replace(/ 127\.0\.0\.1:\d+ /, " 127.0.0.1:PORT "),
      ]
      : [],
    loadAverage: [loadBefore, await loadAverage()],
  };
}

const PLAIN: Dialer = { kind: "plain" };

/** "1 master, 2 replicas, 3 Sentinels". */
function describeShape(shape: { replicas: number; sentinels: number }): string {
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;
  return `1 master, ${count(shape.replicas, "replica")}, ${count(shape.sentinels, "Sentinel")}`;
}

/** The redis-benchmark arguments of a workload in this run. */
function workloadArgs(workload: Workload, smoke: boolean): string[] {
  return [...workload.args, "-n", String(smoke ? workload.smokeRequests : workload.requests)];
}

/** Options of {@linkcode runWorkloads}. */
interface RoundOptions {
  /** What progress lines start with. */
  label?: string;
  /** Runs at the end of each round, with that round's order of targets. */
  afterRound?: ((round: number, order: readonly Target[]) => Promise<void>) | undefined;
}

/**
 * Runs the workloads in interleaved rounds: round, then workload, then every
 * target, starting from a different target each round.
 */
async function runWorkloads(
  workloads: readonly Workload[],
  targets: readonly Target[],
  options: BenchOptions,
  signal: AbortSignal,
  { label = "", afterRound }: RoundOptions = {},
): Promise<WorkloadRuns[]> {
  if (workloads.length === 0 && afterRound === undefined) return [];
  if (workloads.length > 0) await warmUp(targets, options.smoke, signal);
  const results: WorkloadRuns[] = workloads.map((workload) => ({
    name: workload.name,
    title: workload.title,
    args: workloadArgs(workload, options.smoke),
    runs: [],
  }));
  for (let round = 1; round <= options.rounds; round++) {
    const order = targets.map((_, i) => targets[(i + round - 1) % targets.length]!);
    for (const [i, workload] of workloads.entries()) {
      const result = results[i]!;
      for (const target of order) {
        const rows = await runRedisBenchmark(
          target.port,
          [...target.benchArgs ?? [], ...result.args],
          { signal },
        );
        result.runs.push({ round, target: target.name, rows });
        progress(
          `${label}round ${round}/${options.rounds} ${workload.name} ${target.name}: ${
            rows.map((row) => `${row.test} ${Math.round(row.rps).toLocaleString("en-US")} rps`)
              .join(", ")
          }`,
        );
      }
    }
    await afterRound?.(round, order);
  }
  return results;
}

/** One short run per target first, so that no measured round pays for JIT compilation or first connections. */
async function warmUp(
  targets: readonly Target[],
  smoke: boolean,
  signal: AbortSignal,
): Promise<void> {
  const args = ["-t", "set,get", "-c", "50", "-n", smoke ? "1000" : "20000"];
  for (const target of targets) {
    await runRedisBenchmark(target.port, [...target.benchArgs ?? [], ...args], { signal });
  }
  progress("warmed up every target");
}

/**
 * How many idle connections to open: 10,000, or fewer when the open-files
 * hard limit cannot give a proxy two descriptors per connection.
 */
async function idleConnectionCount(smoke: boolean): Promise<{ count: number; note: string }> {
  if (smoke) return { count: IDLE_SMOKE, note: `A smoke run opens only ${IDLE_SMOKE}.` };
  const limits = await Deno.readTextFile("/proc/self/limits");
  const hard = /^Max open files\s+\S+\s+(\S+)/m.exec(limits)?.[1];
  const limit = hard === undefined || hard === "unlimited" ? Infinity : Number(hard);
  const fit = Math.floor((limit - FD_RESERVE) / 2);
  if (fit >= IDLE_MAX) return { count: IDLE_MAX, note: "" };
  const capped = fit.toLocaleString("en-US");
  return {
    count: fit,
    note: `The count is capped at ${capped} instead of ${IDLE_MAX.toLocaleString("en-US")}: ` +
      "a proxy holds two file descriptors per connection (client side and master side), and " +
      `the open-files hard limit here is ${limit}, which cannot be raised: ` +
      `${fit} = floor((${limit} − ${FD_RESERVE}) / 2).`,
  };
}

/**
 * Measures idle connections through a tunnel process started for it: one that
 * ran the throughput rounds reuses the heap it grew then, which would flatter
 * the figure. The Deno floor is measured alike, on a process started for it
 * with the tunnel's small buffers, to the current master.
 */
async function measureIdleOnFreshTunnel(
  deployment: Deployment,
  proxies: readonly Target[],
  idleCount: { count: number; note: string },
  signal: AbortSignal,
): Promise<IdleSection> {
  const port = freePort();
  await using fresh = await startTunnel({
    sentinels: deployment.sentinels.map((sentinel) => sentinel.address),
    databases: [{ name: MASTER_NAME, port }],
  }, { ports: [port] });
  const address = await deployment.sentinelMaster();
  const master = deployment.nodes.find((node) => node.address === address);
  if (!master) throw new Error(`Sentinel names ${address}, which is not a node of this deployment`);
  await waitRoutesTo(port, master.port, { consecutive: 1, signal });
  const floorPort = freePort();
  await using floor = await startFloor({
    port: floorPort,
    upstream: master.address,
    bufferBytes: IDLE_FLOOR_BUFFER_BYTES,
  });
  return await runIdle(
    deployment,
    proxies.flatMap((proxy): Target[] =>
      proxy.name === "tunnel"
        ? [{ name: "tunnel", port, pid: fresh.pid }, {
          name: "floor",
          port: floorPort,
          pid: floor.pid,
        }]
        : [proxy]
    ),
    idleCount,
    signal,
  );
}

/** Raises `maxclients` on every data node, then measures idle connections through each proxy in turn. */
async function runIdle(
  deployment: Deployment,
  proxies: readonly Target[],
  idleCount: { count: number; note: string },
  signal: AbortSignal,
): Promise<IdleSection> {
  for (const node of deployment.nodes) {
    await deployment.cli(node, "CONFIG", "SET", "maxclients", String(REDIS_MAXCLIENTS));
  }
  const address = await deployment.sentinelMaster();
  const master = deployment.nodes.find((node) => node.address === address);
  const maxclients = master
    ? (await deployment.cli(master, "CONFIG", "GET", "maxclients")).split("\n")[1] ?? "unknown"
    : "unknown";
  const reports: IdleReport[] = [];
  for (const proxy of proxies) {
    progress(`opening ${idleCount.count} idle connections through ${proxy.name}`);
    const result = await measureIdleConnections(proxy.port, proxy.pid, idleCount.count, {
      signal,
    });
    reports.push({ target: proxy.name, result });
    const perConnection = result.opened > 0
      ? ((result.rssAfterKb - result.rssBeforeKb) / result.opened).toFixed(1)
      : "-";
    progress(
      `${proxy.name}: ${result.opened} open, ${result.answered} answered, ${perConnection} KiB each${
        result.errors.size > 0 ? `; errors: ${[...result.errors].join("; ")}` : ""
      }`,
    );
    // Let Redis and the proxy finish closing before the next proxy opens as many again.
    await sleep(2000, signal);
  }
  return { count: idleCount.count, countNote: idleCount.note, maxclients, reports };
}

/**
 * Forces `count` failovers with writers through every proxy, waiting between
 * them until the deployment has converged and each proxy leads to the new
 * master.
 */
async function runFailovers(
  deployment: Deployment,
  proxies: readonly Target[],
  count: number,
  signal: AbortSignal,
): Promise<FailoverSample[]> {
  const targets = proxies.map((proxy) => ({
    name: proxy.name,
    port: proxy.port,
    maxWaitMs: proxy.name === "haproxy" ? HAPROXY_FAILOVER_WAIT_MS : TUNNEL_FAILOVER_WAIT_MS,
  }));
  const samples: FailoverSample[] = [];
  for (let i = 1; i <= count; i++) {
    const address = await deployment.sentinelMaster();
    const master = Number(address.slice(address.lastIndexOf(":") + 1));
    await waitConverged(deployment, master, 60_000, signal);
    await deployment.waitReady();
    for (const proxy of proxies) {
      await waitRoutesTo(proxy.port, master, { consecutive: 4, signal });
    }
    progress(`failover ${i}/${count}: from ${address}`);
    const sample = await measureFailover(deployment, targets, { signal });
    samples.push(sample);
    progress(
      `failover ${i}/${count}: to port ${sample.to}; ${
        proxies.map((proxy) => {
          const ms = sample.recoveryMs.get(proxy.name);
          return `${proxy.name} ${ms === undefined ? "none" : `${ms.toFixed(1)} ms`} (${
            sample.staleAcks.get(proxy.name)
          } acks by the old master after the switch)`;
        }).join(", ")
      }`,
    );
  }
  return samples;
}

/** The measured sections, as printed and as written to the results file. */
function resultSections(results: BenchResults): string[] {
  const sections: string[] = [];
  const others = results.targets.filter((target) => target !== "direct");
  if (results.workloads.length > 0) {
    const rounds = results.options.rounds;
    sections.push(
      [
        "## Throughput and latency",
        "",
        `Median of ${rounds} interleaved round${rounds === 1 ? "" : "s"}. ` +
        `${others.map((t) => `"${TARGET_LABELS[t]} / direct"`).join(" and ")} ${
          others.length === 1 ? "is" : "are each"
        } the median ` +
        "over rounds of that target's requests per second divided by direct Redis's in the same " +
        'round (1.00× = as fast as direct). "/ floor" is the same against the Deno floor ' +
        "(a minimal Deno proxy, bench/floor_proxy.ts, in the same rounds): 1.00× = as fast as " +
        "Deno itself allows. Latencies are redis-benchmark's, medians over rounds." +
        (results.haproxyNote ? ` No HAProxy column: ${results.haproxyNote}.` : ""),
        "",
        throughputTable(summarize(results.workloads), results.targets),
      ].join("\n"),
    );
  }
  if (results.tls) sections.push(tlsSection(results.tls, results.options));
  if (results.rtt) sections.push(rttSectionMarkdown(results.rtt));
  if (results.idle) {
    const { idle } = results;
    sections.push(
      [
        "## Idle connections",
        "",
        `${idle.count.toLocaleString("en-US")} connections per proxy, opened from the ` +
        "benchmark process, each sending one PING so that the proxy has dialled the master, then " +
        "left idle for 2 s before the proxy's VmRSS is read; then every connection sends PING " +
        "again. The tunnel measured is a process started just for this, so that heap grown " +
        "during the throughput rounds does not flatter the figure; so is the Deno floor, with " +
        `${IDLE_FLOOR_BUFFER_BYTES}-byte buffers (the tunnel's small ones), so that "over the ` +
        'Deno floor" is what the tunnel holds beyond two Deno sockets with a pending read ' +
        "each and their buffers. Redis `maxclients` was raised to " +
        `${REDIS_MAXCLIENTS.toLocaleString("en-US")} and reads back as ${idle.maxclients}.` +
        (idle.countNote ? ` ${idle.countNote}` : ""),
        "",
        idleTable(idle.reports),
      ].join("\n"),
    );
  }
  if (results.failovers) {
    const count = results.failovers.length;
    sections.push(
      [
        "## Failover",
        "",
        `${count} forced failover${count === 1 ? "" : "s"} (\`SENTINEL FAILOVER\`), each with 4 ` +
        "writers per proxy (unique keys, 1 ms pause between writes, reconnecting after any error). " +
        "The time is from `+switch-master` as a `redis-cli` subscriber to the Sentinels reads " +
        "it, to the first write acknowledged through that proxy by the new master; negative " +
        "means the proxy got there before the subscriber read the message. The last column " +
        "counts writes the old master acknowledged after the switch, per failover: writes a " +
        "client believes done on a node that is about to become a replica.",
        "",
        failoverTable(results.failovers, results.failoverTargets),
      ].join("\n"),
    );
  }
  return sections;
}

/** The TLS section, as printed and as written to the results file. */
function tlsSection(tls: TlsSection, options: BenchOptions): string {
  const rounds = options.rounds;
  const selected = TLS_NAMES.filter((name) => options.only.has(name));
  const alone = `make bench BENCH_ARGS="--only ${
    selected.length === TLS_NAMES.length ? TLS_GROUP : selected.join(",")
  } --rounds ${rounds}"`;
  const command = options.smoke
    ? "`make bench-smoke`"
    : options.only.size === ALL_NAMES.length
    ? `\`make bench${
      rounds === 5 ? "" : ` BENCH_ARGS="--rounds ${rounds}"`
    }\` (this section alone: \`${alone}\`)`
    : `\`${alone}\``;
  const when = tls.startedAt.toISOString().slice(0, 16).replace("T", " ");
  const haproxy = tls.targets.includes("haproxy_tls")
    ? [
      "- HAProxy: the plaintext HAProxy process of the loopback rows, measured again in these " +
      "rounds. HAProxy → TLS master: a second HAProxy, configured alike, with the servers reached over " +
      "TLS: `" + tls.haproxyTlsLines.join("` and `") + "` (and likewise node2, node3). HAProxy " +
      "keeps the last TLS session of each server and resumes it on the next connection (its " +
      "default; `no-ssl-reuse` turns that off), so its new connections do an abbreviated " +
      "handshake; the tunnel's `node:tls` dials do a full handshake every time.",
    ]
    : [`- No HAProxy rows: ${tls.haproxyNote ?? "left out"}.`];
  const commands = tls.workloads.map((workload) =>
    `  - \`${
      benchmarkCommand(0, [...tls.benchTlsArgs, ...workload.args]).join(" ").replace(
        " -p 0 ",
        " -p PORT ",
      )
    }\``
  );
  const parts = [
    "## TLS",
    "",
    "What TLS towards the master costs through the tunnel. A second deployment, TLS-only " +
    `(${tls.shape}; \`port 0\`, \`tls-port\`, \`tls-replication yes\`, ` +
    "`tls-auth-clients yes`), runs beside the plaintext one, with the EC P-256 certificates " +
    `of tests/_certs.ts; its master negotiates ${tls.negotiated} (as \`openssl s_client\` ` +
    `reports it). Measured on ${when} UTC with ${command}: ${rounds} interleaved ` +
    `round${rounds === 1 ? "" : "s"} as above (each workload against every target back to ` +
    "back, the order rotating), after one warm-up run per target. The 1-minute load average " +
    `was ${tls.loadAverage[0]} at the start and ${tls.loadAverage[1]} at the end, on ` +
    `${navigator.hardwareConcurrency} CPUs: the ratios within a round are what to read.`,
    "",
    "- Direct: redis-benchmark to the plaintext master, as above. Direct TLS: redis-benchmark " +
    `\`${tls.benchTlsArgs.join(" ")}\` to the TLS master.`,
    "- Tunnel: the plaintext tunnel process of the loopback rows, measured again in these " +
    "rounds. Tunnel → TLS master: redis-benchmark in " +
    "plaintext to a second tunnel whose config has " +
    `\`"tls": ${JSON.stringify(tls.tunnelTls).replaceAll(",", ", ").replaceAll(":", ": ")}\`, ` +
    "so its Sentinel connections and its dials to the master are TLS, every certificate " +
    "verified (against 127.0.0.1, the address Sentinel reports). With TLS its default " +
    "`preconnect` of 4 applies: four ready connections to the master, so a new client below " +
    "may get one whose handshake is done (the 1 ms section measures what that is worth).",
    ...haproxy,
    "- Each ratio is the median over rounds of the target's requests per second divided by the " +
    'other\'s in the same round: "÷ direct" against plaintext Redis, "÷ same path, ' +
    'plaintext" against the same path without TLS (Direct TLS ÷ Direct, Tunnel → TLS ÷ ' +
    'Tunnel, HAProxy → TLS ÷ HAProxy: what TLS costs on that path), "÷ direct TLS" against ' +
    "a TLS client of the master itself. Latencies are redis-benchmark's, medians over rounds.",
    ...(commands.length > 0
      ? [
        "- redis-benchmark command lines (without `--tls ...` for the plaintext ports):",
        "",
        ...commands,
      ]
      : []),
  ];
  if (tls.workloads.length > 0) {
    parts.push(
      "",
      "### Throughput and latency, TLS",
      "",
      tlsThroughputTable(tls.workloads, tls.targets),
    );
  }
  const churn = tls.workloads.find((workload) => workload.name === "tls-churn");
  if (tls.connects || churn) {
    parts.push(
      "",
      "### New connections, TLS",
      "",
      (tls.connects
        ? `"New connection + PING": ${tls.connectCount} connections per target and round, ` +
          "opened one after the other from the benchmark process, each timed from the start " +
          "of its connect to the `+PONG` of its first PING; Direct TLS connects with " +
          "`node:tls`, the TLS client the tunnel dials with. p90 is over one round's " +
          'connections, median over rounds. "TLS adds" is the median over rounds of the ' +
          "difference to the same path in plaintext in the same round: the time a TLS " +
          "handshake adds to a new client's first reply. "
        : "") +
        (churn
          ? "The `-k 0` columns come from the 50-client `-k 0` rows: with the machine " +
            "saturated, 1000 / rps is the machine time (both cores, every process) one new " +
            'connection costs, and "TLS adds" its difference to the same path in plaintext ' +
            "per round, median over rounds."
          : ""),
      "",
      connectTable(tls.connects ?? [], tls.targets, churn),
    );
  }
  return parts.join("\n");
}

/** The whole results file. */
function resultsFile(results: BenchResults, whatWasTried: string | undefined): string {
  const minutes = (results.durationMs / 60_000).toFixed(1);
  const commands = results.workloads.map((workload) =>
    `${benchmarkCommand(0, workload.args).join(" ").replace(" -p 0 ", " -p PORT ")}`
  );
  const method = [
    "## Method",
    "",
    "- One master, two replicas and three Sentinels (`redis-server` processes on 127.0.0.1), " +
    "started by the benchmark. Direct means redis-benchmark connects to the master itself.",
    `- The tunnel runs \`${TUNNEL_UNDER_TEST}\` with \`--log-format json --log-level debug\`.`,
    `- The Deno floor runs \`${FLOOR_SCRIPT}\` with the same Deno (\`deno run --quiet ` +
    "--allow-net`), dialling the master directly: accept, connect, `TCP_NODELAY` on both " +
    "sockets, one 64 KiB buffer per direction and connection, a `read()`/`write()` loop each " +
    "way, both sockets closed when either direction ends; no Sentinel, caps, timers or logs.",
    "- Interleaved rounds: each round runs each workload against every target back to back, " +
    "the order of the targets rotating from round to round, after one warm-up run per target. " +
    "The machine is shared and noisy, so ratios within a round mean more than absolute numbers.",
    "- redis-benchmark command lines (`-t set,get` runs SET, then GET):",
    "",
    ...commands.map((command) => `  - \`${command}\``),
    ...(results.haproxyConfig
      ? ["", "- HAProxy config:", "", "```", results.haproxyConfig.trimEnd(), "```"]
      : []),
  ].join("\n");
  return [
    "# Benchmark results",
    "",
    `Measured on ${results.startedAt.toISOString().slice(0, 16).replace("T", " ")} UTC by ` +
    `\`make bench\` (bench/bench.ts) in ${minutes} minutes.`,
    "",
    "## Machine",
    "",
    machineSection(results.machine),
    "",
    method,
    "",
    ...resultSections(results).flatMap((section) => [section, ""]),
    WHAT_WAS_TRIED,
    "",
    whatWasTried ??
      "_To be filled in by hand: what was tried to make the data path faster, and what each " +
        "attempt did to the numbers above. `make bench` keeps this section when it rewrites " +
        "the file._",
    "",
  ].join("\n");
}

async function main(): Promise<number> {
  let options: BenchOptions | "help";
  try {
    options = parseOptions(Deno.args);
  } catch (error) {
    console.error(`bench: ${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return 2;
  }
  if (options === "help") {
    console.log(USAGE);
    return 0;
  }
  Deno.chdir(ROOT);
  const interrupt = new AbortController();
  const onSignal = () => interrupt.abort(new Error("Interrupted"));
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const results = await runBench(options, interrupt.signal);
    results.durationMs = performance.now() - started;
    console.log(resultSections(results).join("\n\n"));
    const full = !options.smoke && options.only.size === ALL_NAMES.length;
    const existing = full ? undefined : await readOptional(RESULTS_FILE);
    if (options.write && existing !== undefined) {
      await Deno.writeTextFile(RESULTS_FILE, mergeSections(existing, resultSections(results)));
      progress(`replaced the sections this run measured in ${RESULTS_FILE}`);
    } else if (full || options.write) {
      const whatWasTried = await readWhatWasTried(RESULTS_FILE);
      await Deno.writeTextFile(RESULTS_FILE, resultsFile(results, whatWasTried));
      progress(`wrote ${RESULTS_FILE}`);
    } else {
      progress(`did not write ${RESULTS_FILE} (a smoke or --only run; --write forces it)`);
    }
    progress(`done in ${(results.durationMs / 1000).toFixed(0)} s`);
    return 0;
  } catch (error) {
    if (interrupt.signal.aborted) {
      console.error("bench: interrupted; every process it started has been stopped");
      return 130;
    }
    console.error(`bench: ${error instanceof Error ? error.stack ?? error.message : error}`);
    return 1;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

/** The 1-minute load average (`/proc/loadavg`), or "unknown". */
async function loadAverage(): Promise<string> {
  return (await readOptional("/proc/loadavg"))?.split(" ")[0] ?? "unknown";
}

/** The text of a file, or `undefined` when it does not exist. */
async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

if (import.meta.main) {
  Deno.exit(await main());
}
