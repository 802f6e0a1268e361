/**
 * Failovers against real redis-server and Sentinel processes, with writers
 * that keep going through the tunnel. Each writer connection learns which node
 * it reached (`CONFIG GET port`), so a write acknowledged by a demoted master
 * is counted, not guessed.
 */
import assert from "node:assert/strict";
import { type Deployment, freePort, startDeployment } from "./_deployment.ts";
import { missingKeys } from "./_traffic.ts";
import { masterFrozen, masterKilled, portOf } from "./_failover.ts";
import { oneCommand, startTunnel } from "./_tunnel.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
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

Deno.test(
  "after SIGKILL of the master, clients reach the new master within 1 s of +switch-master",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "killed" });
    const { port, tunnel } = await tunnelFor(deployment);
    await using _tunnel = tunnel;
    await masterKilled(deployment, { port, missingOnNewMaster: missingKeys });
  },
);

Deno.test(
  "after SIGSTOP of the master and SIGCONT after the switch, the old master acknowledges no write",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "frozen" });
    const { port, tunnel } = await tunnelFor(deployment);
    await using _tunnel = tunnel;
    await masterFrozen(deployment, { port, missingOnNewMaster: missingKeys });
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
