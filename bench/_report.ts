/**
 * The benchmark's report: medians over rounds as ratios to direct Redis, and
 * the markdown that goes to stdout and to bench/RESULTS.md.
 *
 * @module
 */
import { median } from "../tests/_traffic.ts";
import type { FailoverSample } from "./_failover.ts";
import type { IdleResult } from "./_idle.ts";
import type { BenchmarkRow } from "./_redis_benchmark.ts";

/**
 * Where redis-benchmark connects: Redis itself, the tunnel, the Deno floor
 * (bench/floor_proxy.ts: a minimal Deno proxy straight to the master, what
 * Deno costs before any of the tunnel's code), or HAProxy; and, in the TLS section, a TLS-only master itself, or the tunnel
 * or HAProxy in front of it (the client side stays plaintext).
 */
export type TargetName =
  | "direct"
  | "tunnel"
  | "floor"
  | "haproxy"
  | "direct_tls"
  | "tunnel_tls"
  | "haproxy_tls";

/** How each target is named in tables. */
export const TARGET_LABELS: Readonly<Record<TargetName, string>> = {
  direct: "Direct",
  tunnel: "Tunnel",
  floor: "Deno floor",
  haproxy: "HAProxy",
  direct_tls: "Direct TLS",
  tunnel_tls: "Tunnel → TLS master",
  haproxy_tls: "HAProxy → TLS master",
};

/** The plaintext target on the same path as each TLS target. */
export const PLAINTEXT_OF: Readonly<Partial<Record<TargetName, TargetName>>> = {
  direct_tls: "direct",
  tunnel_tls: "tunnel",
  haproxy_tls: "haproxy",
};

/** Every redis-benchmark run of one workload. */
export interface WorkloadRuns {
  /** The name `--only` takes. */
  name: string;
  /** What the table shows. */
  title: string;
  /** The redis-benchmark arguments, without host, port and `--csv`. */
  args: readonly string[];
  runs: { round: number; target: TargetName; rows: BenchmarkRow[] }[];
}

/** One table row: one test of one workload, summarised over rounds. */
export interface SummaryRow {
  title: string;
  test: string;
  /** The median over rounds of direct Redis's requests per second. */
  directRps: number;
  /** By target: the median over rounds of its rps divided by direct's rps in the same round. */
  ratios: Map<TargetName, number>;
  /** By target other than direct and the floor: the same, divided by the Deno floor's rps. */
  floorRatios: Map<TargetName, number>;
  /** By target: the median over rounds of redis-benchmark's p50 latency, in ms. */
  p50Ms: Map<TargetName, number>;
  /** By target: the median over rounds of redis-benchmark's p99 latency, in ms. */
  p99Ms: Map<TargetName, number>;
}

/** The machine the numbers come from. */
export interface Machine {
  cpus: number;
  cpuModel: string;
  memory: string;
  os: string;
  kernel: string;
  openFiles: string;
  deno: string;
  redis: string;
  haproxy: string;
}

/** The idle-connection measurement of one target. */
export interface IdleReport {
  target: TargetName;
  result: IdleResult;
}

/** Summarises every test of every workload; targets other than direct get ratios. */
export function summarize(workloads: readonly WorkloadRuns[]): SummaryRow[] {
  const summary: SummaryRow[] = [];
  for (const workload of workloads) {
    const direct = workload.runs.filter((run) => run.target === "direct");
    const tests = direct[0]?.rows.map((row) => row.test) ?? [];
    const targets = [...new Set(workload.runs.map((run) => run.target))];
    for (const test of tests) {
      const rowOf = (run: WorkloadRuns["runs"][number]) => run.rows.find((r) => r.test === test);
      const row: SummaryRow = {
        title: workload.title,
        test,
        directRps: median(direct.map(rowOf).filter((r) => r !== undefined).map((r) => r.rps)),
        ratios: new Map(),
        floorRatios: new Map(),
        p50Ms: new Map(),
        p99Ms: new Map(),
      };
      for (const target of targets) {
        const runs = workload.runs.filter((run) => run.target === target);
        const rows = runs.map(rowOf).filter((r) => r !== undefined);
        if (rows.length === 0) continue;
        row.p50Ms.set(target, median(rows.map((r) => r.p50Ms)));
        row.p99Ms.set(target, median(rows.map((r) => r.p99Ms)));
        const ratios = runs.flatMap((run) => {
          const mine = rowOf(run);
          const base = direct.find((d) => d.round === run.round);
          const baseRow = base && rowOf(base);
          return mine && baseRow && baseRow.rps > 0 ? [mine.rps / baseRow.rps] : [];
        });
        if (ratios.length > 0) row.ratios.set(target, median(ratios));
        const toFloor = target === "direct" || target === "floor"
          ? undefined
          : ratioOverRounds(workload, test, target, "floor");
        if (toFloor !== undefined) row.floorRatios.set(target, toFloor);
      }
      summary.push(row);
    }
  }
  return summary;
}

/**
 * The throughput and latency table: each target's ratio to direct and, when
 * the Deno floor ran, each proxy's ratio to the floor.
 */
export function throughputTable(
  rows: readonly SummaryRow[],
  targets: readonly TargetName[],
): string {
  const others = targets.filter((target) => target !== "direct");
  const overFloor = targets.includes("floor") ? others.filter((target) => target !== "floor") : [];
  const header = [
    "Workload",
    "Test",
    "Direct rps",
    ...others.map((target) => `${TARGET_LABELS[target]} / direct`),
    ...overFloor.map((target) => `${TARGET_LABELS[target]} / floor`),
    ...targets.map((target) => `${TARGET_LABELS[target]} p50 / p99 ms`),
  ];
  const lines = rows.map((row) => [
    row.title,
    row.test,
    formatInteger(row.directRps),
    ...others.map((target) => formatRatio(row.ratios.get(target))),
    ...overFloor.map((target) => formatRatio(row.floorRatios.get(target))),
    ...targets.map((target) =>
      `${formatMs(row.p50Ms.get(target))} / ${formatMs(row.p99Ms.get(target))}`
    ),
  ]);
  return markdownTable(header, lines, [0, 1]);
}

/**
 * The median over rounds of `target`'s requests per second in `test` divided
 * by `baseline`'s in the same round; `undefined` when no round has both.
 */
export function ratioOverRounds(
  workload: WorkloadRuns,
  test: string,
  target: TargetName,
  baseline: TargetName,
): number | undefined {
  const ratios = workload.runs.flatMap((run) => {
    if (run.target !== target) return [];
    const mine = run.rows.find((row) => row.test === test);
    const base = workload.runs.find((other) =>
      other.target === baseline && other.round === run.round
    )?.rows.find((row) => row.test === test);
    return mine && base && base.rps > 0 ? [mine.rps / base.rps] : [];
  });
  return ratios.length > 0 ? median(ratios) : undefined;
}

/** The median over rounds of a field of `target`'s rows in `test`; `undefined` when it never ran. */
function medianOf(
  workload: WorkloadRuns,
  test: string,
  target: TargetName,
  field: (row: BenchmarkRow) => number,
): number | undefined {
  const values = workload.runs.flatMap((run) => {
    const row = run.target === target ? run.rows.find((r) => r.test === test) : undefined;
    return row ? [field(row)] : [];
  });
  return values.length > 0 ? median(values) : undefined;
}

/**
 * The TLS section's throughput table: one row per workload, test and target,
 * with three ratios, each a median over rounds of per-round ratios: to direct
 * plaintext Redis, to the same path in plaintext (what TLS costs on that
 * path), and to direct TLS.
 */
export function tlsThroughputTable(
  workloads: readonly WorkloadRuns[],
  targets: readonly TargetName[],
): string {
  const header = [
    "Workload",
    "Test",
    "Target",
    "rps",
    "÷ direct",
    "÷ same path, plaintext",
    "÷ direct TLS",
    "p50 / p99 ms",
  ];
  const lines: string[][] = [];
  for (const workload of workloads) {
    const tests = workload.runs[0]?.rows.map((row) => row.test) ?? [];
    for (const test of tests) {
      for (const [i, target] of targets.entries()) {
        const plaintext = PLAINTEXT_OF[target];
        const tls = plaintext !== undefined;
        lines.push([
          i === 0 ? workload.title : "",
          i === 0 ? test : "",
          TARGET_LABELS[target],
          formatInteger(medianOf(workload, test, target, (row) => row.rps) ?? NaN),
          formatRatio(ratioOverRounds(workload, test, target, "direct")),
          tls ? formatRatio(ratioOverRounds(workload, test, target, plaintext)) : "",
          tls ? formatRatio(ratioOverRounds(workload, test, target, "direct_tls")) : "",
          `${formatMs(medianOf(workload, test, target, (row) => row.p50Ms))} / ${
            formatMs(medianOf(workload, test, target, (row) => row.p99Ms))
          }`,
        ]);
      }
    }
  }
  return markdownTable(header, lines, [0, 1, 2]);
}

/** The times of one target's sequential new connections in one round, in ms. */
export interface ConnectRun {
  round: number;
  target: TargetName;
  times: number[];
}

/**
 * The TLS section's new-connection table. Per target: the median and p90 over
 * one round's sequential connections, each a median over rounds, and what TLS
 * adds to the median (median over rounds of the per-round difference to the
 * same path in plaintext); then, from the `-k 0` workload when it ran, the
 * machine time per connection at saturation (1000 / rps, ms) and what TLS
 * adds to it.
 */
export function connectTable(
  runs: readonly ConnectRun[],
  targets: readonly TargetName[],
  churn: WorkloadRuns | undefined,
): string {
  const tests = churn?.runs[0]?.rows.map((row) => row.test) ?? [];
  const perRound = (target: TargetName, stat: (times: number[]) => number) =>
    new Map(
      runs.filter((run) => run.target === target).map((run) => [run.round, stat(run.times)]),
    );
  const p50 = (times: number[]) => median(times);
  const p90 = (times: number[]) => percentileOf(times, 90);
  const medianOrUndefined = (values: number[]) => values.length > 0 ? median(values) : undefined;
  const msPerRequest = (target: TargetName, test: string) =>
    new Map(
      (churn?.runs ?? []).flatMap((run) => {
        const row = run.target === target ? run.rows.find((r) => r.test === test) : undefined;
        return row && row.rps > 0 ? [[run.round, 1000 / row.rps] as const] : [];
      }),
    );
  const difference = (mine: Map<number, number>, base: Map<number, number>) =>
    medianOrUndefined(
      [...mine].flatMap(([round, value]) => {
        const other = base.get(round);
        return other === undefined ? [] : [value - other];
      }),
    );
  const header = [
    "Target",
    "New connection + PING, median ms",
    "p90 ms",
    "TLS adds, ms",
    ...(tests.length > 0
      ? [
        `-k 0, 50 clients: ms per connection (1000 / rps), ${tests.join(" / ")}`,
        `TLS adds, ms, ${tests.join(" / ")}`,
      ]
      : []),
  ];
  const lines = targets.map((target) => {
    const plaintext = PLAINTEXT_OF[target];
    const medians = perRound(target, p50);
    const perTest = tests.map((test) => msPerRequest(target, test));
    return [
      TARGET_LABELS[target],
      formatMs(medianOrUndefined([...medians.values()])),
      formatMs(medianOrUndefined([...perRound(target, p90).values()])),
      plaintext === undefined ? "" : formatSignedMs(difference(medians, perRound(plaintext, p50))),
      ...(tests.length > 0
        ? [
          perTest.map((values) => formatMs(medianOrUndefined([...values.values()]))).join(" / "),
          plaintext === undefined
            ? ""
            : tests.map((test, i) =>
              formatSignedMs(difference(perTest[i]!, msPerRequest(plaintext, test)))
            ).join(" / "),
        ]
        : []),
    ];
  });
  return markdownTable(header, lines, [0]);
}

/** The RSS one idle connection costs, in KiB; `undefined` when none opened. */
export function idleKibPerConnection(result: IdleResult): number | undefined {
  return result.opened > 0 ? (result.rssAfterKb - result.rssBeforeKb) / result.opened : undefined;
}

/**
 * The idle-connection table; when the Deno floor was measured, the tunnel's
 * row also says how much more than the floor each connection costs it.
 */
export function idleTable(reports: readonly IdleReport[]): string {
  const floor = reports.find((report) => report.target === "floor");
  const floorKib = floor && idleKibPerConnection(floor.result);
  const formatKib = (kib: number | undefined) => kib === undefined ? "-" : `${kib.toFixed(1)} KiB`;
  const header = [
    "Target",
    "Connections open",
    "Answered PING afterwards",
    "RSS before",
    "RSS with all open",
    "RSS per connection",
    ...(floor ? ["Over the Deno floor, per connection"] : []),
  ];
  const lines = reports.map(({ target, result }) => {
    const kib = idleKibPerConnection(result);
    return [
      TARGET_LABELS[target],
      `${formatInteger(result.opened)} of ${formatInteger(result.requested)}`,
      formatInteger(result.answered),
      `${(result.rssBeforeKb / 1024).toFixed(1)} MiB`,
      `${(result.rssAfterKb / 1024).toFixed(1)} MiB`,
      formatKib(kib),
      ...(floor
        ? [
          target === "tunnel" && kib !== undefined && floorKib !== undefined
            ? `${kib - floorKib >= 0 ? "+" : "−"}${Math.abs(kib - floorKib).toFixed(1)} KiB`
            : "",
        ]
        : []),
    ];
  });
  return markdownTable(header, lines, [0]);
}

/** The failover table: per target, the median and every value. */
export function failoverTable(
  samples: readonly FailoverSample[],
  targets: readonly TargetName[],
): string {
  const header = [
    "Target",
    "Median ms",
    "Each failover, ms",
    "Writes acknowledged by the old master after the switch",
  ];
  const lines = targets.map((target) => {
    const values = samples.map((sample) => sample.recoveryMs.get(target));
    const known = values.filter((value) => value !== undefined);
    const missed = values.length - known.length;
    const stale = samples.map((sample) => sample.staleAcks.get(target) ?? 0);
    return [
      TARGET_LABELS[target],
      known.length > 0 && missed === 0 ? median(known).toFixed(1) : `${missed} missed`,
      values.map((value) => value === undefined ? "none" : value.toFixed(1)).join(", "),
      stale.join(", "),
    ];
  });
  return markdownTable(header, lines, [0, 2, 3]);
}

/** A bullet list describing the machine. */
export function machineSection(machine: Machine): string {
  return [
    `- CPU: ${machine.cpus} × ${machine.cpuModel}`,
    `- Memory: ${machine.memory}`,
    `- OS: ${machine.os}, kernel ${machine.kernel}`,
    `- Open files limit (soft / hard): ${machine.openFiles}`,
    `- Deno ${machine.deno}, Redis ${machine.redis}, HAProxy ${machine.haproxy}`,
  ].join("\n");
}

/** Collects what describes this machine from `/proc` and the installed tools. */
export async function describeMachine(haproxy: string): Promise<Machine> {
  const cpuinfo = await readOptional("/proc/cpuinfo");
  const meminfo = await readOptional("/proc/meminfo");
  const limits = await readOptional("/proc/self/limits");
  const osRelease = await readOptional("/etc/os-release");
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? NaN);
  const openFiles = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
  const redis = await commandOutput("redis-server", ["--version"]);
  return {
    cpus: navigator.hardwareConcurrency,
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown",
    memory: Number.isFinite(memKb) ? `${(memKb / 1024 / 1024).toFixed(1)} GiB` : "unknown",
    os: /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(osRelease)?.[1] ?? Deno.build.os,
    kernel: Deno.osRelease(),
    openFiles: openFiles ? `${openFiles[1]} / ${openFiles[2]}` : "unknown",
    deno: Deno.version.deno,
    redis: /v=(\S+)/.exec(redis)?.[1] ?? "unknown",
    haproxy,
  };
}

/** The heading of the section carried over from one RESULTS.md to the next. */
export const WHAT_WAS_TRIED = "## What was tried";

/**
 * The "What was tried" section of an existing results file, without its
 * heading, or `undefined` when the file or the section does not exist. It is
 * the last section the benchmark writes, so everything after the heading is
 * kept, whatever headings a person added below it.
 */
export async function readWhatWasTried(path: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  const start = text.split("\n").findIndex((line) => line.trim() === WHAT_WAS_TRIED);
  if (start === -1) return undefined;
  const body = text.split("\n").slice(start + 1).join("\n").trim();
  return body || undefined;
}

/**
 * The order of the results file's sections; a merged section that the file
 * lacks goes before the first section that comes after it here.
 */
const SECTION_ORDER = [
  "## Machine",
  "## Method",
  "## Throughput and latency",
  "## TLS",
  "## Over a 1 ms round trip",
  "## Idle connections",
  "## Failover",
  "## Under faults",
  WHAT_WAS_TRIED,
];

/**
 * `existing` (a results file) with each of `sections` (markdown, each
 * starting with its `## ` heading) in place of the section of the same
 * heading; a section the file lacks is inserted where {@linkcode SECTION_ORDER}
 * puts it. Everything else in the file is kept as it was.
 */
export function mergeSections(existing: string, sections: readonly string[]): string {
  const blocks: { heading: string; text: string }[] = [{ heading: "", text: "" }];
  let fenced = false;
  for (const line of existing.replace(/\n+$/, "").split("\n")) {
    if (line.startsWith("```")) fenced = !fenced;
    if (!fenced && line.startsWith("## ")) blocks.push({ heading: line.trim(), text: "" });
    blocks.at(-1)!.text += `${line}\n`;
  }
  for (const section of sections) {
    const heading = section.split("\n", 1)[0]!.trim();
    const text = `${section.replace(/\n+$/, "")}\n\n`;
    const at = blocks.findIndex((block) => block.heading === heading);
    if (at !== -1) {
      blocks[at]!.text = text;
      continue;
    }
    const rank = (name: string) => {
      const i = SECTION_ORDER.indexOf(name);
      return i === -1 ? SECTION_ORDER.length : i;
    };
    const before = blocks.findIndex((block) =>
      block.heading !== "" && rank(block.heading) > rank(heading)
    );
    blocks.splice(before === -1 ? blocks.length : before, 0, { heading, text });
  }
  const last = blocks.at(-1)!;
  last.text = `${last.text.replace(/\n+$/, "")}\n`;
  return blocks.map((block) => block.text).join("");
}

/** A markdown table; columns other than those in `left` are right-aligned. */
export function markdownTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  left: readonly number[] = [0],
): string {
  const widths = header.map((cell, i) =>
    Math.max(cell.length, 3, ...rows.map((row) => (row[i] ?? "").length))
  );
  const pad = (cell: string, i: number) =>
    left.includes(i) ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!);
  const line = (cells: readonly string[]) => `| ${cells.map(pad).join(" | ")} |`;
  const rule = widths.map((width, i) =>
    left.includes(i) ? `:${"-".repeat(width - 1)}` : `${"-".repeat(width - 1)}:`
  );
  return [line(header), `| ${rule.join(" | ")} |`, ...rows.map(line)].join("\n");
}

function formatInteger(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString("en-US") : "-";
}

function formatRatio(value: number | undefined): string {
  return value === undefined ? "-" : `${value.toFixed(2)}×`;
}

function formatMs(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value) ? "-" : value.toFixed(3);
}

function formatSignedMs(value: number | undefined): string {
  return value === undefined ? "-" : `${value >= 0 ? "+" : "−"}${Math.abs(value).toFixed(3)}`;
}

/** The percentile `p` (0 to 100) of `values`, nearest rank; NaN when empty. */
function percentileOf(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

async function readOptional(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "";
    throw error;
  }
}

async function commandOutput(program: string, args: string[]): Promise<string> {
  try {
    const output = await new Deno.Command(program, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
      signal: AbortSignal.timeout(10_000),
    }).output();
    return new TextDecoder().decode(output.stdout).trim();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "";
    throw error;
  }
}
