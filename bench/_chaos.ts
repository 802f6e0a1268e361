/**
 * The benchmark's chaos section: the tunnel against the Sentinel-aware client
 * libraries and HAProxy, under the very same faults, counting acknowledged
 * writes that were lost, acknowledged by a node Sentinel had already replaced,
 * and the longest time without a successful write.
 *
 * The bed is tests/_network.ts's: hosts made of network namespaces, cuts that
 * drop packets silently. Three Redis nodes (r1..r3) and three Sentinels
 * (s1..s3) on hosts of their own (tests/_network_deployment.ts), and an
 * application host (app) that runs two tunnels (with and without the write
 * fence), HAProxy with the usual `role:master` check (bench/_haproxy.ts), and
 * one writer process per group (bench/_chaos_writer.ts), side by side.
 *
 * Faults run in a fixed order shuffled by a seed; between two faults the
 * section waits until every Sentinel agrees, every replica is linked, no sync
 * is in progress and every replica has caught up with the master's offset, so
 * that no fault promotes a replica still in a full sync (Redis would then
 * drop acknowledged writes whoever the client is). At the end every
 * acknowledged key is looked up on the final master.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import {
  canRunNamespaces,
  createTestBed,
  type Host,
  type HostProcess,
  startTunnelOn,
  type TestBed,
} from "../tests/_network.ts";
import {
  type BedRedis,
  type NetworkDeployment,
  parseInfo,
  startNetworkDeployment,
  subscribeToSwitches,
} from "../tests/_network_deployment.ts";
import { TUNNEL_UNDER_TEST } from "../tests/_tunnel.ts";
import { type HaproxyAvailability, haproxyConfig } from "./_haproxy.ts";
import type { ChaosWriterOptions } from "./_chaos_writer.ts";
import { markdownTable } from "./_report.ts";
import { sleep } from "./_wait.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const WRITER = "bench/_chaos_writer.ts";
const MASTER_NAME = "mymaster";

/** What `--only` takes, and the section's heading. */
export const CHAOS_NAME = "chaos";
export const CHAOS_HEADING = "## Under faults";
/** The seed when `--seed` is not given. */
export const DEFAULT_SEED = 21;

const HOSTS = ["app", "r1", "r2", "r3", "s1", "s2", "s3"] as const;
type HostName = typeof HOSTS[number];
const PORTS = { fenced: 6380, tunnel: 6381, haproxy: 6382 };
/** Sentinel's `down-after-milliseconds`, as in the network tests. */
const DOWN_AFTER_MS = 1000;
/** The fence's `afterMs`: above pollIntervalMs + sentinelConnectMs + sentinelReplyMs (2 s by default). */
const FENCE_AFTER_MS = 3000;
/** Every client's command timeout: above the tunnel's default `clientWaitMs` (5 s). */
const COMMAND_TIMEOUT_MS = 6000;
const LOOPS = 2;
const INTERVAL_MS = 20;
const RESYNC_TIMEOUT_MS = 120_000;

/** A writer group. */
export type GroupName = "tunnel_fence" | "tunnel" | "ioredis" | "node_redis" | "haproxy";

interface GroupSpec {
  name: GroupName;
  label: string;
  /** How it is configured, for the results. */
  detail: string;
  writer: Pick<ChaosWriterOptions, "driver" | "port">;
}

/** A fault, as the section runs it. */
export type FaultName =
  | "freeze"
  | "kill"
  | "failover"
  | "app_with_master"
  | "app_from_master"
  | "master_isolated"
  | "sentinel_isolated"
  | "app_isolated";

interface FaultSpec {
  name: FaultName;
  /** What happens, for the results. */
  title: string;
  /** Causes the fault, holds it `holdMs` where it is held, and ends it (heal, SIGCONT). */
  run(bed: Bed, holdMs: number): Promise<void>;
}

/** Options of {@linkcode runChaosSection}. */
export interface ChaosOptions {
  smoke: boolean;
  seed: number;
  haproxy: HaproxyAvailability;
  signal: AbortSignal;
  progress: (message: string) => void;
}

/** One fault as it ran; times are `Date.now()` values. */
export interface FaultRun {
  name: FaultName;
  title: string;
  /** The master when the fault began. */
  master: string;
  startAt: number;
  /** When the fault was ended (heal, SIGCONT, restart), or the failover asked for. */
  endAt: number;
  /** When the section had seen the deployment resynced, and the next fault could start. */
  settledAt: number;
  /** The first `+switch-master` during the fault's window, if any. */
  switchAt: number | undefined;
  switchTo: string | undefined;
}

/** One group's figures over one window (a fault, or the time before the first). */
export interface ChaosCell {
  acked: number;
  lost: number;
  /** Acknowledged by a node while Sentinel's latest `+switch-master` named another. */
  stale: number;
  /** The longest time in the window without an acknowledged write. */
  gapMs: number;
  /**
   * From the end of the fault (the heal, SIGCONT, the restart, or the failover
   * asked for) to the first acknowledged write after it; 0 before the faults.
   */
  recoveryMs: number;
  /** Writes that failed (an error or a timeout), for context. */
  failed: number;
}

/** The section: one run or more, each on a bed of its own. */
export interface ChaosSection {
  runs: ChaosRun[];
}

/** One run of the section. */
export interface ChaosRun {
  startedAt: Date;
  durationMs: number;
  seed: number;
  smoke: boolean;
  groups: { name: GroupName; label: string; detail: string }[];
  faults: FaultRun[];
  /** `cells[group][fault]`, plus `"before"` for the time before the first fault. */
  cells: Record<string, Record<string, ChaosCell>>;
  totals: Record<string, ChaosCell>;
  versions: Record<string, string>;
  finalMaster: string;
  haproxyNote: string | undefined;
  holdMs: number;
  settleMs: number;
}

/** Why the section cannot run here, or undefined. */
export function chaosUnavailable(): string | undefined {
  return canRunNamespaces();
}

// ---------------------------------------------------------------------------
// The faults

const FAULTS: readonly FaultSpec[] = [
  {
    name: "freeze",
    title: "master frozen (SIGSTOP), SIGCONT after the hold",
    async run(bed, holdMs) {
      const master = await bed.master();
      master.process.freeze();
      await sleep(holdMs, bed.signal);
      master.process.thaw();
    },
  },
  {
    name: "kill",
    title: "master killed (SIGKILL), restarted empty once Sentinel has switched",
    async run(bed, holdMs) {
      const master = await bed.master();
      const killedAt = Date.now();
      master.process.kill("SIGKILL");
      await master.process.status;
      await bed.waitSwitchAfter(killedAt, 30_000);
      await sleep(Math.max(0, holdMs - (Date.now() - killedAt)), bed.signal);
      await bed.restart(master);
    },
  },
  {
    name: "failover",
    title: "planned failover (`SENTINEL FAILOVER`)",
    async run(bed) {
      await bed.deployment.forceFailover();
    },
  },
  {
    name: "app_with_master",
    title: "partition: the app and the old master, away from the Sentinels and replicas",
    async run(bed, holdMs) {
      const master = await bed.master();
      const app = bed.host("app");
      const others = bed.all.filter((host) => host !== app && host !== master.host);
      await bed.bed.partition([app, master.host], others);
      await sleep(holdMs, bed.signal);
      await bed.bed.heal();
    },
  },
  {
    name: "app_from_master",
    title: "the app cut from the master alone",
    async run(bed, holdMs) {
      const master = await bed.master();
      await bed.bed.cut(bed.host("app"), master.host);
      await sleep(holdMs, bed.signal);
      await bed.bed.heal();
    },
  },
  {
    name: "master_isolated",
    title: "the master's host isolated",
    async run(bed, holdMs) {
      const master = await bed.master();
      await bed.bed.isolate(master.host);
      await sleep(holdMs, bed.signal);
      await bed.bed.heal();
    },
  },
  {
    name: "sentinel_isolated",
    title: "one Sentinel (s1) isolated",
    async run(bed, holdMs) {
      await bed.bed.isolate(bed.host("s1"));
      await sleep(holdMs, bed.signal);
      await bed.bed.heal();
    },
  },
  {
    name: "app_isolated",
    title: "the app's host isolated",
    async run(bed, holdMs) {
      await bed.bed.isolate(bed.host("app"));
      await sleep(holdMs, bed.signal);
      await bed.bed.heal();
    },
  },
];
/** The faults of a smoke run: a planned failover and the partition that the fence is for. */
const SMOKE_FAULTS: readonly FaultName[] = ["failover", "app_with_master"];

/** The faults in the order `seed` gives (a Fisher-Yates shuffle driven by mulberry32). */
export function faultOrder(seed: number, names: readonly FaultName[]): FaultName[] {
  let state = seed >>> 0;
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const order = [...names];
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

// ---------------------------------------------------------------------------
// The bed

/** Every `+switch-master` any Sentinel published, read in each Sentinel's own namespace. */
class SwitchLog implements AsyncDisposable {
  readonly events: { at: number; from: string; to: string; sentinel: string }[] = [];
  #subscribers: HostProcess[] = [];
  #readers: Promise<void>[] = [];

  constructor(sentinels: readonly BedRedis[], masterName: string) {
    for (const sentinel of sentinels) {
      const subscription = subscribeToSwitches(sentinel, {
        onSwitch: ({ name, seenAt: at, from, to, sentinel }) => {
          if (name === masterName) this.events.push({ at, from, to, sentinel });
        },
      });
      this.#subscribers.push(subscription.process);
      this.#readers.push(subscription.done);
    }
  }

  /**
   * The master Sentinel had named last at each time: a list of `[since, address]`,
   * from the first `+switch-master` that named each new address.
   */
  timeline(initial: string): [number, string][] {
    const timeline: [number, string][] = [[-Infinity, initial]];
    for (const event of this.events.toSorted((a, b) => a.at - b.at)) {
      if (event.to !== timeline.at(-1)![1]) timeline.push([event.at, event.to]);
    }
    return timeline;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.#subscribers.map((s) => s[Symbol.asyncDispose]()));
    await Promise.all(this.#readers);
  }
}

/** The bed, the deployment and the current node handles, for the faults. */
class Bed {
  constructor(
    readonly bed: TestBed<HostName>,
    readonly deployment: NetworkDeployment,
    readonly switches: SwitchLog,
    readonly signal: AbortSignal,
  ) {}

  /** The current handle of each node (a restarted node gets a new one). */
  get nodes(): readonly BedRedis[] {
    return this.deployment.nodes;
  }

  host(name: HostName): Host {
    return this.bed.hosts[name];
  }

  get all(): Host[] {
    return HOSTS.map((name) => this.bed.hosts[name]);
  }

  /** The node the Sentinels name (the first that answers). */
  async master(): Promise<BedRedis> {
    let last: unknown;
    for (const sentinel of this.deployment.sentinels) {
      try {
        const address = await this.deployment.masterOf(sentinel);
        const node = this.nodes.find((n) => n.address === address);
        if (node) return node;
        last = new Error(`Sentinel names ${address}, which is no node of the bed`);
      } catch (error) {
        last = error;
      }
    }
    throw new Error(`Cannot tell the master: ${errorMessage(last)}`);
  }

  async waitSwitchAfter(since: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.switches.events.some((event) => event.at >= since)) {
      if (Date.now() > deadline) {
        throw new Error(`No +switch-master within ${timeoutMs} ms of the fault`);
      }
      await sleep(100, this.signal);
    }
  }

  /** Starts `node` again on its host and port, empty (no persistence), as a master. */
  async restart(node: BedRedis): Promise<void> {
    await this.deployment.restartNode(node);
  }

  /**
   * Waits until the Sentinels agree on a healthy deployment (deployment.waitReady),
   * every other node is a replica of that master with its link up and no sync
   * in progress, and each replica's offset has reached the master's offset
   * read before it. Returns the master's address.
   */
  async waitResynced(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let problem = "";
    while (Date.now() < deadline) {
      try {
        // In slices, so that an interrupt is noticed.
        await this.deployment.waitReady(Math.min(10_000, Math.max(1000, deadline - Date.now())));
        const master = await this.master();
        const masterInfo = parseInfo(await master.cli("INFO", "replication"));
        if (masterInfo.get("role") !== "master") throw new Error(`${master.address} is no master`);
        const offset = Number(masterInfo.get("master_repl_offset"));
        const problems: string[] = [];
        for (const node of this.nodes) {
          if (node === master) continue;
          const info = parseInfo(await node.cli("INFO", "replication"));
          const of = `${info.get("master_host")}:${info.get("master_port")}`;
          if (info.get("role") !== "slave" || of !== master.address) {
            problems.push(`${node.address} is ${info.get("role")} of ${of}`);
          } else if (info.get("master_link_status") !== "up") {
            problems.push(`${node.address}: link ${info.get("master_link_status")}`);
          } else if (info.get("master_sync_in_progress") !== "0") {
            problems.push(`${node.address}: sync in progress`);
          } else if (Number(info.get("slave_repl_offset")) < offset) {
            problems.push(`${node.address}: offset ${info.get("slave_repl_offset")} < ${offset}`);
          }
        }
        if (problems.length === 0) return master.address;
        problem = problems.join("; ");
      } catch (error) {
        if (this.signal.aborted) throw error;
        problem = errorMessage(error);
      }
      await sleep(250, this.signal);
    }
    throw new Error(`The deployment did not resync within ${timeoutMs} ms: ${problem}`);
  }
}

// ---------------------------------------------------------------------------
// The run

/** An acknowledged write, as the writers record it. */
interface Ack {
  key: string;
  node: string;
  at: number;
}

/** Runs the section `repeat` times, each time on a new bed. */
export async function runChaosSection(
  options: ChaosOptions & { repeat: number },
): Promise<ChaosSection> {
  const runs: ChaosRun[] = [];
  for (let i = 1; i <= options.repeat; i++) {
    if (options.repeat > 1) options.progress(`chaos: run ${i}/${options.repeat}`);
    runs.push(await runChaosOnce(options));
  }
  return { runs };
}

/** One run: the bed, the groups, the faults, the read-back. */
async function runChaosOnce(options: ChaosOptions): Promise<ChaosRun> {
  const { progress, signal, smoke } = options;
  const startedAt = new Date();
  // At the start: the commit is the one whose code runs.
  const runVersions = await versions(options.haproxy);
  const holdMs = smoke ? 6000 : 12_000;
  const settleMs = smoke ? 3000 : 8000;
  const names = faultOrder(options.seed, FAULTS.map((fault) => fault.name))
    .filter((name) => !smoke || SMOKE_FAULTS.includes(name));
  progress(`chaos: faults in the order of seed ${options.seed}: ${names.join(", ")}`);

  progress("chaos: creating the bed (app, r1..r3, s1..s3)");
  await using bed = await createTestBed({ hosts: HOSTS });
  const { app, r1, r2, r3, s1, s2, s3 } = bed.hosts;
  progress("chaos: starting 3 Redis nodes and 3 Sentinels");
  await using deployment = await startNetworkDeployment({
    hosts: [r1, r2, r3],
    sentinelHosts: [s1, s2, s3],
    downAfterMs: DOWN_AFTER_MS,
    dir: bed.dir,
  });
  await deployment.waitReady();
  const initialMaster = deployment.nodes[0]!.address;
  await using switches = new SwitchLog(deployment.sentinels, MASTER_NAME);
  const state = new Bed(bed, deployment, switches, signal);

  const tunnelConfig = (port: number, fence: boolean) => ({
    sentinels: deployment.sentinelAddresses,
    ...(fence ? { fence: { afterMs: FENCE_AFTER_MS } } : {}),
    databases: [{ name: MASTER_NAME, port }],
  });
  progress(`chaos: starting the tunnels (${TUNNEL_UNDER_TEST}) on the app host`);
  await using fenced = await startTunnelOn(app, tunnelConfig(PORTS.fenced, true), {
    ports: [PORTS.fenced],
  });
  await using unfenced = await startTunnelOn(app, tunnelConfig(PORTS.tunnel, false), {
    ports: [PORTS.tunnel],
  });
  let haproxy: HostProcess | undefined;
  if (options.haproxy.available) {
    const configFile = `${bed.dir}/haproxy.cfg`;
    await Deno.writeTextFile(
      configFile,
      haproxyConfig(deployment.nodes.map((node) => node.address), {
        port: PORTS.haproxy,
        maxconn: 1000,
      }),
    );
    haproxy = app.run("haproxy", ["-db", "-f", configFile]);
  }
  await using _haproxy = haproxy;
  for (const port of [PORTS.fenced, PORTS.tunnel, ...(haproxy ? [PORTS.haproxy] : [])]) {
    await waitRoutesToIn(app, port, initialMaster, signal);
  }

  const groups = groupSpecs(options.haproxy);
  const writerOptions = (group: GroupSpec): ChaosWriterOptions => ({
    ...group.writer,
    sentinels: deployment.sentinelAddresses,
    masterName: MASTER_NAME,
    prefix: group.name,
    loops: LOOPS,
    intervalMs: INTERVAL_MS,
    commandTimeoutMs: COMMAND_TIMEOUT_MS,
    out: `${bed.dir}/${group.name}.jsonl`,
  });
  // Once, before five processes would each fetch the npm clients into one cache on a fresh machine.
  const cached = await new Deno.Command(Deno.execPath(), {
    args: ["cache", "--quiet", "--frozen", WRITER],
    cwd: ROOT,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!cached.success) {
    throw new Error(
      `Cannot fetch the writers' npm clients ("deno cache ${WRITER}"): ${
        new TextDecoder().decode(cached.stderr).trim()
      }`,
    );
  }
  progress(`chaos: starting the writers: ${groups.map((g) => g.name).join(", ")}`);
  const writers = groups.map((group) =>
    app.run(
      Deno.execPath(),
      ["run", "--quiet", "--allow-all", WRITER, JSON.stringify(writerOptions(group))],
      { cwd: ROOT, stderr: "piped" },
    )
  );
  const stderrs = writers.map((writer) => tail(writer.child.stderr));
  const files = groups.map((group) => writerOptions(group).out);
  try {
    await waitAllWriting(files, writers, signal);
  } catch (error) {
    throw new Error(`${errorMessage(error)}\n${await writerTails(groups, files, stderrs)}`);
  }
  const beforeAt = Date.now();
  await sleep(smoke ? 2000 : 5000, signal);

  const faults: FaultRun[] = [];
  for (const [i, name] of names.entries()) {
    const spec = FAULTS.find((fault) => fault.name === name)!;
    const master = (await state.master()).address;
    progress(`chaos: fault ${i + 1}/${names.length}: ${spec.title} (master ${master})`);
    const startAt = Date.now();
    await spec.run(state, holdMs);
    const endAt = Date.now();
    await sleep(settleMs, signal);
    const now = await state.waitResynced(RESYNC_TIMEOUT_MS);
    const settledAt = Date.now();
    const switched = switches.events.filter((e) => e.at >= startAt).sort((a, b) => a.at - b.at)[0];
    faults.push({
      name,
      title: spec.title,
      master,
      startAt,
      endAt,
      settledAt,
      switchAt: switched?.at,
      switchTo: switched?.to,
    });
    progress(
      `chaos: fault ${name} ended after ${((endAt - startAt) / 1000).toFixed(1)} s; ` +
        `${
          switched
            ? `switch to ${switched.to} at +${((switched.at - startAt) / 1000).toFixed(1)} s; `
            : "no switch; "
        }` +
        `resynced ${((settledAt - endAt) / 1000).toFixed(1)} s after its end, master ${now}`,
    );
  }

  progress("chaos: stopping the writers");
  for (const writer of writers) writer.kill("SIGTERM");
  await Promise.all(writers.map((writer) => writer.status));
  const finalMaster = await state.waitResynced(RESYNC_TIMEOUT_MS);
  const masterNode = state.nodes.find((node) => node.address === finalMaster)!;
  progress(`chaos: reading every key back from the final master ${finalMaster}`);
  const present = new Set(
    (await masterNode.host.exec(
      "redis-cli",
      ["-h", masterNode.host.ip, "-p", `${masterNode.port}`, "--scan"],
      { timeoutMs: 120_000 },
    )).split("\n").filter(Boolean),
  );

  const timeline = switches.timeline(initialMaster);
  const masterAt = (at: number) => {
    let current = timeline[0]![1];
    for (const [since, address] of timeline) if (since <= at) current = address;
    return current;
  };
  const windows: { name: string; start: number; ended: number; end: number }[] = [
    { name: "before", start: beforeAt, ended: beforeAt, end: faults[0]?.startAt ?? Date.now() },
    ...faults.map((fault, i) => ({
      name: fault.name,
      start: fault.startAt,
      ended: fault.endAt,
      end: faults[i + 1]?.startAt ?? fault.settledAt,
    })),
  ];
  const cells: Record<string, Record<string, ChaosCell>> = {};
  const totals: Record<string, ChaosCell> = {};
  for (const group of groups) {
    const { acks, failures } = await readRecords(writerOptions(group).out);
    cells[group.name] = {};
    for (const window of windows) {
      const inWindow = acks.filter((ack) => ack.at >= window.start && ack.at < window.end);
      cells[group.name]![window.name] = {
        acked: inWindow.length,
        lost: inWindow.filter((ack) => !present.has(ack.key)).length,
        stale: inWindow.filter((ack) => ack.node !== masterAt(ack.at)).length,
        gapMs: longestGap(inWindow.map((ack) => ack.at), window.start, window.end),
        recoveryMs: (inWindow.find((ack) => ack.at >= window.ended)?.at ?? window.end) -
          window.ended,
        failed: failures.filter((at) => at >= window.start && at < window.end).length,
      };
    }
    const all = Object.values(cells[group.name]!);
    totals[group.name] = {
      acked: sum(all.map((c) => c.acked)),
      lost: sum(all.map((c) => c.lost)),
      stale: sum(all.map((c) => c.stale)),
      gapMs: Math.max(...all.map((c) => c.gapMs)),
      recoveryMs: Math.max(...all.map((c) => c.recoveryMs)),
      failed: sum(all.map((c) => c.failed)),
    };
    const t = totals[group.name]!;
    progress(
      `chaos: ${group.name}: ${t.acked} acknowledged, ${t.lost} lost, ${t.stale} by a replaced master, ` +
        `longest gap ${(t.gapMs / 1000).toFixed(1)} s`,
    );
  }
  await fenced.stop();
  await unfenced.stop();
  // For a closer look at a run: the writers' records and the tunnels' logs, kept.
  const keep = Deno.env.get("CHAOS_KEEP_DIR");
  if (keep) {
    await Deno.mkdir(keep, { recursive: true });
    for (const file of files) await Deno.copyFile(file, `${keep}/${file.split("/").at(-1)}`);
    for (const [name, tunnel] of [["tunnel_fence", fenced], ["tunnel", unfenced]] as const) {
      await Deno.writeTextFile(
        `${keep}/${name}.log`,
        tunnel.logs.map((r) => JSON.stringify(r)).join("\n") + "\n",
      );
    }
    await Deno.writeTextFile(
      `${keep}/faults.json`,
      JSON.stringify({ faults, switches: switches.events }),
    );
  }
  return {
    startedAt,
    durationMs: Date.now() - startedAt.getTime(),
    seed: options.seed,
    smoke,
    groups: groups.map(({ name, label, detail }) => ({ name, label, detail })),
    faults,
    cells,
    totals,
    versions: runVersions,
    finalMaster,
    haproxyNote: options.haproxy.available ? undefined : options.haproxy.reason,
    holdMs,
    settleMs,
  };
}

function groupSpecs(haproxy: HaproxyAvailability): GroupSpec[] {
  const viaIoredis = "ioredis (plain host:port, its defaults: reconnect, offline queue, " +
    `resend of commands cut in flight; \`commandTimeout\` ${COMMAND_TIMEOUT_MS})`;
  const groups: GroupSpec[] = [
    {
      name: "tunnel_fence",
      label: "tunnel + fence",
      detail: `${viaIoredis} → the tunnel with \`"fence": { "afterMs": ${FENCE_AFTER_MS} }\`, ` +
        "other settings default",
      writer: { driver: "ioredis", port: PORTS.fenced },
    },
    {
      name: "tunnel",
      label: "tunnel",
      detail: `${viaIoredis} → the tunnel, default settings (no fence)`,
      writer: { driver: "ioredis", port: PORTS.tunnel },
    },
    {
      name: "ioredis",
      label: "ioredis Sentinel",
      detail: 'ioredis with `sentinels`, `role: "master"`, `failoverDetector: true` (reconnect ' +
        "on `+switch-master`), its other defaults, `commandTimeout` " + COMMAND_TIMEOUT_MS,
      writer: { driver: "ioredis-sentinel" },
    },
    {
      name: "node_redis",
      label: "node-redis Sentinel",
      detail: "node-redis `createSentinel` with `sentinelRootNodes` (the three Sentinels), its " +
        `defaults, \`commandOptions: { timeout: ${COMMAND_TIMEOUT_MS} }\``,
      writer: { driver: "node-redis-sentinel" },
    },
  ];
  if (haproxy.available) {
    groups.push({
      name: "haproxy",
      label: "HAProxy",
      detail: `${viaIoredis} → HAProxy ${haproxy.version}, the \`role:master\` tcp-check of ` +
        "bench/_haproxy.ts (every second, every node a server)",
      writer: { driver: "ioredis", port: PORTS.haproxy },
    });
  }
  return groups;
}

/** Waits until 4 new connections in a row to `port` on the app host reach `master`. */
async function waitRoutesToIn(
  app: Host,
  port: number,
  master: string,
  signal: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + 30_000;
  let inARow = 0;
  let last = "";
  while (inARow < 4) {
    if (Date.now() > deadline) {
      throw new Error(`Port ${port} on the app host does not lead to ${master}: ${last}`);
    }
    try {
      const lines = (await app.exec("redis-cli", [
        ...["-p", `${port}`, "CONFIG", "GET", "bind", "port"],
      ])).split("\n");
      const value = (name: string) => lines[lines.indexOf(name) + 1];
      last = `${value("bind")}:${value("port")}`;
      inARow = last === master ? inARow + 1 : 0;
    } catch (error) {
      last = errorMessage(error);
      inARow = 0;
    }
    if (inARow < 4) await sleep(250, signal);
  }
}

/** Waits until every writer's file holds an acknowledged write. */
async function waitAllWriting(
  files: readonly string[],
  writers: readonly HostProcess[],
  signal: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const writing = await Promise.all(files.map(async (file) => {
      try {
        return (await Deno.readTextFile(file)).includes('"ack"');
      } catch {
        return false;
      }
    }));
    if (writing.every(Boolean)) return;
    const exited = writers.findIndex((writer) => writer.exited);
    if (exited !== -1) throw new Error(`Writer ${files[exited]} exited`);
    if (Date.now() > deadline) {
      throw new Error(
        `No acknowledged write within 60 s from ${files.filter((_, i) => !writing[i]).join(", ")}`,
      );
    }
    await sleep(250, signal);
  }
}

/** The last output and records of each writer, for an error message. */
async function writerTails(
  groups: readonly GroupSpec[],
  files: readonly string[],
  stderrs: readonly { text: () => string }[],
): Promise<string> {
  const parts: string[] = [];
  for (const [i, group] of groups.entries()) {
    const records = await Deno.readTextFile(files[i]!).catch(() => "(no records)");
    parts.push(`${group.name}: ${stderrs[i]!.text().slice(-800)}\n${records.slice(-500)}`);
  }
  return parts.join("\n");
}

/** Keeps the last 4 KiB of a stream. */
function tail(stream: ReadableStream<Uint8Array>): { text: () => string } {
  let text = "";
  (async () => {
    try {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        text = (text + chunk).slice(-4096);
      }
    } catch { /* closed */ }
  })();
  return { text: () => text };
}

/** The acknowledged writes and the times of failed writes in a writer's file. */
async function readRecords(file: string): Promise<{ acks: Ack[]; failures: number[] }> {
  const acks: Ack[] = [];
  const failures: number[] = [];
  for (const line of (await Deno.readTextFile(file)).split("\n")) {
    if (line === "") continue;
    const record = JSON.parse(line) as Record<string, unknown>;
    if (typeof record.ack === "string") {
      acks.push({ key: record.ack, node: String(record.node), at: Number(record.at) });
    } else if (typeof record.error === "string" && !record.error.startsWith("client: ")) {
      failures.push(Number(record.at));
    }
  }
  return { acks, failures };
}

/** The longest stretch of [start, end) without one of `times`. */
export function longestGap(times: readonly number[], start: number, end: number): number {
  let longest = 0;
  let previous = start;
  for (const at of [...times].sort((a, b) => a - b)) {
    longest = Math.max(longest, at - previous);
    previous = at;
  }
  return Math.max(longest, end - previous);
}

async function versions(haproxy: HaproxyAvailability): Promise<Record<string, string>> {
  const imports = (JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)) as {
    imports: Record<string, string>;
  }).imports;
  const run = async (command: string, args: string[]) => {
    try {
      const { stdout } = await new Deno.Command(command, { args, stdout: "piped", stderr: "null" })
        .output();
      return new TextDecoder().decode(stdout).trim();
    } catch {
      return "unknown";
    }
  };
  return {
    tunnel: `${TUNNEL_UNDER_TEST} at ${await run("git", [
      "-C",
      ROOT,
      "rev-parse",
      "--short",
      "HEAD",
    ])}`,
    ioredis: imports.ioredis?.replace(/^npm:ioredis@/, "") ?? "unknown",
    "node-redis": imports.redis?.replace(/^npm:redis@/, "") ?? "unknown",
    haproxy: haproxy.available ? haproxy.version : "not used",
    redis: /v=(\S+)/.exec(await run("redis-server", ["--version"]))?.[1] ?? "unknown",
    deno: Deno.version.deno,
  };
}

// ---------------------------------------------------------------------------
// The report

function seconds(ms: number): string {
  return (ms / 1000).toFixed(1);
}

/** The section, as printed and as written to bench/RESULTS.md. */
export function chaosSectionMarkdown({ runs }: ChaosSection): string {
  const section = runs.at(-1)!;
  // One figure per run, in run order, where there are several.
  const perRun = (group: GroupName, figure: (run: ChaosRun) => string) =>
    runs.map((run) => run.totals[group] ? figure(run) : "-").join(" · ");
  const when = section.startedAt.toISOString().slice(0, 16).replace("T", " ");
  const command = section.smoke
    ? "`make bench-smoke`"
    : `\`make bench BENCH_ARGS="--only ${CHAOS_NAME}${
      section.seed === DEFAULT_SEED ? "" : ` --seed ${section.seed}`
    }${runs.length > 1 ? ` --repeat ${runs.length}` : ""}"\``;
  const duration = runs.length === 1
    ? `in ${seconds(section.durationMs)} s`
    : `${runs.length} times, each on a new bed, in ${
      runs.map((run) => seconds(run.durationMs)).join(", ")
    } s`;
  const v = section.versions;
  const header = ["", ...section.groups.map((group) => group.label)];
  const totals = markdownTable(
    ["", ...section.groups.map((group) => group.label)],
    [
      [
        "acknowledged writes",
        ...section.groups.map((g) => perRun(g.name, (run) => int(run.totals[g.name]!.acked))),
      ],
      [
        "acknowledged, then lost",
        ...section.groups.map((g) => perRun(g.name, (run) => int(run.totals[g.name]!.lost))),
      ],
      [
        "acknowledged by a replaced master",
        ...section.groups.map((g) => perRun(g.name, (run) => int(run.totals[g.name]!.stale))),
      ],
      [
        "longest time without a write (s)",
        ...section.groups.map((g) => perRun(g.name, (run) => seconds(run.totals[g.name]!.gapMs))),
      ],
      [
        "sum over faults of the longest gap (s)",
        ...section.groups.map((g) =>
          perRun(
            g.name,
            (run) => seconds(sum(run.faults.map((f) => run.cells[g.name]![f.name]!.gapMs))),
          )
        ),
      ],
      [
        "failed writes (errors, timeouts)",
        ...section.groups.map((g) => perRun(g.name, (run) => int(run.totals[g.name]!.failed))),
      ],
    ],
  );
  const perFault = markdownTable(
    ["fault", ...header.slice(1)],
    [
      ["before the first fault", "before"] as const,
      ...section.faults.map((f) => [f.name.replaceAll("_", " "), f.name] as const),
    ].map(([label, key]) => [
      label,
      ...section.groups.map((g) => {
        const c = section.cells[g.name]![key]!;
        return `${int(c.lost)} / ${int(c.stale)} / ${seconds(c.gapMs)} s`;
      }),
    ]),
  );
  const recovery = markdownTable(
    ["fault", ...header.slice(1)],
    section.faults.map((f) => [
      f.name.replaceAll("_", " "),
      ...section.groups.map((g) => seconds(section.cells[g.name]![f.name]!.recoveryMs)),
    ]),
  );
  const faultRows = markdownTable(
    ["#", "fault", "master", "held (s)", "+switch-master", "resynced after (s)"],
    section.faults.map((f, i) => [
      `${i + 1}`,
      f.title,
      f.master,
      f.name === "failover" ? "-" : seconds(f.endAt - f.startAt),
      f.switchAt === undefined ? "none" : `+${seconds(f.switchAt - f.startAt)} s → ${f.switchTo}`,
      seconds(f.settledAt - f.endAt),
    ]),
    [0, 1, 2],
  );
  return [
    CHAOS_HEADING,
    "",
    `The same faults for every client, side by side. Measured on ${when} UTC with ${command} ` +
    `${duration}; seed ${section.seed}. Versions: sentinel-tunnel ` +
    `${v.tunnel}, ioredis ${v.ioredis}, node-redis ${v["node-redis"]}, HAProxy ${v.haproxy}, ` +
    `Redis ${v.redis}, Deno ${v.deno}.`,
    "",
    "- Bed (tests/_network.ts): hosts made of network namespaces on one bridge; a cut drops " +
    "packets silently (no RST, no ICMP). Three Redis nodes (r1..r3, r1 the first master, no " +
    "persistence) and three Sentinels (s1..s3, quorum 2, `down-after-milliseconds` " +
    `${DOWN_AFTER_MS}, \`failover-timeout\` 10000) on hosts of their own, and the application ` +
    "host (app), where each group runs in its own process.",
    `- Each group: ${LOOPS} loops writing unique keys, one write every ${INTERVAL_MS} ms per ` +
    "loop, each write the transaction `MULTI`, `SET key key`, `CONFIG GET bind port`, `EXEC`, " +
    "so that the node that acknowledged the SET names itself in the same reply. A failed write is " +
    "not retried by the loop (the client may resend it itself).",
    ...section.groups.map((group) => `  - ${group.label}: ${group.detail}.`),
    ...(section.haproxyNote ? [`  - No HAProxy group: ${section.haproxyNote}.`] : []),
    `- Each fault is held ${seconds(section.holdMs)} s (a planned failover is only asked for), ` +
    `then ended; after ${seconds(section.settleMs)} s more, the next fault waits until every ` +
    "Sentinel agrees on a master, every other node is its replica with `master_link_status:up` " +
    "and no sync in progress, and has reached the master's replication offset: a fault during a " +
    "full resync would let Sentinel promote a replica still loading, and Redis itself would drop " +
    "acknowledged writes whoever the client is.",
    "- At the end the writers are stopped and every acknowledged key is looked up on the final " +
    `master (${section.finalMaster}), by \`SCAN\`. "Lost": acknowledged, not there. "By a ` +
    'replaced master": acknowledged by a node other than the one named by the latest ' +
    "`+switch-master` any Sentinel had published by then (each Sentinel subscribed to from its " +
    'own host). "Longest time without a write": the longest stretch of the fault\'s window ' +
    "(from its start to the next fault's start; for the last fault, to the moment the " +
    "deployment had resynced after it) without an acknowledged write. Writes are counted in " +
    "the window they were acknowledged in; those acknowledged after the last window, before " +
    "the writers stop, are in no window.",
    "",
    `Faults, in the order of the seed${runs.length > 1 ? " (the last run's times)" : ""}:`,
    "",
    faultRows,
    "",
    runs.length > 1 ? "Totals, one figure per run (run 1 · run 2 · ...):" : "Totals:",
    "",
    totals,
    "",
    `Per fault${runs.length > 1 ? ", the last run" : ""}: acknowledged then lost / ` +
    "acknowledged by a replaced master / longest time without a write:",
    "",
    perFault,
    "",
    `Per fault${runs.length > 1 ? ", the last run" : ""}: seconds from the end of the fault ` +
    "(the heal, SIGCONT, the empty restart; for " +
    "the planned failover, the `SENTINEL FAILOVER` call) to the first acknowledged write after it:",
    "",
    recovery,
    "",
    "What makes the groups differ (the mechanisms; the figures are in the tables above):",
    "",
    "- **Planned failover.** The tunnel cuts the old master's clients and holds new writes from " +
    "`+selected-slave` until it has confirmed the new master (the promotion window, README " +
    '"Failover safety"): about a second without writes, nothing lost. ioredis and node-redis ' +
    "go on writing to the old master until `+switch-master` reaches them; what the old master " +
    "acknowledged after the promotion began is lost when it rejoins as a replica (node-redis " +
    "also has writes acknowledged by it after the switch). HAProxy keeps its connections to " +
    "the old master, which acknowledges writes until Sentinel turns it into a replica.",
    "- **The app partitioned with the old master.** The tunnel without the fence, ioredis and " +
    "node-redis lose every Sentinel and keep writing to the old master, which the Sentinels " +
    "replace: those writes are lost at the heal. The fence closes once no majority of the " +
    `Sentinels has confirmed the master for \`afterMs\` (${FENCE_AFTER_MS} ms here) plus a ` +
    "check, cuts the clients and refuses writes until the heal: it loses only what the old " +
    "master acknowledged before it closed, and has no writes for the rest of the partition. " +
    "That is the trade the fence is for: availability for acknowledged writes. Some of what " +
    "it loses can come after the switch: with this bed's `down-after-milliseconds` of " +
    `${DOWN_AFTER_MS} the Sentinels promote a replica about as fast as the fence closes; with ` +
    "a `down-after-milliseconds` above `afterMs` plus a poll (Sentinel's default is 30 s) the " +
    "fence closes before any promotion.",
    "- **Master frozen, isolated or killed.** The tunnel cuts the clients when the promotion " +
    "begins and lets writes through once the new master is confirmed; ioredis (with " +
    "`failoverDetector`) and node-redis move on `+switch-master` or when their connection " +
    "fails. HAProxy leaves its connections on the frozen or isolated old master: when the old " +
    "master comes back it still says `master` and acknowledges their writes until Sentinel " +
    "demotes it, and they are lost.",
    "- **The app cut from the master, or its host isolated.** No failover, and no group can " +
    "write. After the heal the tunnel must confirm the master again before it routes a client " +
    "(a `ROLE` check on a new connection, up to `pollIntervalMs` plus `masterConnectMs` away, and, " +
    "with the fence, a majority of the Sentinels), while a client library redials its node " +
    "directly: the tunnel's first write after the heal comes about a second later.",
    "- **One Sentinel isolated.** Two of three still make a majority: nobody notices.",
  ].join("\n");
}

function int(value: number): string {
  return value.toLocaleString("en-US");
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
