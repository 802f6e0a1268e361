/**
 * A deployment named by host names, as deployments whose certificates carry
 * names are: the nodes announce `localhost` (`replica-announce-ip`), the
 * Sentinels resolve and announce host names, so every address the tunnel
 * learns is `localhost:PORT`, and the config names the Sentinels so too. Over
 * TLS without `serverName`, the name checked is `localhost`: the certificates
 * here are valid for DNS:localhost only, so a check of the IP would fail.
 */
import assert from "node:assert/strict";
import { deploymentTls, temporaryCertificates } from "./_certs.ts";
import { type Deployment, freePort, startDeployment } from "./_deployment.ts";
import { oneCommand, startTunnel } from "./_tunnel.ts";
import { portOf } from "./_failover.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Routes through a tunnel configured with the Sentinels' host names, and
 * reads from a replica through a read port (replicas named by host name
 * too), then forces a failover and waits for new clients to reach the new
 * master, and read clients a replica of it. `portParameter` is the node's
 * client port (`tls-port` on a TLS-only node).
 */
async function routesAndFollowsFailover(
  deployment: Deployment,
  config: Record<string, unknown>,
  portParameter: string,
): Promise<void> {
  const oldMaster = deployment.nodes[0]!;
  assert.equal(await deployment.sentinelMaster(), `localhost:${oldMaster.port}`);
  const port = freePort();
  const readPort = freePort();
  await using tunnel = await startTunnel({
    sentinels: deployment.sentinels.map((s) => s.address),
    timeouts: { clientWaitMs: 10_000 },
    ...config,
    databases: [
      { name: deployment.masterName, port },
      { name: deployment.masterName, port: readPort, role: "replica" },
    ],
  }, { ports: [port, readPort] });
  await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
  const served = () => oneCommand(port, ["CONFIG", "GET", portParameter]);

  assert.deepEqual(await served(), [portParameter, String(oldMaster.port)]);
  assert.equal(await oneCommand(port, ["SET", "named:before", "1"]), "OK");
  assert.equal(await deployment.cli(oldMaster, "GET", "named:before"), "1");

  // The read port reaches a replica, named localhost:PORT and checked as such.
  await tunnel.waitForLog((r) => /replica localhost:\d+ is usable/.test(String(r.message)));
  await deployment.cli(oldMaster, "WAIT", "2", "5000");
  const readFrom = await oneCommand(readPort, ["CONFIG", "GET", portParameter]) as string[];
  assert.ok(
    deployment.nodes.slice(1).some((node) => String(node.port) === readFrom[1]),
    `the read port reached ${JSON.stringify(readFrom)}, not a replica`,
  );
  assert.equal(await oneCommand(readPort, ["GET", "named:before"]), "1");

  await using watch = await deployment.watchSwitch();
  await deployment.forceFailover();
  const { address } = await watch.next;
  assert.match(address, /^localhost:\d+$/);
  const newPort = portOf(address);
  assert.notEqual(newPort, oldMaster.port);
  const expected = JSON.stringify([portParameter, String(newPort)]);
  const deadline = performance.now() + 10_000;
  let last: unknown;
  while (performance.now() < deadline) {
    last = await served();
    if (JSON.stringify(last) === expected) break;
    await sleep(50);
  }
  assert.equal(JSON.stringify(last), expected, "new clients did not reach the new master");
  assert.equal(await oneCommand(port, ["SET", "named:after", "2"]), "OK");
  const newMaster = deployment.nodes.find((node) => node.port === newPort)!;
  assert.equal(await deployment.cli(newMaster, "GET", "named:after"), "2");

  // Read clients go to a replica of the new master, never to the new master.
  const reads = await oneCommand(readPort, ["CONFIG", "GET", portParameter]) as string[];
  assert.notEqual(reads[1], String(newPort));
  assert.equal(await oneCommand(readPort, ["GET", "named:before"]), "1");
}

Deno.test(
  "a deployment named by host names: the tunnel routes and follows a failover",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "named", hostnames: true });
    await routesAndFollowsFailover(deployment, {}, "port");
  },
);

Deno.test(
  "a TLS deployment named by host names: the name checked is localhost, and failover works",
  processes,
  async () => {
    await using certs = await temporaryCertificates();
    await using deployment = await startDeployment({
      masterName: "named-tls",
      hostnames: true,
      tls: { ...deploymentTls(certs), ...certs.localhostOnly },
    });
    await routesAndFollowsFailover(
      deployment,
      { tls: { caFile: certs.caFile, ...certs.client } },
      "tls-port",
    );
  },
);
