/**
 * The metrics (`src/ops/metrics.ts`): the rendering of samples, the process
 * collectors under Deno's permissions, and, on real redis-server and Sentinel
 * processes behind a tunnel, `/metrics` as Prometheus reads it; then the
 * shipped Grafana dashboard and Prometheus alert rules: every metric they
 * read is in that `/metrics`, and promtool checks and unit-tests the rules.
 */
import assert from "node:assert/strict";
import { eventually as within } from "./_wait.ts";
import { fileURLToPath } from "node:url";
import denoJson from "../deno.json" with { type: "json" };
import { freePort, startDeployment } from "./_deployment.ts";
import { startTunnel } from "./_tunnel.ts";
import {
  CUT_REASONS,
  EventLoopLag,
  type MasterSample,
  type PortSample,
  renderPrometheus,
} from "../src/ops/metrics.ts";
import { MasterStats, PortStats } from "../src/shared/stats.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const RULES_DIR = `${ROOT}deploy/prometheus`;
const RULES = `${RULES_DIR}/sentinel-tunnel.rules.yml`;
const RULE_TESTS = `${RULES_DIR}/sentinel-tunnel.rules.test.yml`;
const DASHBOARD = `${ROOT}deploy/grafana/sentinel-tunnel.json`;

/** Present only where Deno lets the process read `/proc/self`: under `--allow-all`. */
const FD_METRICS = ["sentinel_tunnel_process_open_fds", "sentinel_tunnel_process_max_fds"];

const processes = { sanitizeOps: false, sanitizeResources: false };

/** Generous: a Sentinel takes `down-after-milliseconds` and a poll or two to notice. */
const DEADLINE_MS = 30_000;

/** {@linkcode within} with this file's deadline. */
const eventually = <T>(what: string, probe: () => Promise<T | undefined>) =>
  within(what, probe, DEADLINE_MS);

const PROMTOOL = findPromtool();
const NO_PROMTOOL = "promtool is not installed (Debian: apt-get install prometheus; make setup " +
  "does it as root), so the promtool checks of the alert rules and of /metrics are ignored";
if (!PROMTOOL) console.warn(`metrics_test.ts: ${NO_PROMTOOL}`);

function findPromtool(): string | undefined {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== ""), "/usr/bin"];
  for (const dir of dirs) {
    try {
      if (Deno.statSync(`${dir}/promtool`).isFile) return `${dir}/promtool`;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return undefined;
}

/** Runs promtool with `args` (and `stdin`), returning its exit code and everything it printed. */
async function promtool(
  args: string[],
  options: { cwd?: string; stdin?: string } = {},
): Promise<{ code: number; output: string }> {
  const child = new Deno.Command(PROMTOOL!, {
    args,
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return { code, output: decoder.decode(stdout) + decoder.decode(stderr) };
}

const KEYWORDS = new Set([
  "and",
  "or",
  "unless",
  "bool",
  "offset",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "inf",
  "nan",
]);

/**
 * The metric names a PromQL expression reads; a Grafana `label_values(metric, label)` query
 * reads its metric.
 */
function metricNames(expr: string): string[] {
  const rest = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, " ")
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\blabel_values\(\s*([^,()]+?)\s*(?:,[^()]*)?\)/g, " $1 ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const names: string[] = [];
  for (const match of rest.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const before = rest[match.index - 1] ?? " ";
    const after = rest.slice(match.index + match[0].length);
    // A function or an aggregation, a Grafana variable, an exponent, a keyword.
    if (/^\s*\(/.test(after) || /[$0-9.]/.test(before) || KEYWORDS.has(match[0].toLowerCase())) {
      continue;
    }
    names.push(match[0]);
  }
  return names;
}

/** Every `expr:` of a Prometheus rules file, single-line or a block scalar. */
function ruleExpressions(yaml: string): string[] {
  const lines = yaml.split("\n");
  const exprs: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const match = /^(\s*)expr:\s*(.*)$/.exec(lines[i]!);
    if (!match) continue;
    const [, indent, value] = match;
    if (!/^[|>][-+]?$/.test(value!)) {
      exprs.push(value!.replace(/^(['"])(.*)\1$/, "$2"));
      continue;
    }
    const block: string[] = [];
    while (i + 1 < lines.length) {
      const next = lines[i + 1]!;
      if (next.trim() !== "" && next.search(/\S/) <= indent!.length) break;
      block.push(next);
      i++;
    }
    exprs.push(block.join("\n"));
  }
  return exprs;
}

interface Dashboard {
  panels: Panel[];
  annotations: { list: { expr?: string }[] };
  templating: { list: { type: string; query?: string | { query: string } }[] };
}

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: { expr: string; refId: string; datasource?: { uid: string } }[];
  panels?: Panel[];
}

/** Every PromQL expression of the dashboard: panels' queries, annotations, variables. */
function dashboardExpressions(dashboard: Dashboard): string[] {
  const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
  return [
    ...panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
    ...dashboard.annotations.list.flatMap((a) => a.expr === undefined ? [] : [a.expr]),
    ...dashboard.templating.list.flatMap((v) =>
      v.type !== "query" ? [] : [typeof v.query === "string" ? v.query : v.query!.query]
    ),
  ];
}

/** The names of the samples in a scrape: `foo_bucket` for a histogram's buckets. */
function scrapedNames(text: string): Set<string> {
  return new Set(
    text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).map((l) =>
      /^[^{ ]+/.exec(l)![0]
    ),
  );
}

/** Every sample line of `metric`. */
function samples(text: string, metric: string): string[] {
  return text.split("\n").filter((l) => l.startsWith(`${metric}{`) || l.startsWith(`${metric} `));
}

/** The value of one series, or `undefined` when it is absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

function portSample(
  listen: string,
  role: "master" | "replica",
  replicas: PortSample["replicas"] = [],
): PortSample {
  return {
    name: 'a"b',
    role,
    port: Number(listen.slice(listen.lastIndexOf(":") + 1)),
    listen,
    stats: new PortStats(),
    activeConnections: 0,
    readyConnections: 0,
    replicas,
  };
}

function masterSample(overrides: Partial<MasterSample> = {}): MasterSample {
  return {
    name: 'a"b',
    stats: new MasterStats(),
    master: "10.0.0.1:6379",
    failover: false,
    fenced: false,
    replicas: [],
    distrusted: new Map(),
    ...overrides,
  };
}

Deno.test("renderPrometheus() labels entries by port and role, and by address when ports clash", async () => {
  const replicas = [
    { address: "10.0.0.2:6379", usable: true, clients: 3 },
    { address: "10.0.0.3:6379", usable: false, clients: 0 },
  ];
  const master = masterSample({
    replicas: [
      { address: "10.0.0.2:6379", lagBytes: 12 },
      { address: "10.0.0.3:6379", lagBytes: undefined },
    ],
  });
  const text = await renderPrometheus({
    masters: [master],
    ports: [
      portSample("127.0.0.1:6380", "master"),
      portSample("127.0.0.1:6381", "replica", replicas),
      portSample("10.0.0.1:6381", "replica", replicas),
    ],
    sentinels: [],
  });
  const lines = text.split("\n");
  assert.ok(
    lines.includes(
      'sentinel_tunnel_connections_active{database="a\\"b",port="6380",role="master"} 0',
    ),
  );
  // Two read ports of one name on port 6381: the listen address tells them apart.
  assert.ok(
    lines.includes(
      'sentinel_tunnel_connections_active{database="a\\"b",port="127.0.0.1:6381",role="replica"} 0',
    ),
  );
  assert.ok(
    lines.includes(
      'sentinel_tunnel_replica_usable{database="a\\"b",port="10.0.0.1:6381",replica="10.0.0.3:6379"} 0',
    ),
  );
  assert.ok(
    lines.includes(
      'sentinel_tunnel_replica_clients{database="a\\"b",port="127.0.0.1:6381",replica="10.0.0.2:6379"} 3',
    ),
  );
  // About the master: one series per name, whatever its ports.
  assert.deepEqual(
    lines.filter((l) => l.startsWith("sentinel_tunnel_master_confirmed{")),
    ['sentinel_tunnel_master_confirmed{database="a\\"b"} 1'],
  );
  // A lag is the name's, and one not known has no sample.
  assert.deepEqual(
    lines.filter((l) => l.startsWith("sentinel_tunnel_replica_lag_bytes{")),
    ['sentinel_tunnel_replica_lag_bytes{database="a\\"b",replica="10.0.0.2:6379"} 12'],
  );
  // No two samples share a series.
  const series = lines.filter((l) => l && !l.startsWith("#")).map((l) =>
    l.slice(0, l.lastIndexOf(" "))
  );
  assert.equal(new Set(series).size, series.length);
});

Deno.test("renderPrometheus() names the master, the failover, the cuts and the hooks once per name", async () => {
  const stats = new MasterStats();
  stats.clientsCut.set("switch", 4);
  stats.clientsCut.set("fence", 1);
  stats.hookRuns = 3;
  stats.hookFailures = 1;
  const other = masterSample({
    name: "other",
    master: undefined,
    failover: true,
    fenced: true,
    distrusted: new Map([["10.0.0.9:26379", 2]]),
  });
  const text = await renderPrometheus({
    masters: [masterSample({ stats }), other],
    ports: [portSample("127.0.0.1:6380", "master"), portSample("127.0.0.1:6381", "replica")],
    sentinels: [{ address: "10.0.0.7:26379", errors: 0, reachable: true }],
  });
  // The master's address as a label, absent while none is confirmed.
  assert.deepEqual(samples(text, "sentinel_tunnel_master_info"), [
    'sentinel_tunnel_master_info{database="a\\"b",address="10.0.0.1:6379"} 1',
  ]);
  assert.deepEqual(samples(text, "sentinel_tunnel_master_confirmed"), [
    'sentinel_tunnel_master_confirmed{database="a\\"b"} 1',
    'sentinel_tunnel_master_confirmed{database="other"} 0',
  ]);
  assert.deepEqual(samples(text, "sentinel_tunnel_failover_in_progress"), [
    'sentinel_tunnel_failover_in_progress{database="a\\"b"} 0',
    'sentinel_tunnel_failover_in_progress{database="other"} 1',
  ]);
  assert.deepEqual(samples(text, "sentinel_tunnel_write_fence_closed"), [
    'sentinel_tunnel_write_fence_closed{database="a\\"b"} 0',
    'sentinel_tunnel_write_fence_closed{database="other"} 1',
  ]);
  // Every reason has a series from the start, so that increase() sees the first cut.
  const cuts = (name: string) =>
    CUT_REASONS.map((reason) =>
      `sentinel_tunnel_clients_cut_total{database="${name}",reason="${reason}"} ${
        name === 'a\\"b' ? stats.clientsCut.get(reason) ?? 0 : 0
      }`
    );
  assert.deepEqual(samples(text, "sentinel_tunnel_clients_cut_total"), [
    ...cuts('a\\"b'),
    ...cuts("other"),
  ]);
  assert.deepEqual(samples(text, "sentinel_tunnel_hook_runs_total"), [
    'sentinel_tunnel_hook_runs_total{database="a\\"b"} 3',
    'sentinel_tunnel_hook_runs_total{database="other"} 0',
  ]);
  assert.deepEqual(samples(text, "sentinel_tunnel_hook_failures_total"), [
    'sentinel_tunnel_hook_failures_total{database="a\\"b"} 1',
    'sentinel_tunnel_hook_failures_total{database="other"} 0',
  ]);
  // Each known Sentinel per name, at 0 until distrusted; one distrusted but no longer known too.
  assert.deepEqual(samples(text, "sentinel_tunnel_sentinel_distrusted_total"), [
    'sentinel_tunnel_sentinel_distrusted_total{database="a\\"b",sentinel="10.0.0.7:26379"} 0',
    'sentinel_tunnel_sentinel_distrusted_total{database="other",sentinel="10.0.0.7:26379"} 0',
    'sentinel_tunnel_sentinel_distrusted_total{database="other",sentinel="10.0.0.9:26379"} 2',
  ]);
});

Deno.test("renderPrometheus() gives a read port no master-side series", async () => {
  const master = portSample("127.0.0.1:6380", "master");
  master.stats.bytesClientToMaster = 10;
  master.stats.bytesMasterToClient = 20;
  master.stats.readyConnectionsUsed = 2;
  const read = portSample("127.0.0.1:6381", "replica");
  read.stats.bytesClientToMaster = 30;
  read.stats.bytesMasterToClient = 40;
  const text = await renderPrometheus({
    masters: [masterSample()],
    ports: [{ ...master, readyConnections: 5 }, read],
    sentinels: [],
  });
  const m = 'database="a\\"b",port="6380",role="master"';
  const r = 'database="a\\"b",port="6381",role="replica"';
  assert.deepEqual(samples(text, "sentinel_tunnel_ready_connections"), [
    `sentinel_tunnel_ready_connections{${m}} 5`,
  ]);
  assert.deepEqual(samples(text, "sentinel_tunnel_ready_connections_used_total"), [
    `sentinel_tunnel_ready_connections_used_total{${m}} 2`,
  ]);
  assert.deepEqual(samples(text, "sentinel_tunnel_ready_connections_discarded_total"), [
    `sentinel_tunnel_ready_connections_discarded_total{${m}} 0`,
  ]);
  assert.deepEqual(samples(text, "sentinel_tunnel_bytes_total"), [
    `sentinel_tunnel_bytes_total{direction="client_to_server",${m}} 10`,
    `sentinel_tunnel_bytes_total{direction="client_to_server",${r}} 30`,
    `sentinel_tunnel_bytes_total{direction="server_to_client",${m}} 20`,
    `sentinel_tunnel_bytes_total{direction="server_to_client",${r}} 40`,
  ]);
});

Deno.test("renderPrometheus() renders how long clients waited as a histogram per port", async () => {
  const master = portSample("127.0.0.1:6380", "master");
  for (const seconds of [0.003, 0.3, 0.4, 12]) master.stats.clientWaitSeconds.observe(seconds);
  const text = await renderPrometheus({
    masters: [masterSample()],
    ports: [master, portSample("127.0.0.1:6381", "replica")],
    sentinels: [],
  });
  const m = 'database="a\\"b",port="6380",role="master"';
  const cumulative = [1, 1, 1, 1, 3, 3, 3, 3, 3, 4];
  assert.deepEqual(
    samples(text, "sentinel_tunnel_client_wait_seconds_bucket").filter((l) => l.includes(m)),
    [
      ...[0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30].map((le, i) =>
        `sentinel_tunnel_client_wait_seconds_bucket{${m},le="${le}"} ${cumulative[i]}`
      ),
      `sentinel_tunnel_client_wait_seconds_bucket{${m},le="+Inf"} 4`,
    ],
  );
  assert.equal(sample(text, `sentinel_tunnel_client_wait_seconds_sum{${m}}`), 12.703);
  assert.equal(sample(text, `sentinel_tunnel_client_wait_seconds_count{${m}}`), 4);
  assert.equal(
    sample(
      text,
      'sentinel_tunnel_client_wait_seconds_count{database="a\\"b",port="6381",role="replica"}',
    ),
    0,
  );
  assert.match(text, /^# TYPE sentinel_tunnel_client_wait_seconds histogram$/m);
});

Deno.test("renderPrometheus() renders the build and the process", async () => {
  const eventLoopLag = new EventLoopLag();
  eventLoopLag.histogram.observe(0.3);
  const text = await renderPrometheus({
    masters: [],
    ports: [],
    sentinels: [],
    build: { version: "1.2.3", deno: "2.9.6" },
    process: {
      residentBytes: 1000,
      heapUsedBytes: 500,
      cpuSeconds: 1.5,
      startTimeSeconds: 1700000000.5,
      openFds: undefined,
      maxFds: undefined,
      eventLoopLag: eventLoopLag.histogram,
    },
  });
  assert.deepEqual(samples(text, "sentinel_tunnel_build_info"), [
    'sentinel_tunnel_build_info{version="1.2.3",deno="2.9.6"} 1',
  ]);
  assert.equal(sample(text, "sentinel_tunnel_process_resident_memory_bytes"), 1000);
  assert.equal(sample(text, "sentinel_tunnel_process_heap_used_bytes"), 500);
  assert.equal(sample(text, "sentinel_tunnel_process_cpu_seconds_total"), 1.5);
  assert.equal(sample(text, "sentinel_tunnel_process_start_time_seconds"), 1700000000.5);
  assert.equal(sample(text, 'sentinel_tunnel_event_loop_lag_seconds_bucket{le="0.25"}'), 0);
  assert.equal(sample(text, 'sentinel_tunnel_event_loop_lag_seconds_bucket{le="0.5"}'), 1);
  // What could not be read has no series, not a made-up 0.
  for (const metric of FD_METRICS) assert.doesNotMatch(text, new RegExp(`^${metric}`, "m"));
});

Deno.test("renderPrometheus() refuses two samples with the same labels", async () => {
  // Two read ports of one name on one listen address cannot be told apart.
  await assert.rejects(
    renderPrometheus({
      masters: [],
      ports: [portSample("127.0.0.1:6381", "replica"), portSample("127.0.0.1:6381", "replica")],
      sentinels: [],
    }),
    /Two samples of sentinel_tunnel_connections_active have the same labels/,
  );
});

Deno.test("EventLoopLag sees the event loop blocked", async () => {
  using lag = new EventLoopLag(20);
  lag.start();
  await new Promise((resolve) => setTimeout(resolve, 60));
  const blockedUntil = performance.now() + 300;
  while (performance.now() < blockedUntil) { /* block the loop */ }
  await new Promise((resolve) => setTimeout(resolve, 60));
  lag.stop();
  const { bounds, counts, count } = lag.histogram;
  assert.ok(count >= 3, `only ${count} samples`);
  // One timer ran about 300 ms late: in no bucket up to 0.25 s.
  const upTo250ms = counts[bounds.indexOf(0.25)]!;
  assert.equal(count - upTo250ms, 1, JSON.stringify(lag.histogram));
  assert.equal(lag.running, false);
  assert.throws(() => new EventLoopLag(0), RangeError);
});

Deno.test(
  "readProcess() reads the fds only where Deno lets it read /proc/self: under --allow-all",
  processes,
  async () => {
    if (Deno.build.os !== "linux") return;
    const run = async (permission: string) => {
      const { code, stdout, stderr } = await new Deno.Command("sh", {
        args: [
          "-c",
          `ulimit -n 1000 && exec "$0" "$@"`,
          Deno.execPath(),
          "run",
          "--quiet",
          permission,
          "tests/_process_sample.ts",
        ],
        cwd: ROOT,
        env: { RUST_BACKTRACE: "0", NO_COLOR: "1" },
        stdin: "null",
      }).output();
      assert.equal(code, 0, new TextDecoder().decode(stderr));
      return JSON.parse(new TextDecoder().decode(stdout)) as Record<string, number | null>;
    };
    // The tunnel's own permission: Deno 2.9 refuses /proc/self without --allow-all.
    const read = await run("--allow-read");
    assert.equal(read.openFds, null);
    assert.equal(read.maxFds, null);
    assert.ok(read.residentBytes! > 1_000_000, JSON.stringify(read));
    assert.ok(read.heapUsedBytes! > 0 && read.cpuSeconds! > 0, JSON.stringify(read));
    const all = await run("--allow-all");
    assert.equal(all.maxFds, 1000);
    // stdin, stdout, stderr, and whatever Deno holds.
    assert.ok(all.openFds! >= 3 && all.openFds! < 1000, JSON.stringify(all));
  },
);

Deno.test("metricNames() finds the metrics a PromQL expression reads", () => {
  assert.deepEqual(
    metricNames(
      'sum by (database, le) (rate(sentinel_tunnel_a_bucket{job=~"$job",x="y{z}"}[$__rate_interval]))' +
        " - ignoring(le) sentinel_tunnel_b offset 5m > 0.5 and on (database) time() - sentinel_tunnel_c",
    ),
    ["sentinel_tunnel_a_bucket", "sentinel_tunnel_b", "sentinel_tunnel_c"],
  );
  assert.deepEqual(
    metricNames('label_values(sentinel_tunnel_build_info{job=~"$job",a="b"}, instance)'),
    ["sentinel_tunnel_build_info"],
  );
  assert.deepEqual(metricNames("label_values(sentinel_tunnel_build_info, job)"), [
    "sentinel_tunnel_build_info",
  ]);
  assert.deepEqual(metricNames("up == 0 or vector(1e3)"), ["up"]);
});

Deno.test("the Grafana dashboard is well-formed: unique ids, the datasource variable, no overlap", async () => {
  const dashboard = JSON.parse(await Deno.readTextFile(DASHBOARD)) as Dashboard;
  const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
  assert.equal(new Set(panels.map((p) => p.id)).size, panels.length);
  assert.ok(
    dashboard.templating.list.some((v) => v.type === "datasource"),
    "no datasource variable",
  );
  for (const panel of panels.filter((p) => p.type !== "row")) {
    assert.equal(panel.datasource?.uid, "${datasource}", panel.title);
    assert.ok((panel.targets ?? []).length > 0, `${panel.title} has no query`);
    for (const target of panel.targets!) assert.notEqual(target.expr.trim(), "", panel.title);
    const refIds = panel.targets!.map((t) => t.refId);
    assert.equal(new Set(refIds).size, refIds.length, panel.title);
  }
  // No two panels cover one cell of the grid.
  const cells = new Map<string, string>();
  for (const { gridPos: { x, y, w, h }, title } of panels) {
    assert.ok(x >= 0 && w > 0 && x + w <= 24 && h > 0, title);
    for (let i = x; i < x + w; i++) {
      for (let j = y; j < y + h; j++) {
        const key = `${i},${j}`;
        assert.ok(!cells.has(key), `${title} overlaps ${cells.get(key)}`);
        cells.set(key, title);
      }
    }
  }
});

Deno.test({
  name: "the alert rules pass promtool check rules and their unit tests",
  ignore: !PROMTOOL,
  fn: async () => {
    const rules = await Deno.readTextFile(RULES);
    const alerts = [...rules.matchAll(/^\s*- alert: (\S+)$/gm)].map((m) => m[1]);
    assert.deepEqual(alerts, [
      "SentinelTunnelNoMaster",
      "SentinelTunnelWriteFenceClosed",
      "SentinelTunnelSentinelDistrusted",
      "SentinelTunnelOutOfFileDescriptors",
      "SentinelTunnelSentinelUnreachable",
      "SentinelTunnelClientsWaiting",
      "SentinelTunnelLogLinesDropped",
      "SentinelTunnelHookFailing",
      "SentinelTunnelEventLoopBlocked",
    ]);
    const check = await promtool(["check", "rules", RULES]);
    assert.equal(check.code, 0, check.output);
    assert.match(check.output, new RegExp(`SUCCESS: ${alerts.length} rules found`));
    // Each alert fires on the series it is meant for, and only then.
    const test = await promtool(["test", "rules", RULE_TESTS], { cwd: RULES_DIR });
    assert.equal(test.code, 0, test.output);
    const tested = new Set(
      [...(await Deno.readTextFile(RULE_TESTS)).matchAll(/alertname: (\S+)/g)].map((m) => m[1]),
    );
    assert.deepEqual([...tested].sort(), [...alerts].sort());
  },
});

Deno.test(
  "/metrics of a running tunnel has every metric the dashboard and the alert rules read",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "metered" });
    await deployment.waitReady();
    const name = deployment.masterName;
    const masterPort = freePort();
    const readPort = freePort();
    const adminPort = freePort();
    await using _tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      timeouts: { clientWaitMs: 3000, pollIntervalMs: 500 },
      onMasterChange: { command: ["sh", "-c", "exit 3"] },
      databases: [
        { name, port: masterPort, preconnect: 1 },
        { name, port: readPort, role: "replica" },
      ],
    }, { ports: [masterPort, readPort], args: ["--admin", `127.0.0.1:${adminPort}`] });
    const scrape = async () => {
      const response = await fetch(`http://127.0.0.1:${adminPort}/metrics`, {
        signal: AbortSignal.timeout(5000),
      });
      assert.equal(response.status, 200);
      assert.equal(
        response.headers.get("content-type"),
        "text/plain; version=0.0.4; charset=utf-8",
      );
      return await response.text();
    };
    const masterLabels = `database="${name}",port="${masterPort}",role="master"`;
    const readLabels = `database="${name}",port="${readPort}",role="replica"`;
    const first = deployment.nodes[0]!.address;
    const replicas = deployment.nodes.slice(1).map((n) => n.address);
    // The first master found runs the hook, which fails; the replicas are checked behind.
    const text = await eventually("the master, the hook's failure, the replicas", async () => {
      const text = await scrape();
      const named = sample(
        text,
        `sentinel_tunnel_master_info{database="${name}",address="${first}"}`,
      );
      const failed = sample(text, `sentinel_tunnel_hook_failures_total{database="${name}"}`);
      const usable = replicas.every((replica) =>
        sample(
            text,
            `sentinel_tunnel_replica_usable{database="${name}",port="${readPort}",replica="${replica}"}`,
          ) === 1 &&
        sample(
            text,
            `sentinel_tunnel_replica_lag_bytes{database="${name}",replica="${replica}"}`,
          )! >= 0
      );
      return named === 1 && failed === 1 && usable ? text : undefined;
    });

    // Every metric the dashboard and the rules read, in this scrape.
    const dashboard = JSON.parse(await Deno.readTextFile(DASHBOARD)) as Dashboard;
    const expressions = [
      ...dashboardExpressions(dashboard),
      ...ruleExpressions(await Deno.readTextFile(RULES)),
    ];
    const read = new Set(expressions.flatMap(metricNames));
    assert.ok(read.size >= 30, [...read].join(", "));
    const scraped = scrapedNames(text);
    const missing = [...read].filter((n) => !scraped.has(n) && !FD_METRICS.includes(n));
    assert.deepEqual(missing, [], `read by the dashboard or the rules, absent:\n${text}`);
    // The fds: read by the dashboard, absent under the tunnel's permissions (not a made-up 0).
    assert.deepEqual(FD_METRICS.filter((n) => read.has(n)), FD_METRICS);
    assert.deepEqual(FD_METRICS.filter((n) => scraped.has(n)), []);

    // The build, the process, the name, each port.
    assert.deepEqual(samples(text, "sentinel_tunnel_build_info"), [
      `sentinel_tunnel_build_info{version="${denoJson.version}",deno="${Deno.version.deno}"} 1`,
    ]);
    assert.ok(sample(text, "sentinel_tunnel_process_resident_memory_bytes")! > 1_000_000);
    assert.ok(sample(text, "sentinel_tunnel_process_cpu_seconds_total")! > 0);
    const started = sample(text, "sentinel_tunnel_process_start_time_seconds")!;
    assert.ok(started > Date.now() / 1000 - 120 && started <= Date.now() / 1000, String(started));
    assert.equal(sample(text, `sentinel_tunnel_hook_runs_total{database="${name}"}`), 1);
    assert.equal(sample(text, `sentinel_tunnel_failover_in_progress{database="${name}"}`), 0);
    assert.deepEqual(
      samples(text, "sentinel_tunnel_clients_cut_total").map((l) => /reason="([^"]+)"/.exec(l)![1]),
      [...CUT_REASONS],
    );
    assert.deepEqual(
      samples(text, "sentinel_tunnel_sentinel_distrusted_total").sort(),
      deployment.sentinels.map((s) =>
        `sentinel_tunnel_sentinel_distrusted_total{database="${name}",sentinel="${s.address}"} 0`
      ).sort(),
    );
    assert.deepEqual(
      samples(text, "sentinel_tunnel_ready_connections").map((l) => l.replace(/ \d+$/, "")),
      [`sentinel_tunnel_ready_connections{${masterLabels}}`],
    );
    for (const labels of [masterLabels, readLabels]) {
      for (const direction of ["client_to_server", "server_to_client"]) {
        assert.ok(
          sample(text, `sentinel_tunnel_bytes_total{direction="${direction}",${labels}}`)! >= 0,
        );
      }
      // The harness's probe of the port may have waited: it connects before a master is known.
      const waited = sample(text, `sentinel_tunnel_client_wait_seconds_count{${labels}}`);
      assert.ok(waited !== undefined && waited <= 1, `${labels}: ${waited}`);
      assert.equal(
        sample(text, `sentinel_tunnel_client_wait_seconds_bucket{${labels},le="+Inf"}`),
        waited,
      );
    }
    assert.equal(samples(text, "sentinel_tunnel_bytes_total").length, 4);

    if (PROMTOOL) {
      const lint = await promtool(["check", "metrics"], { stdin: text });
      assert.equal(lint.code, 0, lint.output);
      assert.equal(lint.output.trim(), "", lint.output);
    } else {
      console.warn(`metrics_test.ts: ${NO_PROMTOOL}`);
    }

    // A failover: master_info names the new master only, once the tunnel has confirmed it.
    await using watch = await deployment.watchSwitch();
    await deployment.forceFailover();
    const { address } = await watch.next;
    const after = await eventually("master_info to name the new master", async () => {
      const text = await scrape();
      const named = `sentinel_tunnel_master_info{database="${name}",address="${address}"}`;
      if (sample(text, named) === 1) return text;
      throw new Error(
        `not ${address} yet: ${samples(text, "sentinel_tunnel_master_info").join(", ")}; ${
          samples(text, "sentinel_tunnel_failover_in_progress").join(", ")
        }`,
      );
    });
    assert.deepEqual(samples(after, "sentinel_tunnel_master_info"), [
      `sentinel_tunnel_master_info{database="${name}",address="${address}"} 1`,
    ]);
    assert.equal(sample(after, `sentinel_tunnel_master_changes_total{database="${name}"}`), 1);
    // The event loop is sampled from the first scrape on.
    assert.ok(sample(after, "sentinel_tunnel_event_loop_lag_seconds_count")! > 0);
  },
);
