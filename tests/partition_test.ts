/**
 * Failovers on real (namespaced) networks, issue #11 scenarios 1 and 4: the
 * master's host goes silent, and a Sentinel goes silent mid-subscription. Every
 * write goes through the tunnel on the app host and is recorded with the node
 * that acknowledged it. Needs root and iproute2 (CI runs as root); skipped
 * elsewhere, saying why.
 */
import assert from "node:assert/strict";
import {
  canRunNamespaces,
  createTestBed,
  type Host,
  ip,
  type LogRecord,
  startTunnelOn,
  startWriter,
  type WriteRecord,
  type WriterRecord,
} from "./_network.ts";
import { type BedRedis, startNetworkDeployment } from "./_network_deployment.ts";

const why = canRunNamespaces();
if (why) console.log(`partition_test: skipped: ${why}`);

const PORT = 6380;
const ADMIN = "127.0.0.1:9121";
/** The issue's bound from the switch to the first write on the new master. */
const RECOVERY_MS = 1000;
/** How long after the switch the old master's clients may end and still count as cut by it. */
const CUT_SLACK_MS = 1000;
/** Ahead of the local table (1000), apart from the bed's own cuts (100). */
const PORT_CUT_PREFERENCE = 110;

/** Writes acknowledged per node, as `{ "ip:port": n }`. */
function acksByNode(writes: readonly WriteRecord[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const w of writes) counts[w.node] = (counts[w.node] ?? 0) + 1;
  return counts;
}

function writesOf(records: readonly WriterRecord[]): WriteRecord[] {
  return records.filter((r): r is WriteRecord => r.type === "write");
}

function messageOf(record: LogRecord): string {
  return String(record.message);
}

function timeOf(record: LogRecord): number {
  return Date.parse(String(record["@timestamp"]));
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` every 100 ms until it holds; throws naming `what` (and the last
 * error `check` threw, if any) after `timeoutMs`. A check that throws counts as
 * "not yet": when Sentinel turns a node into a replica it ends the node's
 * normal clients (`CLIENT KILL TYPE normal`), a poll among them.
 */
async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const last = lastError === undefined ? "" : `; the last check failed: ${lastError}`;
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${last}`);
    }
    await sleep(100);
  }
}

/** The node a new client of the tunnel reaches, as `"ip:port"` (the node's `CONFIG GET bind port`). */
async function nodeThroughTunnel(app: Host): Promise<string> {
  const lines = (await app.exec("redis-cli", [
    "-p",
    `${PORT}`,
    "CONFIG",
    "GET",
    "bind",
    "port",
  ], { timeoutMs: 8_000 })).split("\n");
  const config = new Map<string, string>();
  for (let i = 0; i + 1 < lines.length; i += 2) config.set(lines[i]!, lines[i + 1]!);
  return `${config.get("bind")?.split(" ")[0]}:${config.get("port")}`;
}

/** The tunnel's `/api/sentinels`, fetched from inside the app host (its admin listens on app's 127.0.0.1). */
async function adminSentinels(
  app: Host,
): Promise<{ address: string; subscribed: boolean; lastError: string | null }[]> {
  const text = await app.exec(Deno.execPath(), [
    "eval",
    `const r = await fetch("http://${ADMIN}/api/sentinels"); console.log(await r.text());`,
  ]);
  return JSON.parse(text).sentinels;
}

async function subscribed(app: Host, sentinel: BedRedis): Promise<boolean> {
  return (await adminSentinels(app)).find((s) => s.address === sentinel.address)?.subscribed ===
    true;
}

/**
 * Silences one port of `server` for `client`, both ways, with the bed's kind of cut (a
 * blackhole rule in each receiver's namespace), but only for TCP to and from `port`:
 * a Sentinel goes silent while the Redis node on the same host stays reachable. Removed
 * on dispose (the bed's namespaces go anyway).
 */
async function silencePort(client: Host, server: Host, port: number): Promise<AsyncDisposable> {
  const rules = [
    { ns: server.namespace, selector: ["from", `${client.ip}/32`, "ipproto", "tcp", "dport"] },
    { ns: client.namespace, selector: ["from", `${server.ip}/32`, "ipproto", "tcp", "sport"] },
  ];
  const rule = (verb: string, r: (typeof rules)[number]) =>
    ip(
      "-n",
      r.ns,
      "rule",
      verb,
      "pref",
      `${PORT_CUT_PREFERENCE}`,
      ...r.selector,
      `${port}`,
      "blackhole",
    );
  const added: (typeof rules)[number][] = [];
  let removed: Promise<void> | undefined;
  const handle = {
    [Symbol.asyncDispose]: () =>
      removed ??= (async () => {
        for (const r of added) await rule("del", r);
      })(),
  };
  try {
    for (const r of rules) {
      await rule("add", r);
      added.push(r);
    }
  } catch (error) {
    await handle[Symbol.asyncDispose]();
    throw error;
  }
  return handle;
}

Deno.test({
  name:
    "partition: the master's host goes silent; its clients are cut on the failover, and it acknowledges no write after the switch, nor after the heal",
  ignore: why !== undefined,
  async fn() {
    await using bed = await createTestBed({ hosts: ["app", "r1", "r2", "r3"] });
    const { app, r1, r2, r3 } = bed.hosts;
    // A split vote between r2's and r3's Sentinels retries after 2 x failover-timeout: keep it short.
    await using deployment = await startNetworkDeployment({
      hosts: [r1, r2, r3],
      dir: bed.dir,
      failoverTimeoutMs: 5000,
    });
    await deployment.waitReady();
    const oldMaster = deployment.nodes[0]!;
    await using tunnel = await startTunnelOn(app, {
      sentinels: deployment.sentinelAddresses,
      databases: [{ name: deployment.masterName, port: PORT }],
    }, { ports: [PORT] });
    await tunnel.waitForLog((r) => /master is/.test(messageOf(r)));
    // A long reply deadline: a connection to the silent master hangs until something cuts it.
    const connections = 4;
    await using writer = startWriter(app, { port: PORT, connections, replyTimeoutMs: 30_000 });
    await writer.waitFor(() => new Set(writer.writes().map((w) => w.conn)).size === connections);
    assert.deepEqual(new Set(writer.writes().map((w) => w.node)), new Set([oldMaster.address]));

    await using watch = await deployment.watchSwitch(40_000);
    // The app's link first: from here on no reply of r1 can reach a writer.
    await bed.cut(app, r1);
    const isolatedAt = Date.now();
    const logsBefore = tunnel.logs.length;
    await bed.isolate(r1);
    const switched = await watch.next;
    assert.equal(switched.from, oldMaster.address);
    assert.ok([r2.ip, r3.ip].some((ip) => switched.address.startsWith(`${ip}:`)));
    assert.notEqual(switched.sentinel, deployment.sentinels[0]!.address);
    console.log(
      `partition_test: master host silent: +switch-master to ${switched.address} ${
        switched.seenAt - isolatedAt
      } ms after the isolation (seen on ${switched.sentinel})`,
    );

    // Every writer's connection to the old master ends, cut by the tunnel, not by its own deadline.
    await writer.waitFor((r) => r.type === "write" && r.node === switched.address, 10_000);
    const cuts = [...Array(connections).keys()].map((conn) => {
      const end = writer.records.find((r) =>
        r.type === "error" && r.conn === conn && r.at > isolatedAt
      );
      assert.ok(end?.type === "error", `connection ${conn} to the old master never ended`);
      assert.equal(end.node, oldMaster.address, `connection ${conn} was on the old master`);
      assert.doesNotMatch(end.error, /no reply within/, `connection ${conn} ended by the tunnel`);
      return { conn, ms: end.at - switched.seenAt, error: end.error };
    });
    console.log(
      `partition_test: master host silent: old-master clients cut, ms from the switch: ${
        cuts.map((c) => `conn ${c.conn}: ${c.ms} (${c.error})`).join("; ")
      }`,
    );
    for (const cut of cuts) {
      assert.ok(cut.ms <= CUT_SLACK_MS, `connection ${cut.conn} cut ${cut.ms} ms after the switch`);
    }
    const cutLines = tunnel.logs.slice(logsBefore).filter((r) =>
      /closed \d+ client connections? to (the old master|other nodes)/.test(messageOf(r))
    );
    for (const line of cutLines) {
      console.log(
        `partition_test: master host silent: tunnel (${
          timeOf(line) - switched.seenAt
        } ms from the switch): ${messageOf(line)}`,
      );
    }
    const closed = cutLines.reduce((sum, r) => sum + Number(r.clientsClosed ?? 0), 0);
    assert.ok(closed >= connections, `the tunnel's cuts closed ${closed} connections`);

    const firstNew = writer.writes().find((w) => w.node === switched.address)!;
    const recoveryMs = firstNew.at - switched.seenAt;
    console.log(
      `partition_test: master host silent: first write acknowledged by the new master ${recoveryMs} ms after the switch`,
    );
    assert.ok(recoveryMs < RECOVERY_MS, `first write on the new master ${recoveryMs} ms after`);
    assert.equal(await nodeThroughTunnel(app), switched.address, "a new client reaches it");

    // The danger is real: inside its partition the old master still takes writes.
    assert.equal(await deployment.roleOf(oldMaster), "master");
    assert.equal(await oldMaster.cli("SET", "partition:direct", "1"), "OK");

    await bed.heal();
    const healedAt = Date.now();
    const roleAtHeal = await deployment.roleOf(oldMaster).catch((error) => `no reply (${error})`);
    await waitUntil(
      "Sentinel to turn the old master into a replica",
      async () => await deployment.roleOf(oldMaster) === "slave",
      25_000,
    );
    const convertedAt = Date.now();
    console.log(
      `partition_test: master host silent: after the heal the old master said "${roleAtHeal}", then became a replica after ${
        convertedAt - healedAt
      } ms`,
    );
    // Keep writing past the conversion: writes still land on the new master only.
    await writer.waitFor((r) => r.type === "write" && r.at > convertedAt + 2000, 10_000);
    const records = await writer.stop();
    const writes = writesOf(records);
    const byOldMaster = writes.filter((w) => w.node === oldMaster.address);
    // Impossible by construction: from `isolatedAt` no packet of r1 reaches the app host, so
    // no acknowledgement of r1's could reach a writer before the heal either.
    const duringPartitionBeforeSwitch = byOldMaster.filter((w) =>
      w.at > isolatedAt && w.at <= switched.seenAt
    );
    const afterSwitch = byOldMaster.filter((w) => w.at > switched.seenAt);
    console.log(
      `partition_test: master host silent: acks by node ${
        JSON.stringify(acksByNode(writes))
      }; old-master acks after the isolation and before the switch: ${duringPartitionBeforeSwitch.length}; after the switch (heal included): ${afterSwitch.length}`,
    );
    assert.deepEqual(duringPartitionBeforeSwitch, []);
    assert.deepEqual(afterSwitch, [], "no write acknowledged by the old master after the switch");
    assert.ok(writes.some((w) => w.node === switched.address && w.at > convertedAt));
    assert.equal(records.at(-1)?.type, "end");
  },
});

Deno.test({
  name:
    "partition: a Sentinel goes silent mid-subscription; the heartbeat notices, a failover is still followed, and the subscription comes back after the heal",
  ignore: why !== undefined,
  async fn() {
    await using bed = await createTestBed({ hosts: ["app", "r1", "r2", "r3"] });
    const { app, r1, r2, r3 } = bed.hosts;
    await using deployment = await startNetworkDeployment({ hosts: [r1, r2, r3], dir: bed.dir });
    await deployment.waitReady();
    const oldMaster = deployment.nodes[0]!;
    const silent = deployment.sentinels[2]!;
    await using tunnel = await startTunnelOn(app, {
      sentinels: deployment.sentinelAddresses,
      // sentinelReplyMs 500 (the default): ping every 1000 ms, read deadline 1000 + 2 x 500 ms.
      timeouts: { sentinelReplyMs: 500 },
      databases: [{ name: deployment.masterName, port: PORT }],
    }, { ports: [PORT], args: ["--admin", ADMIN] });
    await tunnel.waitForLog((r) => /master is/.test(messageOf(r)));
    await waitUntil(
      "the tunnel to subscribe to every Sentinel",
      async () => (await adminSentinels(app)).filter((s) => s.subscribed).length === 3,
      10_000,
    );
    await using writer = startWriter(app, { port: PORT, connections: 3 });
    await writer.waitFor(() => writer.writes().length >= 30);

    // Only the Sentinel's port goes silent: the Redis node on r3, a replica that the failover
    // may promote, stays reachable from the app host.
    const logsBefore = tunnel.logs.length;
    await using silence = await silencePort(app, r3, silent.port);
    const silencedAt = Date.now();
    const lost = await tunnel.waitForLog(
      (r) =>
        tunnel.logs.indexOf(r) >= logsBefore &&
        /^Subscription to Sentinel .* failed/.test(messageOf(r)) &&
        messageOf(r).includes(silent.address),
      15_000,
    );
    console.log(
      `partition_test: silent Sentinel: subscription loss logged ${
        timeOf(lost) - silencedAt
      } ms after the silence (deadline 1000 + 2 x 500 ms after the last message): ${
        messageOf(lost)
      }`,
    );
    assert.equal(await subscribed(app, silent), false);

    // forceFailover asks each Sentinel inside its own host, r1's first: reachable whatever the cut.
    await using watch = await deployment.watchSwitch(20_000);
    await deployment.forceFailover();
    const switched = await watch.next;
    assert.equal(switched.from, oldMaster.address);
    await writer.waitFor((r) => r.type === "write" && r.node === switched.address, 10_000);
    const firstNew = writer.writes().find((w) => w.node === switched.address)!;
    const recoveryMs = firstNew.at - switched.seenAt;
    const confirmed = await tunnel.waitForLog(
      (r) =>
        tunnel.logs.indexOf(r) >= logsBefore && /master is/.test(messageOf(r)) &&
        messageOf(r).includes(switched.address),
    );
    console.log(
      `partition_test: silent Sentinel: failover to ${switched.address} followed; first write on it ${recoveryMs} ms after the switch; ${
        messageOf(confirmed)
      }`,
    );
    assert.ok(recoveryMs < RECOVERY_MS, `first write on the new master ${recoveryMs} ms after`);
    assert.equal(await nodeThroughTunnel(app), switched.address, "a new client reaches it");
    assert.equal(await subscribed(app, silent), false, "still silent during the failover");

    await silence[Symbol.asyncDispose]();
    const healedAt = Date.now();
    await waitUntil("the subscription to come back", () => subscribed(app, silent), 15_000);
    const restored = await tunnel.waitForLog((r) =>
      /Subscription to Sentinel .* restored/.test(messageOf(r)) && r.sentinel === silent.address
    );
    console.log(
      `partition_test: silent Sentinel: subscribed again ${
        Date.now() - healedAt
      } ms after the heal (admin /api/sentinels; log: ${restored.message})`,
    );

    const resumedAt = Date.now();
    await writer.waitFor((r) => r.type === "write" && r.at > resumedAt + 500, 10_000);
    const records = await writer.stop();
    const writes = writesOf(records);
    const afterSwitch = writes.filter((w) =>
      w.node === oldMaster.address && w.at > switched.seenAt
    );
    console.log(
      `partition_test: silent Sentinel: acks by node ${
        JSON.stringify(acksByNode(writes))
      }; old-master acks after the switch: ${afterSwitch.length}`,
    );
    assert.deepEqual(afterSwitch, [], "no write acknowledged by the old master after the switch");
    assert.equal(records.at(-1)?.type, "end");
  },
});
