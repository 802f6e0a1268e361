/**
 * Read ports against real redis-server and Sentinel processes: which replicas
 * get clients, how they spread, and how they are cut off.
 */
import assert from "node:assert/strict";
import { type Deployment, freePort, type RedisProcess, startDeployment } from "./_deployment.ts";
import {
  connectClient,
  type LogRecord,
  oneCommand,
  startTunnel,
  type TunnelProcess,
} from "./_tunnel.ts";
import type { RedisConnection } from "../src/control/redis_connection.ts";
import { RespErrorReply } from "../src/control/resp.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };

async function readTunnel(deployment: Deployment, replica: Record<string, unknown> = {}) {
  const masterPort = freePort();
  const readPort = freePort();
  const tunnel = await startTunnel({
    sentinels: deployment.sentinels.map((s) => s.address),
    timeouts: { clientWaitMs: 3000, pollIntervalMs: 500 },
    databases: [
      { name: deployment.masterName, port: masterPort },
      { name: deployment.masterName, port: readPort, role: "replica", ...replica },
    ],
  }, { ports: [masterPort, readPort] });
  return { tunnel, masterPort, readPort };
}

Deno.test(
  "a replica port serves GET, refuses SET with -READONLY, and the master port writes",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "reads" });
    await deployment.waitReady();
    const { tunnel, masterPort, readPort } = await readTunnel(deployment);
    await using _t = tunnel;
    await tunnel.waitForLog((r) => /replica .* is usable/.test(String(r.message)));
    assert.equal(await oneCommand(masterPort, ["SET", "k", "v"]), "OK");
    using reader = await connectClient(readPort);
    const port = (await reader.call(["CONFIG", "GET", "port"])) as string[];
    assert.notEqual(Number(port[1]), deployment.nodes[0]!.port);
    // WAIT on the master makes the write reach the replicas before the read.
    await oneCommand(masterPort, ["WAIT", "2", "2000"]);
    assert.equal(await reader.call(["GET", "k"]), "v");
    const refused = await reader.call(["SET", "k", "x"]);
    assert.ok(refused instanceof RespErrorReply && refused.code === "READONLY", String(refused));
    console.log(tunnel.logs.filter((r) => /replica/.test(String(r.message))).map((r) => r.message));
  },
);

/** The port of the node a client of the tunnel reached. */
async function nodeOf(client: RedisConnection): Promise<number> {
  const reply = await client.call(["CONFIG", "GET", "port"]);
  assert.ok(
    Array.isArray(reply) && reply.length === 2,
    `CONFIG GET port answered ${String(reply)}`,
  );
  return Number(reply[1]);
}

/** How many of `nodes` are each of `ports`, in the order of `ports`. */
function countBy(nodes: readonly number[], ports: readonly number[]): number[] {
  return ports.map((p) => nodes.filter((n) => n === p).length);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Waits for a log line matching `pattern` among those logged from index `from` on. */
async function waitForLogSince(
  tunnel: TunnelProcess,
  from: number,
  pattern: RegExp,
): Promise<LogRecord> {
  return await tunnel.waitForLog((r) =>
    pattern.test(String(r.message)) && tunnel.logs.indexOf(r) >= from
  );
}

/** Waits until the tunnel has said, from log index `from` on, that each of `nodes` is usable. */
async function waitUsable(
  tunnel: TunnelProcess,
  nodes: readonly RedisProcess[],
  from = 0,
): Promise<void> {
  for (const node of nodes) {
    await waitForLogSince(
      tunnel,
      from,
      new RegExp(`replica ${escapeRegExp(node.address)} is usable`),
    );
  }
}

/** One series of the admin API's `/metrics`, if it is there. */
async function metric(adminPort: number, series: string): Promise<number | undefined> {
  const response = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
  const body = await response.text();
  const line = body.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

Deno.test(
  "a replica port spreads clients over the replicas within one, and sends new ones to the least loaded first",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "spread" });
    const adminPort = freePort();
    const readPort = freePort();
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      timeouts: { clientWaitMs: 3000, pollIntervalMs: 500 },
      databases: [{ name: "spread", port: readPort, role: "replica" }],
    }, { args: ["--admin", `127.0.0.1:${adminPort}`] });
    const replicas = deployment.nodes.slice(1);
    const ports = replicas.map((r) => r.port);
    await waitUsable(tunnel, replicas);

    const clients: RedisConnection[] = [];
    try {
      // Ten at once: a client counts against its replica from the moment it is dialled.
      const together = await Promise.all(Array.from({ length: 10 }, () => connectClient(readPort)));
      clients.push(...together);
      const togetherNodes = await Promise.all(together.map(nodeOf));
      // Ten one after another, each served before the next connects.
      const inTurnNodes: number[] = [];
      for (let i = 0; i < 10; i++) {
        const client = await connectClient(readPort);
        clients.push(client);
        inTurnNodes.push(await nodeOf(client));
      }
      const nodes = [...togetherNodes, ...inTurnNodes];
      const splitTogether = countBy(togetherNodes, ports);
      const splitInTurn = countBy(inTurnNodes, ports);
      console.log(
        `replicas ${ports.join(" / ")}: 10 at once split ${splitTogether.join(" / ")}, ` +
          `10 in turn split ${splitInTurn.join(" / ")}, all ${countBy(nodes, ports).join(" / ")}`,
      );
      for (const [what, split] of [["at once", splitTogether], ["in turn", splitInTurn]] as const) {
        assert.equal(
          split[0]! + split[1]!,
          10,
          `${what}: a client reached a node that is no replica`,
        );
        assert.ok(split.every((n) => n > 0), `${what}: a replica got no client: ${split}`);
        assert.ok(Math.abs(split[0]! - split[1]!) <= 1, `${what}: uneven split ${split}`);
      }

      // Empty one replica, and wait until the tunnel has counted its clients out.
      const [emptied, full] = ports as [number, number];
      clients.forEach((c, i) => nodes[i] === emptied && c.close());
      const staying = nodes.filter((n) => n === full).length;
      const active =
        `sentinel_tunnel_connections_active{database="spread",port="${readPort}",role="replica"}`;
      const deadline = Date.now() + 10_000;
      while (await metric(adminPort, active) !== staying) {
        assert.ok(Date.now() < deadline, `${active} never fell to ${staying}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const more = await Promise.all(Array.from({ length: 4 }, () => connectClient(readPort)));
      clients.push(...more);
      const moreNodes = await Promise.all(more.map(nodeOf));
      console.log(
        `after emptying ${emptied} (${full} keeps ${staying}), 4 more went to ${
          moreNodes.join(", ")
        }`,
      );
      assert.deepEqual(moreNodes, [emptied, emptied, emptied, emptied]);
    } finally {
      for (const client of clients) client.close();
    }
  },
);

Deno.test(
  'with every replica down, whenNoReplica "reject" answers a RESP error after clientWaitMs, and "master" sends reads and writes to the master',
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "noreplica" });
    const clientWaitMs = 2000;
    const rejectPort = freePort();
    const fallbackPort = freePort();
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      timeouts: { clientWaitMs, pollIntervalMs: 500 },
      databases: [
        { name: "noreplica", port: rejectPort, role: "replica" },
        { name: "noreplica", port: fallbackPort, role: "replica", whenNoReplica: "master" },
      ],
    }, { ports: [rejectPort, fallbackPort] });
    const [master, ...replicas] = deployment.nodes as [RedisProcess, ...RedisProcess[]];
    await waitUsable(tunnel, replicas);
    {
      // While a replica is usable, the fallback port reads from the replicas like any read port.
      using reader = await connectClient(fallbackPort);
      const node = await nodeOf(reader);
      assert.ok(
        replicas.some((r) => r.port === node),
        `the fallback port sent a reader to ${node}`,
      );
    }

    const from = tunnel.logs.length;
    for (const replica of replicas) replica.kill();
    for (const replica of replicas) {
      await waitForLogSince(
        tunnel,
        from,
        new RegExp(
          `replica ${escapeRegExp(replica.address)}:? .*(not usable|Sentinel sees it down)`,
        ),
      );
    }

    // "reject": the client's SET is held, never sent, and it gets an error instead.
    using rejected = await connectClient(rejectPort, clientWaitMs + 10_000);
    const started = performance.now();
    const reply = await rejected.call(["SET", "noreplica:rejected", "v"]);
    const waited = performance.now() - started;
    assert.ok(reply instanceof RespErrorReply, `expected an error reply, got ${String(reply)}`);
    console.log(`after ${waited.toFixed(0)} ms: ${reply.message}`);
    const shape = new RegExp(
      `^ERR sentinel-tunnel: database "noreplica" \\(replicas, port ${rejectPort}\\): ` +
        `no usable replica after waiting ${clientWaitMs} ms: (.+)$`,
    );
    const cause = shape.exec(reply.message)?.[1];
    assert.ok(cause !== undefined, `unexpected error text: ${reply.message}`);
    for (const replica of replicas) {
      assert.ok(
        cause.includes(`replica ${replica.address}: `),
        `the cause does not name ${replica.address}`,
      );
    }
    assert.ok(waited >= clientWaitMs - 100, `answered after ${waited} ms, before clientWaitMs`);
    assert.equal(await deployment.cli(master, "EXISTS", "noreplica:rejected"), "0");

    // "master": with no usable replica, the read port is a master port, so writes through it succeed.
    using fallback = await connectClient(fallbackPort);
    assert.equal(await nodeOf(fallback), master.port);
    assert.equal(await fallback.call(["SET", "noreplica:fallback", "written"]), "OK");
    assert.equal(await fallback.call(["GET", "noreplica:fallback"]), "written");
    assert.equal(await deployment.cli(master, "GET", "noreplica:fallback"), "written");
  },
);

Deno.test(
  "the original sentinel_tunnel format with one name on two ports serves the master on both",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "original" });
    const master = deployment.nodes[0]!;
    const ports = [freePort(), freePort()];
    // The RedisLabs format as it was: ports as strings, no roles (every entry serves the master).
    await using _tunnel = await startTunnel({
      Sentinels_addresses_list: deployment.sentinels.map((s) => s.address),
      Databases: ports.map((port) => ({ Name: "original", Local_port: String(port) })),
    }, { ports });
    for (const port of ports) {
      using client = await connectClient(port);
      assert.equal(await client.call(["PING"]), "PONG");
      assert.equal(await nodeOf(client), master.port);
      assert.equal(await client.call(["SET", `original:${port}`, "via"]), "OK");
      assert.equal(await deployment.cli(master, "GET", `original:${port}`), "via");
    }
  },
);

Deno.test(
  "a replica more than maxLagBytes behind gets no new clients and loses its own until it catches up",
  processes,
  async () => {
    // A long down-after: the paused replica below holds a Sentinel's PUBLISH (a write), and so its
    // PINGs, and would be flagged s_down after down-after; the test wants the lag alone to count.
    await using deployment = await startDeployment({ masterName: "lagging", downAfterMs: 30_000 });
    const maxLagBytes = 10_000;
    const masterPort = freePort();
    const readPort = freePort();
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      timeouts: { clientWaitMs: 3000, pollIntervalMs: 500 },
      databases: [
        { name: "lagging", port: masterPort },
        // Not 1 byte: the Sentinels' hello messages replicate every 2 s, and a check that lands
        // between one reaching the master and the replica would take a healthy replica out.
        { name: "lagging", port: readPort, role: "replica", maxLagBytes },
      ],
    }, { ports: [masterPort, readPort] });
    const replicas = deployment.nodes.slice(1) as [RedisProcess, RedisProcess];
    await waitUsable(tunnel, replicas);

    const clients: RedisConnection[] = [];
    try {
      const first = [await connectClient(readPort), await connectClient(readPort)];
      clients.push(...first);
      const firstNodes = await Promise.all(first.map(nodeOf));
      assert.deepEqual([...firstNodes].sort(), replicas.map((r) => r.port).sort());
      const [lagging, current] = replicas;
      const onLagging = first[firstNodes.indexOf(lagging.port)]!;
      const onCurrent = first[firstNodes.indexOf(current.port)]!;

      // CLIENT PAUSE WRITE on a replica (Redis 7) stops it applying the replication stream while
      // its link stays connected and it still answers ROLE: it falls behind by what the master
      // takes meanwhile, deterministically, and catches up at CLIENT UNPAUSE.
      const from = tunnel.logs.length;
      await deployment.cli(lagging, "CLIENT", "PAUSE", "60000", "WRITE");
      assert.equal(await oneCommand(masterPort, ["SET", "lagging:big", "x".repeat(100_000)]), "OK");
      const behind = await waitForLogSince(
        tunnel,
        from,
        new RegExp(
          `replica ${
            escapeRegExp(lagging.address)
          } is not usable: it is \\d+ bytes behind the master ` +
            `\\(maxLagBytes ${maxLagBytes}\\); closed 1 client connection to it \\(port ${readPort}\\)`,
        ),
      );
      console.log(behind.message);
      await assert.rejects(onLagging.call(["PING"]));
      assert.equal(await onCurrent.call(["PING"]), "PONG");
      const whileLagging = await Promise.all(
        Array.from({ length: 4 }, () => connectClient(readPort)),
      );
      clients.push(...whileLagging);
      const whileLaggingNodes = await Promise.all(whileLagging.map(nodeOf));
      console.log(
        `while ${lagging.port} lags, 4 new clients went to ${whileLaggingNodes.join(", ")}`,
      );
      assert.deepEqual(whileLaggingNodes, Array(4).fill(current.port));

      const resumed = tunnel.logs.length;
      await deployment.cli(lagging, "CLIENT", "UNPAUSE");
      const usable = await waitForLogSince(
        tunnel,
        resumed,
        new RegExp(`replica ${escapeRegExp(lagging.address)} is usable`),
      );
      console.log(usable.message);
      const afterCatchUp = await Promise.all(
        Array.from({ length: 4 }, () => connectClient(readPort)),
      );
      clients.push(...afterCatchUp);
      const afterCatchUpNodes = await Promise.all(afterCatchUp.map(nodeOf));
      console.log(`after it caught up, 4 new clients went to ${afterCatchUpNodes.join(", ")}`);
      assert.deepEqual(afterCatchUpNodes, Array(4).fill(lagging.port));
      assert.ok(
        !tunnel.logs.some((r) =>
          new RegExp(`replica ${escapeRegExp(current.address)}:? .*not usable`).test(
            String(r.message),
          )
        ),
        "the replica that kept up was taken out",
      );
    } finally {
      for (const client of clients) client.close();
    }
  },
);
