/**
 * The benchmark's round-trip section: the tunnel, the tunnel with
 * `preconnect`, HAProxy and direct Redis across a link with a real ~1 ms
 * round trip, where a dial to the master costs what it costs between two
 * hosts instead of the few microseconds of loopback.
 *
 * The link is bench/_delay_bed.ts: an application namespace and a Redis
 * namespace, joined through a router namespace whose forwarded packets
 * bench/delay_line.c holds for half the round trip each way. In the Redis
 * namespace: a plaintext deployment and a TLS-only one, each a master, two
 * replicas and three Sentinels. In the application namespace: redis-benchmark,
 * the tunnel (`dist/sentinel-tunnel.js` under `make bench`), a second tunnel
 * with `"preconnect": 64`, and HAProxy, each once per deployment.
 *
 * It measures first what the link gives and what the delay line costs (the
 * same measurements with the delay at 0 against a plain routed path without
 * the TUN device, in the same run), then runs the workloads in interleaved
 * rounds, and, after each round, times new connections through each target.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { median } from "../tests/_traffic.ts";
import { makeCertificates } from "../tests/_certs.ts";
import { TUNNEL_UNDER_TEST, tunnelCommand } from "../tests/_tunnel.ts";
import { type DelayBed, type DelayLineStats, startDelayBed, stopChild } from "./_delay_bed.ts";
import { type HaproxyAvailability, haproxyConfig, type HaproxyServerTls } from "./_haproxy.ts";
import { type BenchmarkRow, parseBenchmarkCsv } from "./_redis_benchmark.ts";
import { markdownTable } from "./_report.ts";
import type { ProbeRequest } from "./_rtt_probe.ts";
import { sleep } from "./_wait.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const MASTER_NAME = "mymaster";
/** The delay of one pass through the router: half the round trip. */
const DELAY_US = 500;
/** The preconnect pool of the second tunnel: at least the largest `-c` of the workloads. */
const PRECONNECT = 64;

/** What `--only rtt` stands for, and the section's heading. */
export const RTT_GROUP = "rtt";
export const RTT_HEADING = "## Over a 1 ms round trip";

/** Where redis-benchmark connects, in a row: the master itself, or a proxy in the app host. */
export type RttColumn = "direct" | "tunnel" | "preconnect" | "haproxy";
const COLUMNS: readonly RttColumn[] = ["direct", "tunnel", "preconnect", "haproxy"];

/** One workload of the section. */
interface RttWorkload {
  /** The name `--only` takes. */
  name: string;
  title: string;
  tls: boolean;
  /** redis-benchmark arguments, without `-n` and TLS arguments. */
  args: readonly string[];
  requests: number;
  smokeRequests: number;
}

const PLAIN_WORKLOADS: readonly Omit<RttWorkload, "tls">[] = [
  {
    name: "client1",
    title: "1 client",
    args: ["-t", "set,get", "-c", "1"],
    requests: 600,
    smokeRequests: 50,
  },
  {
    name: "clients50",
    title: "50 clients",
    args: ["-t", "set,get", "-c", "50"],
    requests: 15_000,
    smokeRequests: 500,
  },
  {
    // One client connecting per request: the round trips are the limit, not the CPU.
    name: "churn1",
    title: "1 client, -k 0",
    args: ["-t", "set,get", "-c", "1", "-k", "0"],
    requests: 400,
    smokeRequests: 20,
  },
  {
    name: "churn10",
    title: "10 clients, -k 0",
    args: ["-t", "set,get", "-c", "10", "-k", "0"],
    requests: 1500,
    smokeRequests: 50,
  },
  {
    name: "churn50",
    title: "50 clients, -k 0",
    args: ["-t", "set,get", "-c", "50", "-k", "0"],
    requests: 3000,
    smokeRequests: 100,
  },
];

/**
 * Requests of the TLS rows: a TLS handshake costs 1.5 ms or more of CPU here, so
 * a new connection per request runs at a few hundred requests per second.
 */
const TLS_REQUESTS: Readonly<Record<string, number>> = {
  client1: 600,
  clients50: 15_000,
  churn1: 150,
  churn10: 300,
  churn50: 400,
};
/** The same for a smoke run. */
const TLS_SMOKE_REQUESTS: Readonly<Record<string, number>> = {
  churn1: 10,
  churn10: 20,
  churn50: 50,
};

/** Every workload: the plaintext ones, then the same over TLS. */
export const RTT_WORKLOADS: readonly RttWorkload[] = [
  ...PLAIN_WORKLOADS.map((w) => ({ ...w, name: `rtt-${w.name}`, tls: false })),
  ...PLAIN_WORKLOADS.map((w) => ({
    ...w,
    name: `rtt-tls-${w.name}`,
    title: `${w.title}, TLS`,
    tls: true,
    requests: TLS_REQUESTS[w.name] ?? w.requests,
    smokeRequests: TLS_SMOKE_REQUESTS[w.name] ?? w.smokeRequests,
  })),
];
/** The timed new connections after each round. */
export const RTT_CONNECT = "rtt-connect";
/** Every name `--only` takes for this section; "rtt" stands for all of them. */
export const RTT_NAMES: readonly string[] = [...RTT_WORKLOADS.map((w) => w.name), RTT_CONNECT];

/** Ports inside the namespaces, which are fresh: nothing else listens there. */
const PLAIN_PORTS = { master: 7000, sentinel: 26379 };
const TLS_PORTS = { master: 7100, sentinel: 26479 };
const APP_PORTS = { tunnel: 6380, preconnect: 6381, haproxy: 6382 };
const APP_TLS_PORTS = { tunnel: 6390, preconnect: 6391, haproxy: 6392 };
/** The name in the test server certificate (tests/_certs.ts) that the proxies check. */
const SERVER_NAME = "redis.test";

/** The link measurements of a full run and of a smoke run. */
const LINK = {
  full: { alternations: 3, connects: 200, pings: 200, getRequests: 50_000 },
  smoke: { alternations: 1, connects: 20, pings: 20, getRequests: 2000 },
};
const CONNECTS_PER_ROUND = { full: 40, smoke: 5 };
const SHAPE = { full: { replicas: 2, sentinels: 3 }, smoke: { replicas: 0, sentinels: 1 } };
const WAIT_MS = 30_000;
const BENCH_TIMEOUT_MS = 180_000;

/** What the caller passes in. */
export interface RttOptions {
  rounds: number;
  smoke: boolean;
  only: ReadonlySet<string>;
  /** Whether the whole bench runs (no `--only`), for the command the section names. */
  fullRun: boolean;
  haproxy: HaproxyAvailability;
  signal: AbortSignal;
  progress: (message: string) => void;
}

/** One redis-benchmark run. */
export interface RttRun {
  round: number;
  workload: string;
  column: RttColumn;
  rows: BenchmarkRow[];
}

/** One path of the link measurement, over every alternation. */
export interface LinkPath {
  label: string;
  connectMs: number[];
  pingMs: number[];
  /** redis-benchmark -c 50 GET requests per second, one per alternation. */
  getRps: number[];
}

/** Everything the section measured. */
export interface RttSection {
  startedAt: Date;
  rounds: number;
  smoke: boolean;
  fullRun: boolean;
  selected: string[];
  shape: string;
  delayUs: number;
  /** Delay 0 through the TUN against the plain route, and the real delay. */
  link: { zero: LinkPath; plain: LinkPath; delayed: LinkPath; getArgs: string[] };
  /** The delay line's statistics: the delay-0 run, and the run of the rounds. */
  delayLine: { zero: DelayLineStats | undefined; main: DelayLineStats | undefined };
  workloads: { name: string; title: string; tls: boolean; args: string[] }[];
  runs: RttRun[];
  connects: { round: number; column: RttColumn; tls: boolean; times: number[] }[] | undefined;
  connectCount: number;
  columns: RttColumn[];
  haproxyNote: string | undefined;
  haproxyConfig: string | undefined;
  haproxyTlsLine: string | undefined;
  tunnelConfig: string;
  benchTlsArgs: string[];
  loadAverage: [string, string];
  durationMs: number;
}

/** A port redis-benchmark reaches in the app namespace. */
interface RttTarget {
  column: RttColumn;
  host: string;
  port: number;
  benchArgs: readonly string[];
  /** The probe's TLS settings, for direct TLS only. */
  probeTls?: ProbeRequest["tls"];
}

/** A process started in a namespace, stopped on dispose. */
interface NsProcess extends AsyncDisposable {
  readonly pid: number;
  /** The last KiB of its stderr, for error messages. */
  output(): Promise<string>;
  readonly exited: () => boolean;
}

/**
 * Builds the bed, starts both deployments and every proxy, measures the link,
 * runs the rounds, and stops everything (also on failure).
 *
 * @throws {Error} when the bed cannot be built (not root, no `ip`, no gcc), or a step fails
 */
export async function runRttSection(options: RttOptions): Promise<RttSection> {
  const started = performance.now();
  const startedAt = new Date();
  const { signal, progress, smoke } = options;
  const loadBefore = await loadAverage();
  const size = smoke ? "smoke" : "full";
  const shape = SHAPE[size];

  progress(`rtt: building the delay bed (namespaces stbench-${Deno.pid}-*)`);
  await using bed = await startDelayBed({ delayUs: 0, signal });
  const dir = await Deno.makeTempDir({ prefix: "stbench-rtt-" });
  await using _dir = {
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
  };
  const certs = await makeCertificates(dir);
  const tlsFiles = {
    caFile: certs.caFile,
    certFile: certs.server.certFile,
    keyFile: certs.server.keyFile,
  };
  const crtFile = `${dir}/client.pem`;
  await Deno.writeTextFile(
    crtFile,
    (await Deno.readTextFile(certs.client.certFile)) +
      (await Deno.readTextFile(certs.client.keyFile)),
  );
  const cliTls = [
    ...["--tls", "--cacert", certs.caFile],
    ...["--cert", certs.client.certFile, "--key", certs.client.keyFile],
  ];

  progress(`rtt: starting Redis in ${bed.namespaces.redis}: ${describeShape(shape)}, twice`);
  await using _plain = await startNsDeployment(bed, dir, {
    ports: PLAIN_PORTS,
    ...shape,
    signal,
  });
  await using _tls = await startNsDeployment(bed, dir, {
    ports: TLS_PORTS,
    ...shape,
    tls: { files: tlsFiles, cli: cliTls },
    signal,
  });

  // What the delay line costs: at 0, against the plain route, alternating.
  const linkSize = LINK[size];
  const getArgs = ["-t", "get", "-c", "50", "-n", String(linkSize.getRequests)];
  const zero: LinkPath = {
    label: "Through the TUN, delay 0",
    connectMs: [],
    pingMs: [],
    getRps: [],
  };
  const plainPath: LinkPath = {
    label: "Plain route, no TUN",
    connectMs: [],
    pingMs: [],
    getRps: [],
  };
  const measurePath = async (path: LinkPath, host: string) => {
    path.connectMs.push(
      ...await probe(bed, {
        mode: "connect",
        hostname: host,
        port: PLAIN_PORTS.master,
        count: linkSize.connects,
      }, signal),
    );
    path.pingMs.push(
      ...await probe(bed, {
        mode: "ping",
        hostname: host,
        port: PLAIN_PORTS.master,
        count: linkSize.pings,
      }, signal),
    );
    const rows = await benchmarkIn(bed, host, PLAIN_PORTS.master, getArgs, signal);
    path.getRps.push(rows[0]?.rps ?? NaN);
  };
  for (let i = 0; i < linkSize.alternations; i++) {
    const order: [LinkPath, string][] = [[zero, bed.redisAddress], [
      plainPath,
      bed.redisPlainAddress,
    ]];
    if (i % 2 === 1) order.reverse();
    for (const [path, host] of order) await measurePath(path, host);
  }
  progress(
    `rtt: link cost: connect median ${fmt(median(zero.connectMs))} ms through the TUN at delay 0, ${
      fmt(median(plainPath.connectMs))
    } ms plain; GET -c 50 ${Math.round(median(zero.getRps))} vs ${
      Math.round(median(plainPath.getRps))
    } rps`,
  );
  const zeroStats = await bed.setDelay(DELAY_US);
  const delayed: LinkPath = {
    label: `Through the TUN, delay ${DELAY_US} µs each way`,
    connectMs: [],
    pingMs: [],
    getRps: [],
  };
  for (let i = 0; i < linkSize.alternations; i++) await measurePath(delayed, bed.redisAddress);
  progress(
    `rtt: link with the delay: connect median ${fmt(median(delayed.connectMs))} ms, PING median ${
      fmt(median(delayed.pingMs))
    } ms, GET -c 50 ${Math.round(median(delayed.getRps))} rps`,
  );

  // The proxies, in the app namespace.
  const sentinelsOf = (ports: { sentinel: number }) =>
    Array.from({ length: shape.sentinels }, (_, i) => `${bed.redisAddress}:${ports.sentinel + i}`);
  const tunnelTls = {
    caFile: certs.caFile,
    certFile: certs.client.certFile,
    keyFile: certs.client.keyFile,
    serverName: SERVER_NAME,
  };
  const tunnelConfig = (port: number, preconnect: number, withTls: boolean) => ({
    sentinels: sentinelsOf(withTls ? TLS_PORTS : PLAIN_PORTS),
    ...(withTls ? { tls: tunnelTls } : {}),
    databases: [{ name: MASTER_NAME, port, preconnect }],
  });
  progress(`rtt: starting the tunnels (${TUNNEL_UNDER_TEST}) in ${bed.namespaces.app}`);
  await using _tunnel = await startNsTunnel(bed, dir, tunnelConfig(APP_PORTS.tunnel, 0, false));
  await using _preconnect = await startNsTunnel(
    bed,
    dir,
    tunnelConfig(APP_PORTS.preconnect, PRECONNECT, false),
  );
  await using _tunnelTls = await startNsTunnel(
    bed,
    dir,
    tunnelConfig(APP_TLS_PORTS.tunnel, 0, true),
  );
  await using _preconnectTls = await startNsTunnel(
    bed,
    dir,
    tunnelConfig(APP_TLS_PORTS.preconnect, PRECONNECT, true),
  );
  const { haproxy } = options;
  const servers = (ports: { master: number }) =>
    Array.from({ length: 1 + shape.replicas }, (_, i) => `${bed.redisAddress}:${ports.master + i}`);
  const serverTls: HaproxyServerTls = { caFile: certs.caFile, crtFile, verifyHost: SERVER_NAME };
  const plainHaproxyConfig = haproxyConfig(servers(PLAIN_PORTS), {
    port: APP_PORTS.haproxy,
    maxconn: 1000,
  });
  const tlsHaproxyConfig = haproxyConfig(servers(TLS_PORTS), {
    port: APP_TLS_PORTS.haproxy,
    maxconn: 1000,
    tls: serverTls,
  });
  if (haproxy.available) progress(`rtt: starting HAProxy ${haproxy.version} twice`);
  else progress(`rtt: no HAProxy column: ${haproxy.reason}`);
  await using _haproxy = haproxy.available
    ? await startNsHaproxy(bed, `${dir}/haproxy.cfg`, plainHaproxyConfig)
    : undefined;
  await using _haproxyTls = haproxy.available
    ? await startNsHaproxy(bed, `${dir}/haproxy-tls.cfg`, tlsHaproxyConfig)
    : undefined;

  const columns: RttColumn[] = COLUMNS.filter((c) => c !== "haproxy" || haproxy.available);
  const local = "127.0.0.1";
  const plainTargets: RttTarget[] = [
    { column: "direct", host: bed.redisAddress, port: PLAIN_PORTS.master, benchArgs: [] },
    { column: "tunnel", host: local, port: APP_PORTS.tunnel, benchArgs: [] },
    { column: "preconnect", host: local, port: APP_PORTS.preconnect, benchArgs: [] },
    { column: "haproxy", host: local, port: APP_PORTS.haproxy, benchArgs: [] },
  ].filter((t) => columns.includes(t.column as RttColumn)) as RttTarget[];
  const tlsTargets: RttTarget[] = [
    {
      column: "direct",
      host: bed.redisAddress,
      port: TLS_PORTS.master,
      benchArgs: cliTls,
      probeTls: {
        caFile: certs.caFile,
        certFile: certs.client.certFile,
        keyFile: certs.client.keyFile,
        servername: SERVER_NAME,
      },
    },
    { column: "tunnel", host: local, port: APP_TLS_PORTS.tunnel, benchArgs: [] },
    { column: "preconnect", host: local, port: APP_TLS_PORTS.preconnect, benchArgs: [] },
    { column: "haproxy", host: local, port: APP_TLS_PORTS.haproxy, benchArgs: [] },
  ].filter((t) => columns.includes(t.column as RttColumn)) as RttTarget[];
  for (const target of plainTargets) {
    await waitRoutesIn(bed, target, PLAIN_PORTS.master, "port", signal);
  }
  for (const target of tlsTargets) {
    await waitRoutesIn(bed, target, TLS_PORTS.master, "tls-port", signal);
  }

  const workloads = RTT_WORKLOADS.filter((w) => options.only.has(w.name));
  const argsOf = (w: RttWorkload) => [
    ...w.args,
    "-n",
    String(smoke ? w.smokeRequests : w.requests),
  ];
  if (workloads.length > 0 && !smoke) {
    const warm = ["-t", "set,get", "-c", "50", "-n", "5000"];
    for (const target of [...plainTargets, ...tlsTargets]) {
      await benchmarkIn(bed, target.host, target.port, [...target.benchArgs, ...warm], signal);
    }
    progress("rtt: warmed up every target");
  }
  const connectCount = CONNECTS_PER_ROUND[size];
  const connects: RttSection["connects"] = options.only.has(RTT_CONNECT) ? [] : undefined;
  const runs: RttRun[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    for (const workload of workloads) {
      const targets = workload.tls ? tlsTargets : plainTargets;
      const order = targets.map((_, i) => targets[(i + round - 1) % targets.length]!);
      const parts: string[] = [];
      for (const target of order) {
        const rows = await benchmarkIn(
          bed,
          target.host,
          target.port,
          [...target.benchArgs, ...argsOf(workload)],
          signal,
        );
        runs.push({ round, workload: workload.name, column: target.column, rows });
        parts.push(
          `${target.column} ${rows.map((r) => Math.round(r.rps)).join("/")}`,
        );
      }
      progress(
        `rtt round ${round}/${options.rounds} ${workload.name} (SET/GET rps): ${parts.join(", ")}`,
      );
    }
    if (connects) {
      const parts: string[] = [];
      for (const tlsRow of [false, true]) {
        const targets = tlsRow ? tlsTargets : plainTargets;
        const order = targets.map((_, i) => targets[(i + round - 1) % targets.length]!);
        for (const target of order) {
          const times = await probe(bed, {
            mode: "connect-ping",
            hostname: target.host,
            port: target.port,
            count: connectCount,
            ...(target.probeTls ? { tls: target.probeTls } : {}),
          }, signal);
          connects.push({ round, column: target.column, tls: tlsRow, times });
          parts.push(`${tlsRow ? "tls " : ""}${target.column} ${fmt(median(times))}`);
        }
      }
      progress(
        `rtt round ${round}/${options.rounds} ${RTT_CONNECT} (median ms): ${parts.join(", ")}`,
      );
    }
  }
  const mainStats = await bed.stopDelayLine();
  progress("rtt: stopping the section's processes and the bed");
  const serverLine = tlsHaproxyConfig.split("\n").find((l) => l.trim().startsWith("server node1 "));
  const named = (text: string) => text.replaceAll(`${dir}/`, "");
  return {
    startedAt,
    rounds: options.rounds,
    smoke,
    fullRun: options.fullRun,
    selected: RTT_NAMES.filter((name) => options.only.has(name)),
    shape: describeShape(shape),
    delayUs: DELAY_US,
    link: { zero, plain: plainPath, delayed, getArgs },
    delayLine: { zero: zeroStats, main: mainStats },
    workloads: workloads.map((w) => ({
      name: w.name,
      title: w.title,
      tls: w.tls,
      args: argsOf(w),
    })),
    runs,
    connects,
    connectCount,
    columns,
    haproxyNote: haproxy.available ? undefined : haproxy.reason,
    haproxyConfig: haproxy.available ? plainHaproxyConfig : undefined,
    haproxyTlsLine: serverLine ? named(serverLine.trim()) : undefined,
    tunnelConfig: named(JSON.stringify(tunnelConfig(APP_TLS_PORTS.preconnect, PRECONNECT, true))),
    benchTlsArgs: cliTls.map(named),
    loadAverage: [loadBefore, await loadAverage()],
    durationMs: performance.now() - started,
  };
}

/** A deployment in the Redis namespace. */
interface NsDeployment extends AsyncDisposable {
  readonly masterPid: number;
}

/**
 * A master, `replicas` replicas and `sentinels` Sentinels in the Redis
 * namespace, every one listening on both of its addresses, on consecutive
 * ports from `ports.master` and `ports.sentinel`; waits until the replicas are
 * linked and every Sentinel passes `SENTINEL CKQUORUM`.
 */
async function startNsDeployment(
  bed: DelayBed,
  dir: string,
  options: {
    ports: { master: number; sentinel: number };
    replicas: number;
    sentinels: number;
    tls?: { files: { caFile: string; certFile: string; keyFile: string }; cli: string[] };
    signal: AbortSignal;
  },
): Promise<NsDeployment> {
  const processes: NsProcess[] = [];
  const dispose = async () => {
    for (const process of processes.reverse()) await process[Symbol.asyncDispose]();
  };
  const host = bed.redisAddress;
  const cli = (port: number, args: string[]) =>
    bed.run("redis", "redis-cli", [
      "-h",
      host,
      "-p",
      String(port),
      ...(options.tls?.cli ?? []),
      ...args,
    ], { timeoutMs: 5000, signal: options.signal });
  const start = async (port: number, role: "node" | "sentinel", extra: string[]) => {
    const conf = `${dir}/${role}-${port}.conf`;
    const tls = options.tls?.files;
    await Deno.writeTextFile(
      conf,
      [
        ...(tls
          ? [
            "port 0",
            `tls-port ${port}`,
            `tls-cert-file ${tls.certFile}`,
            `tls-key-file ${tls.keyFile}`,
            `tls-ca-cert-file ${tls.caFile}`,
            "tls-replication yes",
            "tls-auth-clients yes",
          ]
          : [`port ${port}`]),
        `bind ${bed.redisAddress} ${bed.redisPlainAddress}`,
        "daemonize no",
        "protected-mode no",
        `dir ${dir}`,
        `logfile ${dir}/${role}-${port}.log`,
        ...(role === "node"
          ? [
            'save ""',
            "appendonly no",
            `dbfilename dump-${port}.rdb`,
            "repl-diskless-sync yes",
            "repl-diskless-sync-delay 0",
            "maxclients 10000",
          ]
          : []),
        ...extra,
      ].join("\n") + "\n",
    );
    const process = nsProcess(
      bed.spawn("redis", "redis-server", role === "sentinel" ? [conf, "--sentinel"] : [conf], {
        stdout: "null",
      }),
    );
    processes.push(process);
    await waitFor(`Redis ${role} ${host}:${port} to answer PING`, async () => {
      if (process.exited()) {
        throw new Error(
          `redis-server exited: ${await process.output()}\n${await tail(
            `${dir}/${role}-${port}.log`,
          )}`,
        );
      }
      const output = await cli(port, ["PING"]);
      return new TextDecoder().decode(output.stdout).trim() === "PONG";
    }, options.signal);
    return process;
  };
  try {
    const master = await start(options.ports.master, "node", []);
    for (let i = 1; i <= options.replicas; i++) {
      await start(options.ports.master + i, "node", [`replicaof ${host} ${options.ports.master}`]);
    }
    await waitFor(
      `${options.replicas} replicas to link to ${host}:${options.ports.master}`,
      async () => {
        const info = new TextDecoder().decode(
          (await cli(options.ports.master, ["INFO", "replication"])).stdout,
        );
        const online = info.split("\n").filter((l) => /^slave\d+:.*state=online/.test(l)).length;
        return online >= options.replicas;
      },
      options.signal,
    );
    const quorum = Math.floor(options.sentinels / 2) + 1;
    const sentinelPorts = Array.from(
      { length: options.sentinels },
      (_, i) => options.ports.sentinel + i,
    );
    for (const port of sentinelPorts) {
      await start(port, "sentinel", [
        "sentinel resolve-hostnames no",
        `sentinel monitor ${MASTER_NAME} ${host} ${options.ports.master} ${quorum}`,
        // Long enough that a saturated machine never looks like a dead master.
        `sentinel down-after-milliseconds ${MASTER_NAME} 10000`,
        `sentinel failover-timeout ${MASTER_NAME} 60000`,
      ]);
    }
    for (const port of sentinelPorts) {
      await waitFor(
        `Sentinel ${host}:${port} to pass SENTINEL CKQUORUM ${MASTER_NAME}`,
        async () => {
          const output = await cli(port, ["SENTINEL", "CKQUORUM", MASTER_NAME]);
          return new TextDecoder().decode(output.stdout).startsWith("OK");
        },
        options.signal,
      );
    }
    return { masterPid: master.pid, [Symbol.asyncDispose]: dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

/** The tunnel in the app namespace, run as bench.ts runs it, on `config`. */
async function startNsTunnel(bed: DelayBed, dir: string, config: {
  databases: { port: number }[];
}): Promise<NsProcess> {
  const port = config.databases[0]!.port;
  const configPath = `${dir}/tunnel-${port}.json`;
  await Deno.writeTextFile(configPath, JSON.stringify(config, null, 2));
  const command = tunnelCommand(["--log-format", "json", "--log-level", "debug", configPath]);
  const process = nsProcess(
    bed.spawn("app", command.program, command.args, {
      cwd: ROOT,
      env: { RUST_BACKTRACE: "0", NO_COLOR: "1" },
      stdout: "null",
    }),
  );
  try {
    await waitFor(
      `the tunnel on 127.0.0.1:${port} in ${bed.namespaces.app} to accept`,
      async () => {
        if (process.exited()) throw new Error(`the tunnel exited: ${await process.output()}`);
        const output = await bed.run("app", "redis-cli", ["-p", String(port), "PING"], {
          timeoutMs: 10_000,
        });
        return output.success && new TextDecoder().decode(output.stdout).trim() !== "";
      },
    );
  } catch (error) {
    await process[Symbol.asyncDispose]();
    throw new Error(
      `${error instanceof Error ? error.message : error}\ntunnel output:\n${await process
        .output()}`,
    );
  }
  return process;
}

/** HAProxy in the app namespace, on `config`. */
async function startNsHaproxy(bed: DelayBed, path: string, config: string): Promise<NsProcess> {
  await Deno.writeTextFile(path, config);
  const process = nsProcess(bed.spawn("app", "haproxy", ["-db", "-f", path]));
  const port = /bind 127\.0\.0\.1:(\d+)/.exec(config)?.[1] ?? "?";
  try {
    await waitFor(`HAProxy on 127.0.0.1:${port} in ${bed.namespaces.app} to accept`, async () => {
      if (process.exited()) throw new Error(`HAProxy exited: ${await process.output()}`);
      const output = await bed.run("app", "redis-cli", ["-p", port, "PING"], { timeoutMs: 10_000 });
      return output.success;
    });
  } catch (error) {
    await process[Symbol.asyncDispose]();
    throw error;
  }
  return process;
}

/** Wraps a spawned child: drains its output, stops it on dispose. */
function nsProcess(child: Deno.ChildProcess): NsProcess {
  let done = false;
  const status = child.status.finally(() => done = true);
  const drain = async (stream: ReadableStream<Uint8Array> | null) => {
    if (!stream) return "";
    let text = "";
    try {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        text = (text + chunk).slice(-2048);
      }
    } catch { /* closed */ }
    return text;
  };
  let stdout: Promise<string> = Promise.resolve("");
  let stderr: Promise<string> = Promise.resolve("");
  try {
    stdout = drain(child.stdout);
  } catch { /* not piped */ }
  try {
    stderr = drain(child.stderr);
  } catch { /* not piped */ }
  let tailNow = "";
  stderr.then((t) => tailNow = t);
  return {
    pid: child.pid,
    exited: () => done,
    output: async () => done ? `${(await stderr).trim()} ${(await stdout).trim()}`.trim() : tailNow,
    async [Symbol.asyncDispose]() {
      if (!done) await stopChild(child);
      await status;
      await Promise.all([stdout, stderr]);
    },
  };
}

/**
 * Waits until new connections to a target reach the master on `masterPort`:
 * 4 in a row, as HAProxy spreads new connections over every server until its
 * checks have failed on the replicas.
 */
async function waitRoutesIn(
  bed: DelayBed,
  target: RttTarget,
  masterPort: number,
  parameter: "port" | "tls-port",
  signal: AbortSignal,
): Promise<void> {
  let inARow = 0;
  let last = "nothing yet";
  await waitFor(
    `${target.column} at ${target.host}:${target.port} to lead to the master (${masterPort})`,
    async () => {
      const output = await bed.run("app", "redis-cli", [
        "-h",
        target.host,
        "-p",
        String(target.port),
        ...target.benchArgs,
        "CONFIG",
        "GET",
        parameter,
      ], { timeoutMs: 5000, signal });
      last = new TextDecoder().decode(output.stdout).trim().replaceAll("\n", " ") ||
        new TextDecoder().decode(output.stderr).trim();
      inARow = last === `${parameter} ${masterPort}` ? inARow + 1 : 0;
      return inARow >= 4;
    },
    signal,
    () => `last reached: ${last}`,
  );
}

/** Polls `check` every 100 ms until it returns true, for at most {@linkcode WAIT_MS}. */
async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  signal?: AbortSignal,
  detail?: () => string,
): Promise<void> {
  const deadline = performance.now() + WAIT_MS;
  let lastError = "";
  while (performance.now() < deadline) {
    signal?.throwIfAborted();
    try {
      if (await check()) return;
    } catch (error) {
      if (error instanceof Error && /exited/.test(error.message)) throw error;
      lastError = error instanceof Error ? error.message : String(error);
    }
    await sleep(100, signal);
  }
  throw new Error(
    `Timed out after ${WAIT_MS} ms waiting for ${what}${detail ? `; ${detail()}` : ""}${
      lastError ? `; last error: ${lastError}` : ""
    }`,
  );
}

/** Runs redis-benchmark in the app namespace and parses its CSV. */
async function benchmarkIn(
  bed: DelayBed,
  host: string,
  port: number,
  args: readonly string[],
  signal: AbortSignal,
): Promise<BenchmarkRow[]> {
  const full = ["-h", host, "-p", String(port), ...args, "--csv"];
  const output = await bed.run("app", "redis-benchmark", full, {
    timeoutMs: BENCH_TIMEOUT_MS,
    signal,
  });
  signal.throwIfAborted();
  const decoder = new TextDecoder();
  const stdout = decoder.decode(output.stdout);
  const rows = output.success ? parseBenchmarkCsv(stdout) : [];
  if (rows.length === 0) {
    throw new Error(
      `Cannot run "ip netns exec ${bed.namespaces.app} redis-benchmark ${
        full.join(" ")
      }": exit code ${output.code}: ${
        (decoder.decode(output.stderr) + stdout).trim().slice(-1000) || "no output"
      }`,
    );
  }
  return rows;
}

/** Runs bench/_rtt_probe.ts in the app namespace. */
async function probe(bed: DelayBed, request: ProbeRequest, signal: AbortSignal): Promise<number[]> {
  const script = fileURLToPath(new URL("./_rtt_probe.ts", import.meta.url));
  const output = await bed.run("app", Deno.execPath(), [
    "run",
    "--quiet",
    "--allow-net",
    "--allow-read",
    script,
    JSON.stringify(request),
  ], { timeoutMs: 120_000, signal });
  const text = new TextDecoder().decode(output.stdout).trim();
  let parsed: { times?: number[]; error?: string } = {};
  try {
    parsed = JSON.parse(text.split("\n").at(-1) ?? "");
  } catch { /* reported below */ }
  if (!output.success || !parsed.times) {
    throw new Error(
      `The probe (${request.mode} to ${request.hostname}:${request.port}) failed: ${
        parsed.error ?? (text + new TextDecoder().decode(output.stderr)).trim().slice(-1000)
      }`,
    );
  }
  return parsed.times;
}

async function tail(path: string): Promise<string> {
  try {
    return (await Deno.readTextFile(path)).split("\n").slice(-10).join("\n");
  } catch {
    return "";
  }
}

async function loadAverage(): Promise<string> {
  try {
    return (await Deno.readTextFile("/proc/loadavg")).split(" ")[0] ?? "unknown";
  } catch {
    return "unknown";
  }
}

function describeShape(shape: { replicas: number; sentinels: number }): string {
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;
  return `1 master, ${count(shape.replicas, "replica")}, ${count(shape.sentinels, "Sentinel")}`;
}

function fmt(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value) ? "-" : value.toFixed(3);
}

// ---------------------------------------------------------------------------------------------
// The report.

const COLUMN_LABELS: Readonly<Record<RttColumn, string>> = {
  direct: "Direct",
  tunnel: "Tunnel",
  preconnect: `Tunnel, preconnect ${PRECONNECT}`,
  haproxy: "HAProxy",
};

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length))) - 1]!;
}

function integer(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value)
    ? "-"
    : Math.round(value).toLocaleString("en-US");
}

/** The section's throughput table: rps, ratio to direct per round, p50 latencies. */
export function rttThroughputTable(section: RttSection): string {
  const { columns } = section;
  const others = columns.filter((c) => c !== "direct");
  const header = [
    "Workload",
    "Test",
    ...columns.map((c) => `${COLUMN_LABELS[c]} rps`),
    ...others.map((c) => `${COLUMN_LABELS[c]} ÷ direct`),
    `p50 ms: ${columns.map((c) => COLUMN_LABELS[c]).join(" / ")}`,
  ];
  const lines: string[][] = [];
  for (const workload of section.workloads) {
    const runs = section.runs.filter((run) => run.workload === workload.name);
    const tests = runs[0]?.rows.map((row) => row.test) ?? [];
    for (const test of tests) {
      const rowOf = (run: RttRun) => run.rows.find((row) => row.test === test);
      const values = (column: RttColumn, field: (row: BenchmarkRow) => number) =>
        runs.filter((run) => run.column === column).flatMap((run) => {
          const row = rowOf(run);
          return row ? [field(row)] : [];
        });
      const medianOf = (xs: number[]) => xs.length > 0 ? median(xs) : undefined;
      const ratio = (column: RttColumn) => {
        const ratios = runs.filter((run) => run.column === column).flatMap((run) => {
          const mine = rowOf(run);
          const base = runs.find((r) => r.column === "direct" && r.round === run.round);
          const baseRow = base && rowOf(base);
          return mine && baseRow && baseRow.rps > 0 ? [mine.rps / baseRow.rps] : [];
        });
        return ratios.length > 0 ? `${median(ratios).toFixed(2)}×` : "-";
      };
      lines.push([
        workload.title,
        test,
        ...columns.map((c) => integer(medianOf(values(c, (r) => r.rps)))),
        ...others.map(ratio),
        columns.map((c) => fmt(medianOf(values(c, (r) => r.p50Ms)))).join(" / "),
      ]);
    }
  }
  return markdownTable(header, lines, [0, 1]);
}

/** The new-connection table: per target, median and p90 of one round's connections, median over rounds. */
export function rttConnectTable(section: RttSection): string {
  const connects = section.connects ?? [];
  const header = ["Target", "Plaintext median ms", "p90 ms", "TLS median ms", "p90 ms"];
  const stat = (column: RttColumn, tls: boolean, f: (times: number[]) => number) => {
    const perRound = connects.filter((c) => c.column === column && c.tls === tls).map((c) =>
      f(c.times)
    );
    return perRound.length > 0 ? fmt(median(perRound)) : "-";
  };
  const lines = section.columns.map((column) => [
    column === "direct" ? "Direct (TLS: direct TLS)" : COLUMN_LABELS[column],
    stat(column, false, median),
    stat(column, false, (t) => percentile(t, 90)),
    stat(column, true, median),
    stat(column, true, (t) => percentile(t, 90)),
  ]);
  return markdownTable(header, lines, [0]);
}

/** The link table: what each path gives, from the app namespace. */
export function rttLinkTable(section: RttSection): string {
  const header = [
    "Path (app → Redis host)",
    "TCP connect, median ms",
    "p10 / p90 ms",
    "PING on an open connection, median ms",
    "redis-benchmark -c 50 GET rps",
  ];
  const { zero, plain, delayed } = section.link;
  const lines = [plain, zero, delayed].map((path) => [
    path.label,
    fmt(median(path.connectMs)),
    `${fmt(percentile(path.connectMs, 10))} / ${fmt(percentile(path.connectMs, 90))}`,
    fmt(median(path.pingMs)),
    `${integer(median(path.getRps))} (${path.getRps.map((v) => integer(v)).join(", ")})`,
  ]);
  return markdownTable(header, lines, [0]);
}

/** The delay line's own statistics. */
function delayLineTable(section: RttSection): string {
  const header = [
    "Delay line run",
    "Packets",
    "Dropped (queue full)",
    "Deepest queue",
    "Late by, p50 / p99 / max µs",
    "Real-time priority",
  ];
  const rows = [
    ["Delay 0 (the cost measurement)", section.delayLine.zero],
    [`Delay ${section.delayUs} µs (the link rows and every round)`, section.delayLine.main],
  ] as const;
  return markdownTable(
    header,
    rows.map(([label, stats]) =>
      stats
        ? [
          label,
          integer(stats.packets),
          integer(stats.drops),
          integer(stats.maxQueue),
          `${stats.latenessP50Us} / ${stats.latenessP99Us} / ${stats.latenessMaxUs.toFixed(0)}`,
          stats.realtime ? "yes (SCHED_FIFO)" : "no",
        ]
        : [label, "-", "-", "-", "-", "-"]
    ),
    [0],
  );
}

/** The section, as printed and as written to bench/RESULTS.md. */
export function rttSectionMarkdown(section: RttSection): string {
  const rounds = section.rounds;
  const alone = `make bench BENCH_ARGS="--only ${
    section.selected.length === RTT_NAMES.length ? RTT_GROUP : section.selected.join(",")
  } --rounds ${rounds}"`;
  const command = section.smoke
    ? "`make bench-smoke`"
    : section.fullRun
    ? `\`make bench${
      rounds === 5 ? "" : ` BENCH_ARGS="--rounds ${rounds}"`
    }\` (this section alone: \`${alone}\`)`
    : `\`${alone}\``;
  const when = section.startedAt.toISOString().slice(0, 16).replace("T", " ");
  const { delayed, zero, plain } = section.link;
  const rtt = median(delayed.connectMs);
  const parts = [
    RTT_HEADING,
    "",
    "The same targets across a link with a real round trip of about 1 ms, where a new " +
    "connection to the master costs a round trip instead of the few microseconds of loopback: " +
    `what \`preconnect\` is for. Measured on ${when} UTC with ${command} in ` +
    `${(section.durationMs / 60_000).toFixed(1)} minutes: ${rounds} interleaved ` +
    `round${rounds === 1 ? "" : "s"} (each workload against every target back to back, the ` +
    "order rotating), after one warm-up run per target; medians over rounds. The 1-minute load " +
    `average was ${section.loadAverage[0]} at the start and ${
      section.loadAverage[1]
    } at the end, ` +
    `on ${navigator.hardwareConcurrency} CPUs.`,
    "",
    "- **The bed** (bench/_delay_bed.ts): three network namespaces, an application host " +
    "(10.203.1.2), a router and a Redis host (10.203.2.2 and 10.203.2.3), joined by veth " +
    "pairs. The router policy-routes what it forwards to or from 10.203.2.2 " +
    "(`ip rule add iif <veth> to|from 10.203.2.2 lookup 100`, table 100 holding " +
    "`default dev <tun>`) into a TUN device; 10.203.2.3 is routed plainly.",
    `- **The delay line** (bench/delay_line.c, compiled with gcc at bench time) reads each ` +
    `packet from the TUN and writes it back ${section.delayUs} µs later, after which the kernel ` +
    "routes it on to the other veth: every packet is delayed, TCP handshakes included, once " +
    "each way, so a round trip gains twice the delay. It sleeps in `ppoll` with a nanosecond " +
    "timeout and a 1 ns timer slack (no busy wait), runs at SCHED_FIFO priority so that busy " +
    "benchmark processes do not make it late, keeps at most 4096 packets (more are dropped " +
    "and counted), and prints its statistics on SIGTERM.",
    `- **What the link gives**: a TCP connect from the app host to Redis takes ${fmt(rtt)} ms ` +
    `(median of ${delayed.connectMs.length}), a PING on an open connection ` +
    `${fmt(median(delayed.pingMs))} ms. **What the delay line costs**: with the delay at 0, ` +
    `a connect through the TUN takes ${fmt(median(zero.connectMs))} ms against ` +
    `${fmt(median(plain.connectMs))} ms on the plain route, and \`redis-benchmark ` +
    `${section.link.getArgs.join(" ")}\` gets ${integer(median(zero.getRps))} against ` +
    `${integer(median(plain.getRps))} requests/s (medians of alternating runs, each listed): ` +
    "the delay line is a process that wakes for every packet on a machine that the benchmark " +
    "already saturates, so rows that saturate the CPU pay for it, every target alike.",
    "",
    rttLinkTable(section),
    "",
    delayLineTable(section),
    "",
    `- **Redis host**: two deployments (${section.shape} each), one plaintext and one ` +
    "TLS-only (`port 0`, `tls-port`, `tls-replication yes`, `tls-auth-clients yes`, the EC P-256 " +
    "certificates of tests/_certs.ts), every process bound to the host's addresses. " +
    "Direct means redis-benchmark in the app host connects to the master at 10.203.2.2; " +
    `Direct TLS adds \`${section.benchTlsArgs.join(" ")}\`.`,
    `- **App host**: redis-benchmark, run there with \`ip netns exec\`; the tunnel, run as ` +
    `above (\`ip netns exec <app> ${TUNNEL_UNDER_TEST} --log-format json --log-level debug\`) ` +
    'with `"preconnect": 0` (set explicitly: a database with TLS to its master has 4 by ' +
    "default); a second tunnel with " +
    `\`"preconnect": ${PRECONNECT}\` (${PRECONNECT} connections kept open to the confirmed ` +
    "master and handed to new clients instead of a dial; at least the 50 clients of the " +
    "largest row); and HAProxy with the config below. Each exists twice, towards each " +
    "deployment; the TLS ones reach the master over TLS while redis-benchmark talks " +
    "plaintext to them. The TLS tunnel with preconnect runs on " +
    `\`${section.tunnelConfig}\`; its Sentinel connections and its dials are TLS, ` +
    `every certificate checked for the name ${SERVER_NAME}.`,
    "- In the TLS rows with `-k 0`, Direct TLS is held back by redis-benchmark itself: its TLS " +
    "client keeps a core busy while its handshakes wait on the network (seen while building " +
    "this section: `-c 10 -k 0` took as much CPU time as wall time over the delayed path, " +
    "against 1.9 ms of CPU per connection on the plain route), on a machine of two cores. The " +
    "proxies' clients talk plaintext to them, and HAProxy resumes TLS sessions; so those rows " +
    "say what each proxy's TLS dials cost, not that a proxy beats a good TLS client.",
    '- The "÷ direct" columns are medians over rounds of the target\'s requests per second ' +
    "divided by direct Redis's in the same round (in the TLS rows, direct TLS's). Latencies " +
    "are redis-benchmark's p50, medians over rounds.",
    "- redis-benchmark command lines (`-h 10.203.2.2 -p 7000` for direct, `-h 127.0.0.1 -p " +
    "PORT` for the proxies; the TLS rows' direct runs add the TLS arguments above):",
    "",
    ...section.workloads.map((w) =>
      `  - ${w.title}: \`redis-benchmark ${w.args.join(" ")} --csv\``
    ),
    ...(section.haproxyConfig
      ? [
        "",
        "- HAProxy config (plaintext; the TLS one adds `tcp-check connect ssl` and " +
        `\`${section.haproxyTlsLine ?? ""}\`, likewise for each node):`,
        "",
        "```",
        section.haproxyConfig.trimEnd(),
        "```",
      ]
      : [`- No HAProxy column: ${section.haproxyNote ?? "left out"}.`]),
  ];
  if (section.workloads.length > 0) {
    parts.push("", "### Throughput and latency over 1 ms", "", rttThroughputTable(section));
  }
  if (section.connects) {
    parts.push(
      "",
      "### New connection + first PING over 1 ms",
      "",
      `${section.connectCount} connections per target and round, opened one after the other ` +
        "from the app host, each timed from the start of its connect to the `+PONG` of its first " +
        "PING; p90 is over one round's connections, both medians over rounds. Through a proxy the " +
        "client's connect is local, and the proxy's dial to the master is what a new client waits " +
        "for; with preconnect that dial was done before the client came.",
      "",
      rttConnectTable(section),
    );
  }
  return parts.join("\n");
}
