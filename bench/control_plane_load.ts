/**
 * Control-plane load of sentinel-tunnel: what its checks cost the Redis nodes
 * and the Sentinels while nothing happens, and what it logs around a planned
 * failover. Run it before and after a change to the control plane and compare
 * the reports.
 *
 * It starts its own throwaway deployment on loopback (one master, two
 * replicas, three Sentinels, with tests/_deployment.ts) and runs the tunnel as
 * a subprocess (tests/_tunnel.ts: `--log-format json --log-level debug`, stderr
 * captured, the admin API on a free port). Scenarios, one tunnel at a time:
 *
 * - **no tunnel**: the deployment alone, the baseline of what the Sentinels
 *   send to the nodes and to each other (INFO, PING, PUBLISH; never ROLE);
 * - **A, one port**: `mymaster` on one master port;
 * - **B, two master ports + a read port**: `mymaster` on master ports P1 and
 *   P2 and on a read port P3 (`"role": "replica"`).
 *
 * For each: once the tunnel is ready (its ports listen and `/readyz` answers
 * 200) and `--settle-seconds` have passed, it counts every command each
 * process receives during `--idle-seconds`:
 *
 * - data nodes: `CONFIG RESETSTAT`, then `INFO stats commandstats` at both
 *   ends of the window, the difference less the script's own INFO call;
 * - Sentinels: Redis 7.0 in Sentinel mode has neither `INFO commandstats` nor
 *   `CONFIG RESETSTAT` nor `MONITOR`, so the script attaches `strace` to each
 *   Sentinel for the window and decodes the RESP commands its clients send
 *   (`read` on the sockets it `accept`s and those `CLIENT LIST` shows), named
 *   as commandstats names them (`sentinel|get-master-addr-by-name`). Clients
 *   named `sentinel-*` are the peer Sentinels; every other one but the
 *   script's probe is the tunnel. `INFO stats` `total_commands_processed`
 *   at both ends cross-checks the total. Without a usable `strace` only that
 *   total is reported.
 *
 * From the tunnel's log it counts the lines that announce a confirmed master
 * ("master is", matched loosely) at startup and in the window, and the lines by
 * level; a line belongs to a phase by its timestamp, since the tunnel flushes
 * its log in batches (about every 100 ms). Then:
 *
 * - **C, planned failover**: `mymaster` on a master port and a read port;
 *   once ready, `SENTINEL FAILOVER mymaster` on a Sentinel, a wait until the
 *   tunnel has confirmed the new master (a "master is" line naming it, or
 *   `/readyz` naming it for every entry), 3 s more, then every log line
 *   written from the failover command on, and counts by level.
 *
 * It prints a Markdown report on stdout (progress goes to stderr). Everything
 * it starts is stopped at the end, also on failure and on Ctrl-C.
 *
 * ```sh
 * make bundle
 * RUST_BACKTRACE=0 .tools/bin/deno run --allow-all bench/control_plane_load.ts \
 *   --entry dist/sentinel-tunnel.js --idle-seconds 10
 * ```
 *
 * `--entry` picks the script the tunnel runs (overriding `SENTINEL_TUNNEL_ENTRY`;
 * `main.ts` when neither is set); a relative path is taken from the current
 * directory. The script uses nothing of `src/` beyond what the two test helpers
 * use, and matches log wording loosely, so that it runs unchanged after a
 * refactor.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { isAbsolute, resolve } from "node:path";
import {
  type Deployment,
  freePort,
  type RedisProcess,
  startDeployment,
} from "../tests/_deployment.ts";
import type { LogRecord, TunnelProcess } from "../tests/_tunnel.ts";

type TunnelModule = typeof import("../tests/_tunnel.ts");

const MASTER_NAME = "mymaster";
const READY_TIMEOUT_MS = 30_000;
const CONFIRM_TIMEOUT_MS = 30_000;
const AFTER_CONFIRM_MS = 3_000;
const POLL_MS = 100;
const STRACE_ATTACH_TIMEOUT_MS = 5_000;
/** "master is": the line that announces a confirmed master; loose, for reworded logs. */
const MASTER_IS = /\bmaster\s+is\b/i;
/** The name of the script's own connection to a Sentinel, left out of every count. */
const PROBE_NAME = "control-plane-load-probe";
/** Commands whose commandstats name includes the subcommand (`sentinel|master`). */
const CONTAINER_COMMANDS = new Set([
  "acl",
  "client",
  "cluster",
  "command",
  "config",
  "function",
  "latency",
  "memory",
  "module",
  "object",
  "pubsub",
  "script",
  "sentinel",
  "slowlog",
  "xinfo",
]);

interface Options {
  entry: string | undefined;
  idleSeconds: number;
  settleSeconds: number;
}

/** One database entry of the tunnel's config. */
interface DatabaseEntry {
  name: string;
  port: number;
  role: "master" | "replica";
}

/** Calls per command, named as commandstats names them (`role`, `sentinel|master`). */
type CommandCalls = Map<string, number>;

/** What one process received in the idle window. */
interface ProcessStats {
  label: string;
  address: string;
  role: "master" | "replica" | "sentinel";
  /**
   * Every command but the script's: from commandstats on a data node, decoded
   * from strace on a Sentinel (undefined there when strace is not usable).
   */
  calls: CommandCalls | undefined;
  /** `total_commands_processed` difference, less the script's own commands. */
  totalCommands: number;
  /** A Sentinel's traffic split by client, when traced. */
  sentinel?: SentinelTraffic;
  /** New connections in the window (data nodes; on Sentinels see `sentinel`). */
  connections: number | undefined;
}

/** A Sentinel's traced commands, split by who sent them. */
interface SentinelTraffic {
  /** From clients other than peer Sentinels and the probe: the tunnel. */
  clients: CommandCalls;
  /** From peer Sentinels (clients named `sentinel-*`). */
  peers: CommandCalls;
  /** Connections accepted in the window from clients that are not peers. */
  clientConnections: number;
  /** Of the traced commands, the probe's (left out of every other count). */
  probeCommands: number;
}

interface IdleScenario {
  title: string;
  databases: DatabaseEntry[];
  /** Seconds between the two snapshots of the data nodes. */
  windowSeconds: number;
  processes: ProcessStats[];
  /** Why the Sentinels' commands could not be decoded, when they could not. */
  traceProblem: string | undefined;
  /** Absent for the "no tunnel" scenario. */
  log?: {
    masterIsAtStartup: string[];
    masterIsInWindow: string[];
    levelsAtStartup: Map<string, number>;
    levelsInWindow: Map<string, number>;
    readyMs: number;
  };
}

interface LogLine {
  offsetMs: number | undefined;
  level: string;
  message: string;
}

interface FailoverScenario {
  title: string;
  databases: DatabaseEntry[];
  from: string;
  to: string;
  switchSeenMs: number | undefined;
  confirmedMs: number;
  confirmedBy: string;
  lines: LogLine[];
  levels: Map<string, number>;
}

function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      entry: { type: "string" },
      "idle-seconds": { type: "string", default: "10" },
      "settle-seconds": { type: "string", default: "2" },
    },
    strict: true,
    allowPositionals: false,
  });
  const number = (name: string, value: string): number => {
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed < 0) {
      throw new RangeError(`--${name} must be a non-negative number, not "${value}"`);
    }
    return parsed;
  };
  return {
    entry: values.entry,
    idleSeconds: number("idle-seconds", values["idle-seconds"]),
    settleSeconds: number("settle-seconds", values["settle-seconds"]),
  };
}

function progress(message: string): void {
  console.error(`[control-plane-load] ${message}`);
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Resolves after `ms`, or rejects with the signal's reason. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function add(calls: CommandCalls, name: string, n = 1): void {
  calls.set(name, (calls.get(name) ?? 0) + n);
}

/** `INFO` output: the `cmdstat_*` calls and the `key:value` fields. */
interface InfoSnapshot {
  calls: CommandCalls;
  fields: Map<string, string>;
}

function parseInfo(text: string): InfoSnapshot {
  const calls: CommandCalls = new Map();
  const fields = new Map<string, string>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    const stat = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
    if (stat?.[1] && stat[2]) {
      calls.set(stat[1].toLowerCase(), Number(stat[2]));
      continue;
    }
    const colon = line.indexOf(":");
    if (colon > 0 && !line.startsWith("#")) fields.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return { calls, fields };
}

function field(info: InfoSnapshot, name: string): number {
  const value = Number(info.fields.get(name));
  if (!Number.isFinite(value)) throw new Error(`INFO has no numeric field "${name}"`);
  return value;
}

// ---- Sentinel command tracing ----

/** The replay of one trace: the window runs from the probe's first INFO to its second. */
interface Replay {
  /** The probe's INFO commands seen so far: the window is open while this is 1. */
  infos: number;
}

/** One client connection of a traced Sentinel, and the commands it sent in the window. */
class TracedClient {
  name: string;
  /** Whether it was accepted in the window. */
  readonly accepted: boolean;
  readonly calls: CommandCalls = new Map();
  readonly #replay: Replay;
  #pending = "";

  constructor(name: string, accepted: boolean, replay: Replay) {
    this.name = name;
    this.accepted = accepted;
    this.#replay = replay;
  }

  /** Feeds bytes (as a latin1 string) read from the socket; counts every whole command. */
  feed(bytes: string): void {
    this.#pending += bytes;
    for (;;) {
      const parsed = parseCommand(this.#pending);
      if (parsed === undefined) return;
      this.#pending = this.#pending.slice(parsed.length);
      const [first, second, third] = parsed.args;
      if (first === undefined) continue;
      const command = first.toLowerCase();
      const name = CONTAINER_COMMANDS.has(command) && second !== undefined
        ? `${command}|${second.toLowerCase()}`
        : command;
      if (name === "client|setname" && third !== undefined) this.name = third;
      if (this.name === PROBE_NAME && name === "info") {
        this.#replay.infos++;
        continue;
      }
      if (this.#replay.infos === 1) add(this.calls, name);
    }
  }
}

/**
 * One command at the start of `buffer` (RESP multibulk or inline), with the
 * characters it takes; undefined while incomplete.
 */
function parseCommand(buffer: string): { args: string[]; length: number } | undefined {
  if (buffer.length === 0) return undefined;
  if (buffer[0] !== "*") {
    const end = buffer.indexOf("\n");
    if (end === -1) return undefined;
    const args = buffer.slice(0, end).replace(/\r$/, "").trim().split(/\s+/).filter(Boolean);
    return { args, length: end + 1 };
  }
  let at = buffer.indexOf("\r\n");
  if (at === -1) return undefined;
  const count = Number(buffer.slice(1, at));
  at += 2;
  const args: string[] = [];
  for (let i = 0; i < count; i++) {
    const lineEnd = buffer.indexOf("\r\n", at);
    if (lineEnd === -1) return undefined;
    if (buffer[at] !== "$") throw new Error(`Cannot decode RESP: ${JSON.stringify(buffer)}`);
    const size = Number(buffer.slice(at + 1, lineEnd));
    const start = lineEnd + 2;
    if (buffer.length < start + size + 2) return undefined;
    args.push(buffer.slice(start, start + size));
    at = start + size + 2;
  }
  return { args, length: at };
}

/** Decodes strace's `-xx` string (`\x2a\x31...`) to a latin1 string. */
function decodeHex(escaped: string): string {
  let out = "";
  for (let i = 0; i + 4 <= escaped.length; i += 4) {
    out += String.fromCharCode(parseInt(escaped.slice(i + 2, i + 4), 16));
  }
  return out;
}

const ACCEPT = /^accept4?\(.*\) = (\d+)$/;
const READ = /^read\((\d+), "((?:\\x[0-9a-f]{2})*)"(?:\.\.\.)?, \d+\) = (\d+)/;
const CLOSE = /^close\((\d+)\)/;

/**
 * Replays a Sentinel's strace output: `accept` opens a client, `close` ends
 * it, `read` on an open client is its input. `initial` are the clients that
 * `CLIENT LIST` showed (fd to name), taken as open from the start of the trace
 * unless their fd is accepted in it (then it was no client before, perhaps a
 * file Redis reads). Throws unless the probe's two INFO calls are in it.
 */
function replayTrace(text: string, initial: Map<number, string>): TracedClient[] {
  const lines = text.split("\n");
  const acceptedFds = new Set(
    lines.map((line) => ACCEPT.exec(line)?.[1]).filter(Boolean).map(Number),
  );
  const replay: Replay = { infos: 0 };
  const open = new Map<number, TracedClient>();
  for (const [fd, name] of initial) {
    if (!acceptedFds.has(fd)) open.set(fd, new TracedClient(name, false, replay));
  }
  const done: TracedClient[] = [];
  for (const line of lines) {
    const read = READ.exec(line);
    if (read?.[1] && read[2] !== undefined) {
      open.get(Number(read[1]))?.feed(decodeHex(read[2]));
      continue;
    }
    const accepted = ACCEPT.exec(line);
    if (accepted?.[1]) {
      const fd = Number(accepted[1]);
      const previous = open.get(fd);
      if (previous) done.push(previous);
      open.set(fd, new TracedClient("", replay.infos === 1, replay));
      continue;
    }
    const closed = CLOSE.exec(line);
    if (closed?.[1]) {
      const fd = Number(closed[1]);
      const client = open.get(fd);
      if (client) done.push(client);
      open.delete(fd);
    }
  }
  if (replay.infos !== 2) {
    throw new Error(`the trace holds ${replay.infos} of the probe's 2 INFO calls, not both`);
  }
  return [...done, ...open.values()];
}

/** A running `strace` on one Sentinel, from the probe's first INFO on. */
interface SentinelTrace {
  /** `INFO stats` at the start of the window. */
  start: InfoSnapshot;
  /** Ends the window (the probe's second INFO), detaches, and replays the trace. */
  stop(): Promise<{ end: InfoSnapshot; clients: TracedClient[] }>;
}

/** Whether `strace` can run here; its error when not. */
async function straceProblem(): Promise<string | undefined> {
  try {
    const output = await new Deno.Command("strace", {
      args: ["-V"],
      stdout: "null",
      stderr: "null",
    }).output();
    return output.success ? undefined : `strace -V exited with ${output.code}`;
  } catch (error) {
    return `strace is not usable: ${errorMessage(error)}`;
  }
}

/**
 * Attaches strace to `sentinel`, then opens the window: the probe names its
 * connection, reads `INFO stats` and lists the clients.
 */
async function traceSentinel(sentinel: RedisProcess, dir: string): Promise<SentinelTrace> {
  const output = `${dir}/strace-${sentinel.port}-${Date.now()}.txt`;
  const child = new Deno.Command("strace", {
    args: [
      "-p",
      String(sentinel.pid),
      "-s",
      "65536",
      "-xx",
      "-e",
      "trace=read,accept,accept4,close",
      "-e",
      "signal=none",
      "-o",
      output,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const attached = Promise.withResolvers<void>();
  let stderr = "";
  const reading = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr += chunk;
      if (/attached/i.test(stderr)) attached.resolve();
    }
  })();
  const detach = async (): Promise<void> => {
    try {
      child.kill("SIGINT");
    } catch { /* already gone */ }
    await child.status;
    await reading;
  };
  try {
    const timer = setTimeout(
      () => attached.reject(new Error(`strace did not attach in time: ${stderr.trim()}`)),
      STRACE_ATTACH_TIMEOUT_MS,
    );
    await Promise.race([
      attached.promise,
      child.status.then((status) => {
        throw new Error(`strace exited with ${status.code}: ${stderr.trim()}`);
      }),
    ]).finally(() => clearTimeout(timer));
    const opening = await probe(sentinel, ["INFO stats", "CLIENT LIST"]);
    const initial = new Map<number, string>();
    for (const line of opening.split("\n")) {
      const fd = / fd=(\d+)/.exec(line)?.[1];
      if (fd !== undefined) initial.set(Number(fd), / name=(\S*)/.exec(line)?.[1] ?? "");
    }
    return {
      start: parseInfo(opening),
      async stop() {
        let end: InfoSnapshot;
        try {
          end = parseInfo(await probe(sentinel, ["INFO stats"]));
        } finally {
          await detach();
        }
        const text = await Deno.readTextFile(output);
        await Deno.remove(output).catch(() => {});
        return { end, clients: replayTrace(text, initial) };
      },
    };
  } catch (error) {
    await detach();
    await Deno.remove(output).catch(() => {});
    throw error;
  }
}

/** Runs `commands` on one connection named {@linkcode PROBE_NAME}; returns redis-cli's output. */
async function probe(sentinel: RedisProcess, commands: string[]): Promise<string> {
  const child = new Deno.Command("redis-cli", {
    args: ["-h", "127.0.0.1", "-p", String(sentinel.port)],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(10_000),
  }).spawn();
  const writer = child.stdin.getWriter();
  const script = [`CLIENT SETNAME ${PROBE_NAME}`, ...commands].join("\n") + "\n";
  await writer.write(new TextEncoder().encode(script));
  await writer.close();
  const result = await child.output();
  const text = new TextDecoder().decode(result.stdout);
  if (!result.success || /^\(error\)|^ERR /m.test(text)) {
    throw new Error(
      `${commands.join(", ")} on ${sentinel.address} failed: ${text}${
        new TextDecoder().decode(result.stderr)
      }`,
    );
  }
  return text;
}

/** Splits a Sentinel's traced clients into the tunnel's, the peers' and the probe's. */
function splitTraffic(clients: readonly TracedClient[]): SentinelTraffic & { all: CommandCalls } {
  const traffic = {
    all: new Map() as CommandCalls,
    clients: new Map() as CommandCalls,
    peers: new Map() as CommandCalls,
    clientConnections: 0,
    probeCommands: 0,
  };
  for (const client of clients) {
    if (client.name === PROBE_NAME) {
      for (const [, n] of client.calls) traffic.probeCommands += n;
      continue;
    }
    const peer = client.name.startsWith("sentinel-");
    if (!peer && client.accepted) traffic.clientConnections++;
    for (const [name, n] of client.calls) {
      add(traffic.all, name, n);
      add(peer ? traffic.peers : traffic.clients, name, n);
    }
  }
  return traffic;
}

// ---- Measuring ----

/** The data nodes and Sentinels, labelled by their current role, the master first. */
async function labelledProcesses(
  deployment: Deployment,
): Promise<{ process: RedisProcess; label: string; role: ProcessStats["role"] }[]> {
  const master = await deployment.sentinelMaster();
  let replica = 0;
  const nodes = deployment.nodes.map((process) => {
    const isMaster = process.address === master;
    return {
      process,
      role: isMaster ? "master" as const : "replica" as const,
      label: isMaster ? "master" : `replica ${++replica}`,
    };
  });
  nodes.sort((a, b) => (a.role === "master" ? 0 : 1) - (b.role === "master" ? 0 : 1));
  const sentinels = deployment.sentinels.map((process, i) => ({
    process,
    role: "sentinel" as const,
    label: `sentinel ${i + 1}`,
  }));
  return [...nodes, ...sentinels];
}

/** Counts what every process receives over `seconds`; see the module doc for how. */
async function measureIdle(
  deployment: Deployment,
  seconds: number,
  signal: AbortSignal,
): Promise<
  {
    processes: ProcessStats[];
    windowSeconds: number;
    traceProblem: string | undefined;
    /** The window's bounds (epoch ms). */
    startedAt: number;
    endedAt: number;
  }
> {
  const processes = await labelledProcesses(deployment);
  const nodes = processes.filter(({ role }) => role !== "sentinel");
  const sentinels = processes.filter(({ role }) => role === "sentinel");
  let traceProblem = await straceProblem();

  await Promise.all(nodes.map(({ process }) => deployment.cli(process, "CONFIG", "RESETSTAT")));
  const info = async (process: RedisProcess) =>
    parseInfo(
      await deployment.cli(
        process,
        "INFO",
        ...(process.role === "node" ? ["stats", "commandstats"] : ["stats"]),
      ),
    );
  const beforeNodes = Promise.all(nodes.map(({ process }) => info(process)));
  const beforeSentinels = Promise.all(sentinels.map(async ({ process }) => {
    if (traceProblem === undefined) {
      try {
        const trace = await traceSentinel(process, deployment.dir);
        return { before: trace.start, trace };
      } catch (error) {
        traceProblem = `strace on ${process.address}: ${errorMessage(error)}`;
      }
    }
    return { before: await info(process), trace: undefined };
  }));
  const [nodeStart, sentinelStart] = await Promise.all([beforeNodes, beforeSentinels]);
  const startedAt = performance.now();
  const startedAtMs = Date.now();
  let slept: unknown;
  try {
    await sleep(seconds * 1000, signal);
  } catch (error) {
    slept = error; // The traces are stopped all the same.
  }
  const [nodeEnd, sentinelEnd] = await Promise.all([
    Promise.all(nodes.map(({ process }) => info(process))),
    Promise.all(sentinels.map(async ({ process }, i) => {
      const trace = sentinelStart[i]?.trace;
      if (trace) {
        try {
          const { end, clients } = await trace.stop();
          return { after: end, clients };
        } catch (error) {
          traceProblem = `strace on ${process.address}: ${errorMessage(error)}`;
        }
      }
      return { after: await info(process), clients: undefined };
    })),
  ]);
  if (slept !== undefined) throw slept;
  const windowSeconds = (performance.now() - startedAt) / 1000;
  const endedAtMs = Date.now();

  const stats: ProcessStats[] = nodes.map(({ process, label, role }, i) => {
    const before = nodeStart[i]!;
    const after = nodeEnd[i]!;
    const calls: CommandCalls = new Map();
    for (const [name, n] of after.calls) {
      // The first snapshot's INFO is counted once it has answered.
      const delta = n - (before.calls.get(name) ?? 0) - (name === "info" ? 1 : 0);
      if (delta > 0) calls.set(name, delta);
    }
    return {
      label,
      role,
      address: process.address,
      calls,
      totalCommands: field(after, "total_commands_processed") -
        field(before, "total_commands_processed") - 1,
      // The second snapshot's connection is counted before it answers.
      connections: field(after, "total_connections_received") -
        field(before, "total_connections_received") - 1,
    };
  });
  sentinels.forEach(({ process, label, role }, i) => {
    const { before } = sentinelStart[i]!;
    const { after, clients } = sentinelEnd[i]!;
    const traffic = clients ? splitTraffic(clients) : undefined;
    // The first INFO is counted once it has answered; the probe's commands in between are the
    // script's (on an untraced Sentinel there are none).
    const total = field(after, "total_commands_processed") -
      field(before, "total_commands_processed") - 1 - (traffic?.probeCommands ?? 0);
    stats.push({
      label,
      role,
      address: process.address,
      calls: traffic?.all,
      totalCommands: total,
      ...(traffic ? { sentinel: traffic } : {}),
      connections: undefined,
    });
  });
  return {
    processes: stats,
    windowSeconds,
    traceProblem,
    startedAt: startedAtMs,
    endedAt: endedAtMs,
  };
}

function tunnelConfig(
  deployment: Deployment,
  databases: DatabaseEntry[],
  adminPort: number,
): unknown {
  return {
    sentinels: deployment.sentinels.map((sentinel) => sentinel.address),
    bind: "127.0.0.1",
    admin: `127.0.0.1:${adminPort}`,
    databases,
  };
}

/** GET /readyz: the status and the parsed body; undefined when it does not answer. */
async function readyz(adminPort: number): Promise<{ status: number; body: unknown } | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${adminPort}/readyz`, {
      signal: AbortSignal.timeout(2000),
    });
    const text = await response.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
    return { status: response.status, body };
  } catch {
    return undefined;
  }
}

async function waitReady(
  tunnel: TunnelProcess,
  adminPort: number,
  signal: AbortSignal,
): Promise<void> {
  const deadline = performance.now() + READY_TIMEOUT_MS;
  let last = "no answer";
  while (performance.now() < deadline) {
    const answer = await readyz(adminPort);
    if (answer?.status === 200) return;
    if (answer) last = `${answer.status} ${JSON.stringify(answer.body)}`;
    await sleep(POLL_MS, signal);
  }
  throw new Error(
    `The tunnel was not ready within ${READY_TIMEOUT_MS} ms (last /readyz: ${last}); logs:\n${
      tunnel.logs.map((line) => JSON.stringify(line)).join("\n")
    }`,
  );
}

function messageOf(record: LogRecord): string {
  return typeof record.message === "string" ? record.message : JSON.stringify(record);
}

function levelOf(record: LogRecord): string {
  return typeof record.level === "string" ? record.level.toUpperCase() : "UNKNOWN";
}

function countLevels(records: readonly LogRecord[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const record of records) add(counts, levelOf(record));
  return counts;
}

/** The record's timestamp (epoch ms), when it has one. */
function timeOf(record: LogRecord): number | undefined {
  const stamp = record["@timestamp"] ?? record["timestamp"] ?? record["time"];
  const time = typeof stamp === "string"
    ? Date.parse(stamp)
    : typeof stamp === "number"
    ? stamp
    : NaN;
  return Number.isFinite(time) ? time : undefined;
}

/**
 * The records written in [`from`, `to`) (epoch ms). The tunnel flushes its log
 * every 100 ms or so, so a record's place in the list says little about when it
 * was written; its timestamp decides. A record without one is placed by its
 * index, against the list's length at `from` and at `to`.
 */
function writtenBetween(
  records: readonly LogRecord[],
  from: { time: number; index: number },
  to: { time: number; index: number },
): LogRecord[] {
  return records.filter((record, index) => {
    const time = timeOf(record);
    return time === undefined
      ? index >= from.index && index < to.index
      : time >= from.time && time < to.time;
  });
}

/** Whether `message` names `address` ("127.0.0.1:6380", not a longer port). */
function namesAddress(message: string, address: string): boolean {
  const escaped = address.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`${escaped}(?!\\d)`).test(message);
}

/** Starts the tunnel on `databases`, waits until it is ready, runs `body`, stops it. */
async function withTunnel<T>(
  tunnels: TunnelModule,
  deployment: Deployment,
  databases: DatabaseEntry[],
  signal: AbortSignal,
  body: (tunnel: TunnelProcess, adminPort: number, readyMs: number) => Promise<T>,
): Promise<T> {
  const adminPort = freePort();
  const started = performance.now();
  await using tunnel = await tunnels.startTunnel(tunnelConfig(deployment, databases, adminPort), {
    ports: [...databases.map((database) => database.port), adminPort],
  });
  await waitReady(tunnel, adminPort, signal);
  return await body(tunnel, adminPort, performance.now() - started);
}

async function idleScenario(
  tunnels: TunnelModule,
  deployment: Deployment,
  title: string,
  databases: DatabaseEntry[],
  options: Options,
  signal: AbortSignal,
): Promise<IdleScenario> {
  progress(`scenario "${title}"`);
  await deployment.waitReady();
  if (databases.length === 0) {
    await sleep(options.settleSeconds * 1000, signal);
    const { processes, windowSeconds, traceProblem } = await measureIdle(
      deployment,
      options.idleSeconds,
      signal,
    );
    return { title, databases, processes, windowSeconds, traceProblem };
  }
  return await withTunnel(tunnels, deployment, databases, signal, async (tunnel, _, readyMs) => {
    await sleep(options.settleSeconds * 1000, signal);
    const before = tunnel.logs.length;
    const measured = await measureIdle(deployment, options.idleSeconds, signal);
    const after = tunnel.logs.length;
    await tunnel.stop(); // Flushes its log.
    const startup = writtenBetween(tunnel.logs, { time: 0, index: 0 }, {
      time: measured.startedAt,
      index: before,
    });
    const window = writtenBetween(tunnel.logs, { time: measured.startedAt, index: before }, {
      time: measured.endedAt,
      index: after,
    });
    const masterIs = (records: LogRecord[]) =>
      records.map(messageOf).filter((message) => MASTER_IS.test(message));
    return {
      title,
      databases,
      processes: measured.processes,
      windowSeconds: measured.windowSeconds,
      traceProblem: measured.traceProblem,
      log: {
        masterIsAtStartup: masterIs(startup),
        masterIsInWindow: masterIs(window),
        levelsAtStartup: countLevels(startup),
        levelsInWindow: countLevels(window),
        readyMs,
      },
    };
  });
}

/** Whether /readyz names `address` as the master of every entry that names one. */
function readyzNames(body: unknown, address: string): boolean {
  if (typeof body !== "object" || body === null) return false;
  const databases: unknown = (body as { databases?: unknown }).databases;
  if (!Array.isArray(databases)) return false;
  const masters = databases.map((entry: unknown) =>
    typeof entry === "object" && entry !== null ? (entry as { master?: unknown }).master : undefined
  ).filter((master) => master !== undefined);
  return masters.length > 0 && masters.every((master) => master === address);
}

async function failoverScenario(
  tunnels: TunnelModule,
  deployment: Deployment,
  title: string,
  databases: DatabaseEntry[],
  signal: AbortSignal,
): Promise<FailoverScenario> {
  progress(`scenario "${title}"`);
  await deployment.waitReady();
  return await withTunnel(tunnels, deployment, databases, signal, async (tunnel, adminPort) => {
    const from = await deployment.sentinelMaster();
    await using watch = await deployment.watchSwitch();
    let sentPerf = performance.now();
    let switchSeenMs: number | undefined;
    const switched = watch.next.then((event) => {
      switchSeenMs = event.seenAt - sentPerf;
      return event.address;
    });
    switched.catch(() => {}); // Awaited below; this only keeps an early failure handled.
    const mark = tunnel.logs.length;
    const sentAt = Date.now();
    sentPerf = performance.now();
    await deployment.forceFailover();
    const to = await switched;
    progress(`+switch-master ${from} -> ${to}; waiting for the tunnel to confirm it`);
    const deadline = performance.now() + CONFIRM_TIMEOUT_MS;
    const since = { time: sentAt, index: mark };
    let confirmedBy: string | undefined;
    let confirmedMs: number | undefined;
    while (confirmedBy === undefined) {
      const now = { time: Infinity, index: Infinity };
      const line = writtenBetween(tunnel.logs, since, now).find((record) =>
        MASTER_IS.test(messageOf(record)) && namesAddress(messageOf(record), to)
      );
      if (line) {
        confirmedBy = `log line "${messageOf(line)}"`;
        const time = timeOf(line);
        confirmedMs = time === undefined ? performance.now() - sentPerf : time - sentAt;
        break;
      }
      const answer = await readyz(adminPort);
      if (answer?.status === 200 && readyzNames(answer.body, to)) {
        confirmedBy = '/readyz (no "master is" line naming it yet)';
        confirmedMs = performance.now() - sentPerf;
        break;
      }
      if (performance.now() > deadline) {
        throw new Error(
          `The tunnel did not confirm ${to} within ${CONFIRM_TIMEOUT_MS} ms; logs since the failover:\n${
            writtenBetween(tunnel.logs, since, now).map((record) => JSON.stringify(record)).join(
              "\n",
            )
          }`,
        );
      }
      await sleep(POLL_MS / 2, signal);
    }
    await sleep(AFTER_CONFIRM_MS, signal);
    const until = { time: Date.now(), index: tunnel.logs.length };
    await tunnel.stop(); // Flushes its log.
    const records = writtenBetween(tunnel.logs, since, until);
    return {
      title,
      databases,
      from,
      to,
      switchSeenMs,
      confirmedMs: confirmedMs ?? NaN,
      confirmedBy,
      lines: records.map((record) => {
        const time = timeOf(record);
        return {
          offsetMs: time === undefined ? undefined : time - sentAt,
          level: levelOf(record),
          message: messageOf(record),
        };
      }),
      levels: countLevels(records),
    };
  });
}

// ---- Report ----

function sum(values: Iterable<number>): number {
  let total = 0;
  for (const value of values) total += value;
  return total;
}

function perSecond(calls: number, seconds: number): string {
  return seconds > 0 ? (calls / seconds).toFixed(2) : "-";
}

const isSentinelCommand = (name: string) => name === "sentinel" || name.startsWith("sentinel|");

function total(calls: CommandCalls | undefined, keep: (name: string) => boolean = () => true) {
  return calls === undefined ? undefined : sum(
    [...calls].filter(([name]) => keep(name)).map(([, n]) => n),
  );
}

function formatCalls(
  calls: CommandCalls | undefined,
  keep: (name: string) => boolean = () => true,
): string {
  if (calls === undefined) return "?";
  const entries = [...calls].filter(([name]) => keep(name)).sort(([a], [b]) => a.localeCompare(b));
  return entries.length === 0 ? "none" : entries.map(([name, n]) => `${name}=${n}`).join(", ");
}

function mergeCalls(calls: readonly (CommandCalls | undefined)[]): CommandCalls | undefined {
  if (calls.some((entry) => entry === undefined)) return undefined;
  const merged: CommandCalls = new Map();
  for (const entry of calls) for (const [name, n] of entry ?? []) add(merged, name, n);
  return merged;
}

function formatLevels(levels: Map<string, number>): string {
  const entries = [...levels].sort(([a], [b]) => a.localeCompare(b));
  return entries.length === 0 ? "none" : entries.map(([level, n]) => `${level} ${n}`).join(", ");
}

function formatDatabases(databases: readonly DatabaseEntry[]): string {
  if (databases.length === 0) return "tunnel not running";
  return databases.map((d) => `\`${d.name}\` ${d.role} port ${d.port}`).join("; ");
}

function cell(text: string | number | undefined): string {
  return text === undefined ? "?" : String(text).replaceAll("|", "\\|").replaceAll("\n", " ");
}

function idleSection(scenario: IdleScenario): string {
  const seconds = scenario.windowSeconds;
  const master = scenario.processes.find((p) => p.role === "master");
  const replicas = scenario.processes.filter((p) => p.role === "replica");
  const sentinels = scenario.processes.filter((p) => p.role === "sentinel");
  const masterRole = master?.calls?.get("role") ?? 0;
  const replicaRole = replicas.map((p) => p.calls?.get("role") ?? 0);
  const lines = [
    `## ${scenario.title}`,
    "",
    `Config: ${formatDatabases(scenario.databases)}. Window: ${seconds.toFixed(1)} s.`,
    "",
    "| process | address | ROLE | SENTINEL cmds | all cmds | new conns | commands (Sentinels: from non-peer clients, i.e. the tunnel) |",
    "| --- | --- | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const p of scenario.processes) {
    const isSentinel = p.role === "sentinel";
    lines.push(
      `| ${p.label} | ${p.address} | ${cell(p.calls?.get("role") ?? (p.calls ? 0 : undefined))} | ${
        isSentinel ? cell(total(p.calls, isSentinelCommand)) : "-"
      } | ${p.totalCommands} | ${
        cell(isSentinel ? p.sentinel?.clientConnections : p.connections)
      } | ${cell(formatCalls(isSentinel ? p.sentinel?.clients : p.calls))} |`,
    );
  }
  const allSentinel = mergeCalls(sentinels.map((p) => p.calls));
  const fromClients = mergeCalls(sentinels.map((p) => p.sentinel?.clients));
  const fromPeers = mergeCalls(sentinels.map((p) => p.sentinel?.peers));
  const sentinelTotal = total(allSentinel, isSentinelCommand);
  const traced = sum(sentinels.map((p) => total(p.calls) ?? 0));
  const counted = sum(sentinels.map((p) => p.totalCommands));
  lines.push(
    "",
    `- ROLE on the master: **${masterRole}** (${
      perSecond(masterRole, seconds)
    }/s); on the replicas: ${replicaRole.join(" + ")} = **${sum(replicaRole)}** (${
      perSecond(sum(replicaRole), seconds)
    }/s).`,
    `- SENTINEL commands, 3 Sentinels together: **${cell(sentinelTotal)}** (${
      sentinelTotal === undefined ? "?" : perSecond(sentinelTotal, seconds)
    }/s): ${cell(formatCalls(allSentinel, isSentinelCommand))}.`,
    `- Every command the Sentinels got from non-peer clients (the tunnel), together: ${
      cell(formatCalls(fromClients))
    }; new connections: ${
      cell(
        sentinels.some((p) => p.sentinel === undefined)
          ? undefined
          : sum(sentinels.map((p) => p.sentinel?.clientConnections ?? 0)),
      )
    }.`,
    `- From peer Sentinels, together: ${cell(formatCalls(fromPeers))}.`,
    scenario.traceProblem === undefined
      ? `- Cross-check: commands decoded on the Sentinels ${traced}, INFO total_commands_processed ${counted}.`
      : `- Sentinel commands not decoded (${scenario.traceProblem}); INFO total_commands_processed on the Sentinels: ${counted}.`,
  );
  if (scenario.log) {
    const log = scenario.log;
    lines.push(
      `- Tunnel ready (ports listening, /readyz 200) ${Math.round(log.readyMs)} ms after spawn.`,
      `- "master is" lines at startup: **${log.masterIsAtStartup.length}**; in the window: ${log.masterIsInWindow.length}.`,
      ...log.masterIsAtStartup.map((message) => `  - \`${message}\``),
      `- Log lines by level, startup: ${formatLevels(log.levelsAtStartup)}; in the window: ${
        formatLevels(log.levelsInWindow)
      }.`,
    );
  }
  return lines.join("\n");
}

function failoverSection(scenario: FailoverScenario): string {
  const warnings = scenario.lines.filter((line) => /^WARN/.test(line.level));
  const ms = (value: number | undefined) => value === undefined ? "?" : `${Math.round(value)}`;
  const lines = [
    `## ${scenario.title}`,
    "",
    `Config: ${formatDatabases(scenario.databases)}.`,
    "",
    `- \`SENTINEL FAILOVER ${MASTER_NAME}\`: ${scenario.from} -> ${scenario.to}; +switch-master seen at +${
      ms(scenario.switchSeenMs)
    } ms; the tunnel confirmed the new master at +${ms(scenario.confirmedMs)} ms, by ${
      cell(scenario.confirmedBy)
    }; then ${AFTER_CONFIRM_MS / 1000} s more.`,
    `- Log lines from the failover command on: **${scenario.lines.length}**; by level: ${
      formatLevels(scenario.levels)
    }.`,
    `- Warning lines: **${warnings.length}**`,
    ...warnings.map((line) => `  - \`${line.message}\``),
    "",
    "| +ms | level | message |",
    "| ---: | --- | --- |",
    ...scenario.lines.map((line) =>
      `| ${ms(line.offsetMs)} | ${line.level} | ${cell(line.message)} |`
    ),
  ];
  return lines.join("\n");
}

async function redisVersion(): Promise<string> {
  try {
    const output = await new Deno.Command("redis-server", { args: ["--version"] }).output();
    const text = new TextDecoder().decode(output.stdout);
    return /v=(\S+)/.exec(text)?.[1] ?? text.trim();
  } catch {
    return "unknown";
  }
}

// ---- Main ----

async function run(options: Options, entry: string, signal: AbortSignal): Promise<string> {
  // tests/_tunnel.ts reads SENTINEL_TUNNEL_ENTRY when it is loaded, so load it only now.
  const tunnels: TunnelModule = await import("../tests/_tunnel.ts");
  progress(`entry ${tunnels.ENTRY}; starting the deployment`);
  await using deployment = await startDeployment({ masterName: MASTER_NAME, signal });
  const [p1, p2, p3, p4, p5] = [freePort(), freePort(), freePort(), freePort(), freePort()];
  const master = (port: number): DatabaseEntry => ({ name: MASTER_NAME, port, role: "master" });
  const replica = (port: number): DatabaseEntry => ({ name: MASTER_NAME, port, role: "replica" });

  const idle: IdleScenario[] = [];
  idle.push(await idleScenario(tunnels, deployment, "No tunnel (baseline)", [], options, signal));
  idle.push(await idleScenario(tunnels, deployment, "A: one port", [master(p1)], options, signal));
  idle.push(
    await idleScenario(
      tunnels,
      deployment,
      "B: two master ports + a read port",
      [master(p1), master(p2), replica(p3)],
      options,
      signal,
    ),
  );
  const failover = await failoverScenario(
    tunnels,
    deployment,
    "C: planned failover with a master port and a read port",
    [master(p4), replica(p5)],
    signal,
  );

  const header = [
    "# Control-plane load",
    "",
    `Entry: \`${entry}\`. Redis ${await redisVersion()}. Deployment: 1 master, 2 replicas, ` +
    `3 Sentinels on 127.0.0.1 (down-after 1000 ms). Tunnel: default timeouts (pollIntervalMs ` +
    `1000), \`--log-format json --log-level debug\`, admin API on. Window ` +
    `${options.idleSeconds} s, from ${options.settleSeconds} s after the tunnel is ready. ` +
    `${new Date().toISOString()}.`,
    "",
    "Counts cover the window only and leave out the script's own commands. Data nodes: " +
    "`INFO commandstats`. Sentinels (Redis 7.0 Sentinel has no commandstats): commands decoded " +
    "from `strace` of each Sentinel, split into peer Sentinels (clients named `sentinel-*`) and " +
    "the rest, the tunnel; `INFO stats` total_commands_processed cross-checks the sum.",
  ].join("\n");
  return [header, ...idle.map(idleSection), failoverSection(failover)].join("\n\n") + "\n";
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(Deno.args);
  } catch (error) {
    console.error(`control_plane_load: ${errorMessage(error)}`);
    console.error(
      "usage: deno run --allow-all bench/control_plane_load.ts [--entry PATH] [--idle-seconds 10] [--settle-seconds 2]",
    );
    return 2;
  }
  if (options.entry !== undefined) {
    const entry = isAbsolute(options.entry) ? options.entry : resolve(Deno.cwd(), options.entry);
    Deno.env.set("SENTINEL_TUNNEL_ENTRY", entry);
  }
  const entry = Deno.env.get("SENTINEL_TUNNEL_ENTRY") ?? "main.ts";
  const interrupt = new AbortController();
  const onSignal = () => interrupt.abort(new Error("interrupted"));
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    console.log(await run(options, entry, interrupt.signal));
    return 0;
  } catch (error) {
    console.error(`control_plane_load failed: ${error instanceof Error ? error.stack : error}`);
    return 1;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

if (import.meta.main) Deno.exit(await main());
