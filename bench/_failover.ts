/**
 * Failover as a client sees it: writers run through each proxy while Sentinel
 * is told to fail over, and the time from `+switch-master` (as a Sentinel
 * subscriber reads it) to the first write the new master acknowledges through
 * that proxy is measured.
 *
 * @module
 */
import type { Deployment } from "../tests/_deployment.ts";
import { type Ack, runWriters } from "../tests/_traffic.ts";
import { sleep } from "./_wait.ts";

/** A proxy port that writers go through. */
export interface FailoverTarget {
  /** The name in the report, such as `"tunnel"`. */
  name: string;
  port: number;
  /**
   * How long after `+switch-master` to wait for a write acknowledged by the
   * new master, in milliseconds.
   */
  maxWaitMs: number;
}

/** One failover, as each target saw it. */
export interface FailoverSample {
  /** The port of the master before the failover. */
  from: number;
  /** The port of the master Sentinel switched to. */
  to: number;
  /**
   * By target name: milliseconds from `+switch-master` to the first write
   * acknowledged by the new master, or `undefined` when none came within the
   * target's `maxWaitMs`. Negative when the proxy reached the new master
   * before the subscriber read the message.
   */
  recoveryMs: Map<string, number | undefined>;
  /** By target name: writes acknowledged by the old master after `+switch-master`. */
  staleAcks: Map<string, number>;
}

/** Options for {@linkcode measureFailover}. */
export interface MeasureFailoverOptions {
  /**
   * Concurrent writer connections per target.
   * @default {4}
   */
  clients?: number;
  /**
   * Aborts the measurement; the writers stop.
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * Runs writers through every target, forces a failover with `SENTINEL
 * FAILOVER`, and waits until each target's writers reach the new master (or
 * its `maxWaitMs` passes). The deployment must be ready and converged.
 *
 * @throws {Error} when the writers cannot write before the failover, or no `+switch-master` comes
 */
export async function measureFailover(
  deployment: Deployment,
  targets: readonly FailoverTarget[],
  options: MeasureFailoverOptions = {},
): Promise<FailoverSample> {
  const { clients = 4, signal } = options;
  const from = portOf(await deployment.sentinelMaster());
  const stop = new AbortController();
  const writerSignal = signal ? AbortSignal.any([stop.signal, signal]) : stop.signal;
  const acks = new Map<string, Ack[]>(targets.map((target) => [target.name, []]));
  // The first acknowledgement from each node, by target: the poll below must not rescan every ack.
  const firsts = new Map<string, Map<number, Ack>>(targets.map((t) => [t.name, new Map()]));
  const writers = targets.map((target) =>
    runWriters({
      port: target.port,
      clients,
      // A short pause keeps four writers per target from starving Sentinel of CPU on a small machine.
      pauseMs: 1,
      prefix: `failover-${target.name}`,
      signal: writerSignal,
      onAck: (ack) => {
        acks.get(target.name)!.push(ack);
        const first = firsts.get(target.name)!;
        if (!first.has(ack.node)) first.set(ack.node, ack);
      },
    })
  );
  try {
    await waitFor(
      () => targets.every((t) => firsts.get(t.name)!.has(from)),
      15_000,
      signal,
      () => `writers through ${names(targets)} did not reach master ${from}`,
    );
    // Let every writer settle into its steady pace before the switch.
    await sleep(500, signal);
    await using watch = await deployment.watchSwitch(30_000);
    await deployment.forceFailover();
    const { address, seenAt } = await watch.next;
    const to = portOf(address);
    const firstOnNew = (target: FailoverTarget) => firsts.get(target.name)!.get(to);
    const longest = Math.max(...targets.map((target) => target.maxWaitMs));
    const deadline = seenAt + longest;
    while (performance.now() < deadline) {
      const waiting = targets.filter((target) =>
        !firstOnNew(target) && performance.now() < seenAt + target.maxWaitMs
      );
      if (waiting.length === 0) break;
      await sleep(20, signal);
    }
    const recoveryMs = new Map<string, number | undefined>();
    const staleAcks = new Map<string, number>();
    for (const target of targets) {
      const first = firstOnNew(target);
      recoveryMs.set(
        target.name,
        first && first.at - seenAt <= target.maxWaitMs ? first.at - seenAt : undefined,
      );
      staleAcks.set(
        target.name,
        acks.get(target.name)!.filter((ack) => ack.node === from && ack.at > seenAt).length,
      );
    }
    return { from, to, recoveryMs, staleAcks };
  } finally {
    stop.abort();
    await Promise.allSettled(writers);
  }
}

/**
 * Waits until the deployment has settled on master `masterPort`: it reports
 * role master and every other running node is its replica with the link up.
 * After a forced failover Sentinel demotes the old master about ten seconds
 * later.
 *
 * @throws {Error} naming the nodes still out of place when the deadline passes
 */
export async function waitConverged(
  deployment: Deployment,
  masterPort: number,
  timeoutMs = 60_000,
  signal?: AbortSignal,
): Promise<void> {
  let problems: string[] = [];
  await waitFor(
    async () => {
      problems = await convergenceProblems(deployment, masterPort);
      return problems.length === 0;
    },
    timeoutMs,
    signal,
    () => `deployment did not converge on master ${masterPort}: ${problems.join("; ")}`,
  );
}

async function convergenceProblems(
  deployment: Deployment,
  masterPort: number,
): Promise<string[]> {
  const nodes = deployment.nodes.filter((node) => node.state === "running");
  const problems = await Promise.all(nodes.map(async (node) => {
    let info: Map<string, string>;
    try {
      info = parseInfo(await deployment.cli(node, "INFO", "replication"));
    } catch (error) {
      return `${node.address}: ${error instanceof Error ? error.message : String(error)}`;
    }
    const role = info.get("role");
    if (node.port === masterPort) {
      return role === "master" ? undefined : `${node.address} is ${role}, not master`;
    }
    if (role !== "slave" || info.get("master_port") !== String(masterPort)) {
      return `${node.address} is ${role} of ${info.get("master_port") ?? "nobody"}`;
    }
    return info.get("master_link_status") === "up"
      ? undefined
      : `${node.address} has its link to the master down`;
  }));
  return problems.filter((problem) => problem !== undefined);
}

/** Polls `done` every 50 ms until it is true; throws `describe()` after `timeoutMs`. */
async function waitFor(
  done: () => boolean | Promise<boolean>,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  describe: () => string,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!await done()) {
    if (performance.now() >= deadline) throw new Error(`${describe()} within ${timeoutMs} ms`);
    await sleep(50, signal);
  }
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

function names(targets: readonly FailoverTarget[]): string {
  return targets.map((target) => target.name).join(" and ");
}

/** Parses `INFO` output (`key:value` lines). */
function parseInfo(text: string): Map<string, string> {
  const info = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon > 0 && !line.startsWith("#")) info.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return info;
}
