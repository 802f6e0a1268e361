/**
 * Failovers against real redis-server and Sentinel processes, with writers
 * that keep going through the tunnel. Each writer connection learns which node
 * it reached (`CONFIG GET port`), so a write acknowledged by a demoted master
 * is counted, not guessed.
 */
import assert from "node:assert/strict";
import { type Deployment, freePort, startDeployment } from "./_deployment.ts";
import { type Ack, missingKeys, runWriters, type WriterReport } from "./_traffic.ts";
import { oneCommand, startTunnel } from "./_tunnel.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves with the first ack that satisfies `match`. */
function firstAck(acks: Ack[], match: (ack: Ack) => boolean, timeoutMs: number): Promise<Ack> {
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

async function tunnelFor(deployment: Deployment, sentinels = deployment.sentinels) {
  const port = freePort();
  const tunnel = await startTunnel({
    sentinels: sentinels.map((s) => s.address),
    timeouts: { clientWaitMs: 10_000 },
    databases: [{ name: deployment.masterName, port }],
  }, { ports: [port] });
  await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
  return { port, tunnel };
}

/** Writers through the tunnel; `acks` fills as writes are acknowledged. */
function startWriters(port: number, clients: number, pauseMs: number) {
  const stop = new AbortController();
  const acks: Ack[] = [];
  const done = runWriters({
    port,
    clients,
    pauseMs,
    signal: stop.signal,
    onAck: (a) => acks.push(a),
  });
  return {
    acks,
    stop: (): Promise<WriterReport> => {
      stop.abort();
      return done;
    },
  };
}

Deno.test(
  "after SIGKILL of the master, clients reach the new master within 1 s of +switch-master",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "killed" });
    const { port, tunnel } = await tunnelFor(deployment);
    await using _tunnel = tunnel;
    const oldMaster = deployment.nodes[0]!;
    await using watch = await deployment.watchSwitch();
    const writers = startWriters(port, 4, 2);
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
        `SIGKILL: +switch-master ${(seenAt - killedAt).toFixed(0)} ms after the kill; ` +
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
    assert.deepEqual(await missingKeys(newPort, afterSwitch.map((a) => a.key)), []);
  },
);

Deno.test(
  "after SIGSTOP of the master and SIGCONT after the switch, the old master acknowledges no write",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "frozen" });
    const { port, tunnel } = await tunnelFor(deployment);
    await using _tunnel = tunnel;
    const oldMaster = deployment.nodes[0]!;
    await using watch = await deployment.watchSwitch();
    const writers = startWriters(port, 6, 1);
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
        `SIGSTOP: first write on the new master ${recoveryMs.toFixed(1)} ms after +switch-master`,
      );
      if (Deno.env.get("ST_DEBUG")) {
        console.log(
          `switch seen at ${new Date(Date.now() - (performance.now() - seenAt)).toISOString()}`,
        );
        for (const r of tunnel.logs) console.log(JSON.stringify(r));
      }
      assert.ok(recoveryMs < 1000, `recovery took ${recoveryMs} ms`);
    } finally {
      oldMaster.cont();
      writers.stop();
    }
    const report = await writers.stop();
    const stale = report.acks.filter((a) => a.node === oldMaster.port && a.at >= switchAt);
    const lost = await missingKeys(newPort, report.acks.map((a) => a.key));
    console.log(
      `SIGSTOP: ${report.acks.length} writes acknowledged, ${stale.length} by the old master after the switch, ` +
        `${lost.length} missing on the new master`,
    );
    assert.equal(stale.length, 0, "writes acknowledged by the demoted master after +switch-master");
    const onNewMaster = report.acks.filter((a) => a.node === newPort);
    assert.ok(onNewMaster.length > 0);
    assert.deepEqual(lost.filter((key) => onNewMaster.some((a) => a.key === key)), []);
  },
);

Deno.test(
  "with the first Sentinel hung, new clients are served promptly and a failover is followed",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "hung" });
    const hung = deployment.sentinels[0]!;
    hung.stop();
    const { port, tunnel } = await tunnelFor(deployment);
    await using _tunnel = tunnel;

    // The tunnel asks no Sentinel per client: each one is served from the cached master.
    for (let i = 0; i < 20; i++) {
      const started = performance.now();
      assert.equal(await oneCommand(port, ["PING"]), "PONG");
      const elapsed = performance.now() - started;
      assert.ok(elapsed < 1000, `client ${i} waited ${elapsed.toFixed(0)} ms`);
    }

    const oldMaster = deployment.nodes[0]!;
    await using watch = await deployment.watchSwitch();
    await deployment.forceFailover();
    const { address } = await watch.next;
    assert.notEqual(portOf(address), oldMaster.port);
    const deadline = performance.now() + 10_000;
    let served: unknown;
    while (performance.now() < deadline) {
      served = await oneCommand(port, ["CONFIG", "GET", "port"]);
      if (JSON.stringify(served) === JSON.stringify(["port", String(portOf(address))])) break;
      await sleep(50);
    }
    assert.deepEqual(served, ["port", String(portOf(address))]);
    hung.cont();
  },
);
