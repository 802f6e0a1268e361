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
 * Routes through a tunnel configured with the Sentinels' host names, then
 * forces a failover and waits for new clients to reach the new master.
 * `portParameter` is the node's client port (`tls-port` on a TLS-only node).
 */
async function routesAndFollowsFailover(
  deployment: Deployment,
  config: Record<string, unknown>,
  portParameter: string,
): Promise<void> {
  const oldMaster = deployment.nodes[0]!;
  assert.equal(await deployment.sentinelMaster(), `localhost:${oldMaster.port}`);
  const port = freePort();
  await using tunnel = await startTunnel({
    sentinels: deployment.sentinels.map((s) => s.address),
    timeouts: { clientWaitMs: 10_000 },
    ...config,
    databases: [{ name: deployment.masterName, port }],
  }, { ports: [port] });
  await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
  const served = () => oneCommand(port, ["CONFIG", "GET", portParameter]);

  assert.deepEqual(await served(), [portParameter, String(oldMaster.port)]);
  assert.equal(await oneCommand(port, ["SET", "named:before", "1"]), "OK");
  assert.equal(await deployment.cli(oldMaster, "GET", "named:before"), "1");

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
