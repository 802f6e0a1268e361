/**
 * Runs `redis-benchmark --csv` against a port on 127.0.0.1 and parses what it
 * prints. redis-benchmark 7.0 prints one header line, then one line per test:
 *
 * ```
 * "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
 * "SET","80000.00","0.321","0.080","0.287","0.551","0.855","1.167"
 * ```
 *
 * @module
 */

/** One test line of `redis-benchmark --csv`. Latencies are in milliseconds. */
export interface BenchmarkRow {
  /** The test name as redis-benchmark prints it, such as `"SET"`. */
  test: string;
  rps: number;
  avgMs: number;
  minMs: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Options for {@linkcode runRedisBenchmark}. */
export interface RunRedisBenchmarkOptions {
  /**
   * How long the run may take before redis-benchmark is killed.
   * @default {180000}
   */
  timeoutMs?: number;
  /**
   * Kills redis-benchmark when it aborts.
   * @default {undefined}
   */
  signal?: AbortSignal;
}

const COLUMNS = [
  "test",
  "rps",
  "avg_latency_ms",
  "min_latency_ms",
  "p50_latency_ms",
  "p95_latency_ms",
  "p99_latency_ms",
  "max_latency_ms",
] as const;

/** The command line {@linkcode runRedisBenchmark} runs, for the report. */
export function benchmarkCommand(port: number, args: readonly string[]): string[] {
  return ["redis-benchmark", "-h", "127.0.0.1", "-p", String(port), ...args, "--csv"];
}

/**
 * Runs redis-benchmark with `args` against 127.0.0.1:`port` and returns one
 * row per test.
 *
 * @throws {Error} when it fails, prints no test line, or runs out of time
 */
export async function runRedisBenchmark(
  port: number,
  args: readonly string[],
  options: RunRedisBenchmarkOptions = {},
): Promise<BenchmarkRow[]> {
  const timeoutMs = options.timeoutMs ?? 180_000;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([timeout, options.signal]) : timeout;
  const [program, ...rest] = benchmarkCommand(port, args);
  const output = await new Deno.Command(program!, {
    args: rest,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal,
  }).output();
  options.signal?.throwIfAborted();
  const decoder = new TextDecoder();
  const stdout = decoder.decode(output.stdout);
  const command = benchmarkCommand(port, args).join(" ");
  if (timeout.aborted) {
    throw new Error(`Timed out running "${command}": still running after ${timeoutMs} ms`);
  }
  const rows = output.success ? parseBenchmarkCsv(stdout) : [];
  if (rows.length === 0) {
    const detail = (decoder.decode(output.stderr) + stdout).trim().slice(-1000);
    throw new Error(
      `Cannot run "${command}": exit code ${output.code}: ${detail || "no output"}`,
    );
  }
  return rows;
}

/**
 * Parses the output of `redis-benchmark --csv`. Lines that are not test lines
 * (the header, warnings) are skipped.
 *
 * @throws {SyntaxError} when a test line has the wrong number of fields or a field is not a number
 */
export function parseBenchmarkCsv(text: string): BenchmarkRow[] {
  const rows: BenchmarkRow[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (!line.startsWith('"') || line.startsWith('"test"')) continue;
    const fields = [...line.matchAll(/"([^"]*)"/g)].map((match) => match[1] ?? "");
    if (fields.length !== COLUMNS.length) {
      throw new SyntaxError(
        `Invalid redis-benchmark line "${line}": expected ${COLUMNS.length} fields, got ${fields.length}`,
      );
    }
    const [test, ...numbers] = fields;
    const values = numbers.map(Number);
    if (values.some((value) => !Number.isFinite(value))) {
      throw new SyntaxError(`Invalid redis-benchmark line "${line}": a field is not a number`);
    }
    const [rps, avgMs, minMs, p50Ms, p95Ms, p99Ms, maxMs] = values as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    rows.push({ test: test!, rps, avgMs, minMs, p50Ms, p95Ms, p99Ms, maxMs });
  }
  return rows;
}
