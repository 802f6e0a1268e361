/**
 * Test utility: the failover scenarios that every transport must pass with
 * the same bounds (over TCP in failover_test.ts, over TLS in tls_test.ts),
 * with writers that record which node acknowledged each write.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Deployment } from "./_deployment.ts";
import { type Ack, runWriters, type WriterOptions, type WriterReport } from "./_traffic.ts";

/** The port in `host:port`. */
export function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves with the first ack that satisfies `match`. */
export function firstAck(
  acks: Ack[],
  match: (ack: Ack) => boolean,
  timeoutMs: number,
): Promise<Ack> {
  return new Promise((resolve, reject) => {
    const deadline = performance.now() + timeoutMs;
    const check = () => {
      const found = acks.find(match);
      if (found) resolve(found);
      else if (performance.now() > deadline) {
        reject(new Error(`no matching write in ${timeoutMs} ms`));
      } else setTimeout(check, 5);
    };
    check();
  });
}

/** Writers through the tunnel; `acks` fills as writes are acknowledged. */
export function startWriters(options: Omit<WriterOptions, "signal" | "onAck">) {
  const stop = new AbortController();
  const acks: Ack[] = [];
  const done = runWriters({ ...options, signal: stop.signal, onAck: (a) => acks.push(a) });
  return {
    acks,
    stop: (): Promise<WriterReport> => {
      stop.abort();
      return done;
    },
  };
}

/** What a scenario needs besides the deployment. */
export interface ScenarioOptions {
  /** The tunnel's local port for the deployment's master. */
  port: number;
  /** Prefixes the figures printed, such as `"TLS "`. */
  label?: string;
  /** The setting that tells the nodes apart, for the writers. @default {"port"} */
  portParameter?: WriterOptions["portParameter"];
  /** Writers open a new connection after this many writes (`preconnect` tests). */
  writesPerConnection?: number;
  /** The keys among `keys` that the new master at `newPort` does not hold. */
  missingOnNewMaster: (newPort: number, keys: readonly string[]) => Promise<string[]>;
}

/**
 * SIGKILL of the master: writers reach the new master within 1 s of
 * `+switch-master`, and every write it acknowledged is there.
 */
export async function masterKilled(deployment: Deployment, options: ScenarioOptions) {
  const label = options.label ?? "";
  const oldMaster = deployment.nodes[0]!;
  await using watch = await deployment.watchSwitch();
  const writers = startWriters({
    port: options.port,
    clients: 4,
    pauseMs: 2,
    ...(options.portParameter ? { portParameter: options.portParameter } : {}),
  });
  const { acks } = writers;
  try {
    await firstAck(acks, (a) => a.node === oldMaster.port, 5000);
    oldMaster.kill("SIGKILL");
    const killedAt = performance.now();
    const { address, seenAt } = await watch.next;
    const newPort = portOf(address);
    assert.notEqual(newPort, oldMaster.port);
    const first = await firstAck(acks, (a) => a.node === newPort && a.at >= seenAt, 10_000);
    const recoveryMs = Math.max(0, first.at - seenAt);
    console.log(
      `${label}SIGKILL: +switch-master ${(seenAt - killedAt).toFixed(0)} ms after the kill; ` +
        `first write on the new master ${recoveryMs.toFixed(1)} ms after +switch-master`,
    );
    assert.ok(recoveryMs < 1000, `recovery took ${recoveryMs} ms`);
    await sleep(300);
  } finally {
    writers.stop();
  }
  const report = await writers.stop();
  const newPort = portOf(await deployment.sentinelMaster());
  const afterSwitch = report.acks.filter((a) => a.node === newPort);
  assert.ok(afterSwitch.length > 0);
  assert.deepEqual(await options.missingOnNewMaster(newPort, afterSwitch.map((a) => a.key)), []);
}

/**
 * SIGSTOP of the master, SIGCONT after the switch: writers reach the new
 * master within 1 s of `+switch-master`, and the old master, which wakes up
 * believing it is master, acknowledges no write after the switch.
 */
export async function masterFrozen(deployment: Deployment, options: ScenarioOptions) {
  const label = options.label ?? "";
  const oldMaster = deployment.nodes[0]!;
  await using watch = await deployment.watchSwitch();
  const writers = startWriters({
    port: options.port,
    clients: 6,
    pauseMs: 1,
    ...(options.portParameter ? { portParameter: options.portParameter } : {}),
    ...(options.writesPerConnection ? { writesPerConnection: options.writesPerConnection } : {}),
  });
  const { acks } = writers;
  let switchAt: number;
  let newPort: number;
  try {
    await firstAck(acks, (a) => a.node === oldMaster.port, 5000);
    oldMaster.stop();
    const { address, seenAt } = await watch.next;
    switchAt = seenAt;
    newPort = portOf(address);
    const first = await firstAck(acks, (a) => a.node === newPort && a.at >= seenAt, 10_000);
    const recoveryMs = Math.max(0, first.at - seenAt);
    // The old master wakes up still believing it is master, with client writes in its buffers.
    oldMaster.cont();
    await sleep(2000);
    console.log(
      `${label}SIGSTOP: first write on the new master ${
        recoveryMs.toFixed(1)
      } ms after +switch-master`,
    );
    assert.ok(recoveryMs < 1000, `recovery took ${recoveryMs} ms`);
  } finally {
    oldMaster.cont();
    writers.stop();
  }
  const report = await writers.stop();
  const stale = report.acks.filter((a) => a.node === oldMaster.port && a.at >= switchAt);
  const lost = await options.missingOnNewMaster(newPort, report.acks.map((a) => a.key));
  console.log(
    `${label}SIGSTOP: ${report.acks.length} writes acknowledged, ${stale.length} by the old master after the switch, ` +
      `${lost.length} missing on the new master`,
  );
  assert.equal(stale.length, 0, "writes acknowledged by the demoted master after +switch-master");
  const onNewMaster = report.acks.filter((a) => a.node === newPort);
  assert.ok(onNewMaster.length > 0);
  assert.deepEqual(lost.filter((key) => onNewMaster.some((a) => a.key === key)), []);
  return { acks: report.acks, switchAt, newPort, oldPort: oldMaster.port };
}
