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
 * Where redis-benchmark connects: Redis itself, the tunnel, the tunnel with
 * large fixed buffers (to check that adaptive buffers cost nothing), or HAProxy.
 */
export type TargetName = "direct" | "tunnel" | "tunnel_fixed" | "haproxy";

/** How each target is named in tables. */
export const TARGET_LABELS: Readonly<Record<TargetName, string>> = {
  direct: "Direct",
  tunnel: "Tunnel",
  tunnel_fixed: "Tunnel, fixed 64 KiB buffers",
  haproxy: "HAProxy",
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
      }
      summary.push(row);
    }
  }
  return summary;
}

/** The throughput and latency table. */
export function throughputTable(
  rows: readonly SummaryRow[],
  targets: readonly TargetName[],
): string {
  const others = targets.filter((target) => target !== "direct");
  const header = [
    "Workload",
    "Test",
    "Direct rps",
    ...others.map((target) => `${TARGET_LABELS[target]} / direct`),
    ...targets.map((target) => `${TARGET_LABELS[target]} p50 / p99 ms`),
  ];
  const lines = rows.map((row) => [
    row.title,
    row.test,
    formatInteger(row.directRps),
    ...others.map((target) => formatRatio(row.ratios.get(target))),
    ...targets.map((target) =>
      `${formatMs(row.p50Ms.get(target))} / ${formatMs(row.p99Ms.get(target))}`
    ),
  ]);
  return markdownTable(header, lines, [0, 1]);
}

/** The idle-connection table. */
export function idleTable(reports: readonly IdleReport[]): string {
  const header = [
    "Target",
    "Connections open",
    "Answered PING afterwards",
    "RSS before",
    "RSS with all open",
    "RSS per connection",
  ];
  const lines = reports.map(({ target, result }) => [
    TARGET_LABELS[target],
    `${formatInteger(result.opened)} of ${formatInteger(result.requested)}`,
    formatInteger(result.answered),
    `${(result.rssBeforeKb / 1024).toFixed(1)} MiB`,
    `${(result.rssAfterKb / 1024).toFixed(1)} MiB`,
    result.opened > 0
      ? `${((result.rssAfterKb - result.rssBeforeKb) / result.opened).toFixed(1)} KiB`
      : "-",
  ]);
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
  return value === undefined ? "-" : value.toFixed(3);
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
