/**
 * `preconnect` against real redis-server and Sentinel processes: ready
 * connections to the master are untouched until a client takes one, are
 * replaced when the master closes them, count against maxClients, are emptied
 * whenever the master stops being confirmed, and never carry a client's write
 * to a demoted master (the SIGSTOP scenario with a connection per write).
 */
import assert from "node:assert/strict";
import { RespErrorReply } from "../src/control/resp.ts";
import { deploymentTls, temporaryCertificates } from "./_certs.ts";
import { type Deployment, freePort, startDeployment } from "./_deployment.ts";
import { masterFrozen } from "./_failover.ts";
import { missingKeys } from "./_traffic.ts";
import { connectClient, oneCommand, startTunnel } from "./_tunnel.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A tunnel with the admin API for the deployment's master, `database` merged into its entry. */
async function tunnelFor(
  deployment: Deployment,
  database: Record<string, unknown>,
  config: Record<string, unknown> = {},
) {
  const port = freePort();
  const admin = `127.0.0.1:${freePort()}`;
  const tunnel = await startTunnel({
    sentinels: deployment.sentinels.map((s) => s.address),
    admin,
    timeouts: { clientWaitMs: 10_000 },
    ...config,
    databases: [{ name: deployment.masterName, port, ...database }],
  }, { ports: [port] });
  await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
  /** A per-database sample of the tunnel's metrics. */
  const metric = async (name: string): Promise<number> => {
    const text = await (await fetch(`http://${admin}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(`sentinel_tunnel_${name}{`));
    assert.ok(line, `no ${name} in /metrics`);
    return Number(line.slice(line.lastIndexOf(" ") + 1));
  };
  /** Rewrites the config with `more` merged into the entry, and reloads it (SIGHUP). */
  const reload = async (more: Record<string, unknown>) => {
    await Deno.writeTextFile(
      tunnel.configPath,
      JSON.stringify({
        sentinels: deployment.sentinels.map((s) => s.address),
        admin,
        timeouts: { clientWaitMs: 10_000 },
        ...config,
        databases: [{ name: deployment.masterName, port, ...database, ...more }],
      }),
    );
    tunnel.kill("SIGHUP");
    await tunnel.waitForLog((r) => /reload/i.test(String(r.message)) && r.level !== "DEBUG");
  };
  return { port, tunnel, metric, reload, admin };
}

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 10_000) {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Clients of `node` that never sent a command (`cmd=NULL`), by their local address. */
async function untouchedClients(deployment: Deployment, node = deployment.nodes[0]!) {
  const list = await deployment.cli(node, "CLIENT", "LIST");
  return list.split("\n").filter((line) => / cmd=NULL( |$)/.test(line)).length;
}

Deno.test(
  "preconnect: clients take ready connections that sent nothing; ones the master closes are replaced",
  processes,
  async () => {
    await using deployment = await startDeployment({
      masterName: "ready",
      replicas: 1,
      sentinels: 1,
    });
    const { port, tunnel, metric, admin } = await tunnelFor(deployment, { preconnect: 3 });
    await using _tunnel = tunnel;
    await eventually("3 ready connections", async () => await metric("ready_connections") === 3);
    const topology = await (await fetch(`http://${admin}/api/topology`)).json();
    assert.equal(topology.databases[0].connections.ready, 3);
    assert.equal(topology.databases[0].connections.active, 0);
    // The master sees them as clients that never sent a command: no AUTH, no PING, nothing.
    assert.ok(await untouchedClients(deployment) >= 3);
    for (let i = 0; i < 20; i++) assert.equal(await oneCommand(port, ["PING"]), "PONG");
    const used = await metric("ready_connections_used_total");
    console.log(`preconnect: ${used} of 20 clients in turn took a ready connection`);
    assert.ok(used >= 1, "no client took a ready connection");
    await eventually("refilled", async () => await metric("ready_connections") === 3);

    // The master's `timeout` closes idle clients: the ready ones are replaced, and what a client
    // gets afterwards works.
    await deployment.cli(deployment.nodes[0]!, "CONFIG", "SET", "timeout", "1");
    try {
      await eventually(
        "3 ready connections closed by the master",
        async () => await metric("ready_connections_discarded_total") >= 3,
      );
      await eventually("refilled", async () => await metric("ready_connections") === 3);
      for (let i = 0; i < 5; i++) assert.equal(await oneCommand(port, ["PING"]), "PONG");
    } finally {
      await deployment.cli(deployment.nodes[0]!, "CONFIG", "SET", "timeout", "0");
    }
  },
);

Deno.test(
  "preconnect: a reload resizes the pool, and 0 closes every ready connection",
  processes,
  async () => {
    await using deployment = await startDeployment({
      masterName: "ready-reload",
      replicas: 0,
      sentinels: 1,
    });
    const { port, tunnel, metric, reload } = await tunnelFor(deployment, { preconnect: 2 });
    await using _tunnel = tunnel;
    await eventually("2 ready connections", async () => await metric("ready_connections") === 2);
    await reload({ preconnect: 0 });
    await eventually("none", async () => await metric("ready_connections") === 0);
    await eventually("none on the master", async () => await untouchedClients(deployment) === 0);
    assert.equal(await oneCommand(port, ["PING"]), "PONG");
    await reload({ preconnect: 5 });
    await eventually("5 ready connections", async () => await metric("ready_connections") === 5);
    assert.ok(await untouchedClients(deployment) >= 5);
  },
);

Deno.test(
  "preconnect: ready connections count against maxClients, and a client over the cap takes one's slot",
  processes,
  async () => {
    await using deployment = await startDeployment({
      masterName: "ready-capped",
      replicas: 0,
      sentinels: 1,
    });
    const { port, tunnel, metric } = await tunnelFor(deployment, {
      preconnect: 2,
      maxClients: 3,
    });
    await using _tunnel = tunnel;
    await eventually("2 ready connections", async () => await metric("ready_connections") === 2);
    const held = [];
    try {
      for (let i = 0; i < 3; i++) {
        const client = await connectClient(port);
        held.push(client);
        assert.equal(await client.call(["PING"]), "PONG");
      }
      // Three clients hold the three slots: nothing is left for ready connections.
      assert.equal(await metric("ready_connections"), 0);
      const refused = await oneCommand(port, ["PING"]);
      assert.ok(refused instanceof RespErrorReply);
      assert.match(refused.message, /too many clients \(3\)/);
    } finally {
      for (const client of held) client.close();
    }
    // The clients gone, the next client's take refills the pool.
    await sleep(100);
    assert.equal(await oneCommand(port, ["PING"]), "PONG");
    await eventually("2 ready again", async () => await metric("ready_connections") === 2);
  },
);

Deno.test(
  "preconnect: after SIGSTOP of the master, with a connection per write, the old master acknowledges no write",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "ready-frozen" });
    const { port, tunnel, metric } = await tunnelFor(deployment, { preconnect: 4 });
    await using _tunnel = tunnel;
    await eventually("4 ready connections", async () => await metric("ready_connections") === 4);
    const { acks, switchAt, newPort, oldPort } = await masterFrozen(deployment, {
      port,
      label: "preconnect ",
      writesPerConnection: 1,
      missingOnNewMaster: missingKeys,
    });
    const used = await metric("ready_connections_used_total");
    const afterSwitch = acks.filter((a) => a.node === newPort && a.at >= switchAt).length;
    console.log(
      `preconnect SIGSTOP: ${acks.length} writes on ${acks.length} connections, ${used} of them ready ones; ` +
        `${afterSwitch} on the new master after the switch, 0 by the old one`,
    );
    assert.ok(used > 0, "no writer took a ready connection");
    // The pool serves the new master: its ready connections are there, none on the old one.
    await eventually("4 ready connections", async () => await metric("ready_connections") === 4);
    await eventually(
      "the ready connections on the new master",
      async () => {
        const node = deployment.nodes.find((n) => n.port === newPort)!;
        return await untouchedClients(deployment, node) >= 4;
      },
    );
    const old = deployment.nodes.find((n) => n.port === oldPort)!;
    assert.equal(
      await untouchedClients(deployment, old),
      0,
      "ready connections left on the old master",
    );
  },
);

Deno.test(
  "preconnect: with TLS to the master, 4 ready connections by default, handshakes done",
  processes,
  async () => {
    await using certs = await temporaryCertificates();
    await using deployment = await startDeployment({
      masterName: "ready-tls",
      replicas: 0,
      sentinels: 1,
      tls: deploymentTls(certs),
    });
    const { port, tunnel, metric } = await tunnelFor(deployment, {}, {
      tls: { caFile: certs.caFile, ...certs.client },
    });
    await using _tunnel = tunnel;
    await eventually("4 ready connections", async () => await metric("ready_connections") === 4);
    for (let i = 0; i < 5; i++) assert.equal(await oneCommand(port, ["PING"]), "PONG");
    assert.ok(await metric("ready_connections_used_total") >= 1);
    assert.ok(await untouchedClients(deployment) >= 4);
  },
);
