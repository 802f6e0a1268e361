/**
 * A hostile review of read ports (issue #10). The tests whose comment says
 * "Was a bug" failed against the first read-port code (802ccdd) and guard
 * its fix; the "HOLDS" ones guard properties that held from the start.
 *
 * The unit tests drive {@linkcode ReplicaWatcher} with fakes, as
 * tests/replica_watcher_test.ts does; the integration tests run real
 * redis-server and Sentinel processes.
 */
import assert from "node:assert/strict";
import { type Address, formatAddress } from "../src/shared/address.ts";
import { ReplicaWatcher } from "../src/control/replica_watcher.ts";
import { parseMasterRole, parseReplicaRole } from "../src/control/role_probe.ts";
import { type FakeRedis, startFakeRedis } from "./_fake_redis.ts";
import { renderPrometheus } from "../src/ops/metrics.ts";
import { DatabaseStats } from "../src/shared/stats.ts";
import { freePort, type RedisProcess, startDeployment, startRedis } from "./_deployment.ts";
import { connectClient, startTunnel, type TunnelProcess } from "./_tunnel.ts";
import type { RedisConnection } from "../src/control/redis_connection.ts";
import { RespErrorReply } from "../src/control/resp.ts";
import {
  DATABASE,
  delay,
  FakeMaster,
  FakeRegistry,
  FakeSentinels,
  type Harness,
  HOUR_MS,
  info,
  M,
  masterRole,
  OFFSET,
  R1,
  R2,
  readable,
  replicaRole,
  servingBoth,
  timeout,
  withWatcher,
} from "./_replica_harness.ts";

// ---------------------------------------------------------------------------------------------
// Was a bug: no replica is checked while no master is confirmed.

Deno.test("a replica that says master loses its read clients even while no master is confirmed", async () => {
  // A failover the tunnel learned of by polling (its events were missed: a resubscription, a
  // partition from the Sentinels' pub/sub): the master watcher holds, no master is confirmed.
  // R1 is promoted and accepts writes. README: "a missed event is caught by the next poll's ROLE
  // check". But ReplicaWatcher#check returns at once while no master is confirmed, so no ROLE
  // is asked at all, and R1's read clients write to a master until a new master is confirmed AND
  // a check against it completes.
  await withWatcher({}, async (h) => {
    await servingBoth(h);
    h.master.set(undefined, {
      kind: "failover",
      detail: "failover of 10.0.0.1:6379 under way (a failover reported by 2 of 3 Sentinels)",
      since: Date.now(),
    });
    h.nodes.set(R1, masterRole(OFFSET + 10, [R2]));
    h.nodes.set(R2, replicaRole(R1, OFFSET + 10, "sync"));
    // Ten poll intervals.
    await h.rounds(10);
    assert.equal(
      h.registry.live(R1),
      0,
      `R1 says master, yet its 2 read clients are still connected after 10 polls (asked: ${
        JSON.stringify([...new Set(h.nodes.asked)])
      })`,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Was a bug: a replica the tunnel confirmed as the master keeps its read clients while a check waits
// on a hung peer.

for (
  const hung of [
    { what: "another replica's ROLE", hold: (h: Harness) => h.nodes.hold(R2) },
    {
      what: "SENTINEL replicas",
      hold: (h: Harness) => {
        const { promise, resolve } = Promise.withResolvers<void>();
        h.sentinels.gate = promise;
        return () => {
          h.sentinels.gate = undefined;
          resolve();
        };
      },
    },
  ]
) {
  Deno.test(`the confirmed master's read clients are cut without waiting for a hung ${hung.what}`, async () => {
    // Events missed; the master watcher confirms R1 (it says master: it accepts writes). The
    // tunnel now KNOWS R1 is a master, yet R1's read-port clients stay until a whole replica
    // check ends, and that check waits for a hung peer (masterReplyMs, or every Sentinel's
    // reply deadline in turn). Meanwhile every write on the read port is acknowledged by R1.
    await withWatcher(
      { database: { timeouts: { ...DATABASE.timeouts, pollIntervalMs: HOUR_MS } } },
      async (h) => {
        await servingBoth(h);
        h.nodes.set(R1, masterRole(OFFSET + 10, [R2]));
        h.nodes.set(R2, replicaRole(R1, OFFSET + 10));
        h.sentinels.listed = [info(R2), info(M, { flags: ["s_down"] })];
        const release = hung.hold(h);
        h.master.set(R1);
        // Let the check against R1 start and hang; give it ample time otherwise.
        await delay(300);
        const stillThere = h.registry.live(R1);
        release();
        await h.rounds(1);
        assert.equal(
          stillThere,
          0,
          `R1 is the confirmed master, yet its ${stillThere} read clients stayed while ${hung.what} hung`,
        );
      },
    );
  });
}

// ---------------------------------------------------------------------------------------------
// Was a bug (defence in depth): a replica named by +selected-slave is re-admitted by the very next
// check, before Sentinel sends it SLAVEOF NO ONE.

Deno.test("a replica Sentinel selected for promotion gets no new client while the failover may still promote it", async () => {
  // The replica watcher cuts R1 at +selected-slave and runs an urgent check at once. Unless the
  // master watcher happens to have dropped the master (it does not when the event comes from a
  // Sentinel it distrusts, or names the master in another spelling), that check finds R1 still a
  // connected replica (SLAVEOF NO ONE comes ~100 ms later) and makes it usable again: new read
  // clients join R1 just before it becomes a master.
  await withWatcher({}, async (h) => {
    await servingBoth(h);
    h.event({
      kind: "promotion",
      channel: "+selected-slave",
      master: DATABASE.name,
      masterAddress: M,
      replica: R1,
    });
    assert.deepEqual(readable(h), [formatAddress(R2)]);
    await h.rounds(2);
    assert.deepEqual(
      readable(h),
      [formatAddress(R2)],
      "R1, selected for promotion moments ago, is a read target again",
    );
  });
});

// ---------------------------------------------------------------------------------------------
// HOLDS: regression guards.

Deno.test("HOLDS: a replica is never a target when its ROLE names the master in another spelling", async () => {
  await withWatcher({}, async (h) => {
    h.nodes.set(R1, replicaRole({ hostname: "master.example", port: 6379 }));
    await h.rounds(2);
    assert.deepEqual(readable(h), [formatAddress(R2)]);
  });
});

Deno.test("HOLDS: a Sentinel listing the master itself, or a node the master does not list, gives it no client", async () => {
  await withWatcher({}, async (h) => {
    const F: Address = { hostname: "10.6.6.6", port: 6379 };
    h.nodes.set(F, replicaRole(M));
    h.sentinels.listed = [info(M), info(F), info(R1)];
    await h.rounds(2);
    assert.deepEqual(readable(h), [formatAddress(R1)]);
    assert.ok(
      !h.nodes.asked.includes(formatAddress(F)),
      "a node the master does not list was asked",
    );
  });
});

Deno.test("HOLDS: duplicate and case-variant Sentinel entries make one replica, asked once per check", async () => {
  await withWatcher({}, async (h) => {
    const upper: Address = { hostname: "R1.EXAMPLE", port: 6379 };
    const lower: Address = { hostname: "r1.example", port: 6379 };
    h.nodes.set(M, masterRole(OFFSET, [lower]));
    h.nodes.set(upper, replicaRole(M));
    h.nodes.set(lower, replicaRole(M));
    h.sentinels.listed = [info(lower), info(upper), info(lower)];
    await h.rounds(3);
    assert.equal(h.watcher.replicas.length, 1);
    assert.equal(h.watcher.targets?.addresses.length, 1);
  });
});

Deno.test("HOLDS: hostile ROLE replies parse as malformed, never as a usable replica or master view", () => {
  for (
    const reply of [
      ["slave", "10.0.0.1", 6379, "connected", "12"],
      ["slave", "10.0.0.1", "6379", "connected", 12],
      ["slave", "10.0.0.1", 6379, "connected", Number.NaN],
      ["slave", "10.0.0.1", 6379, "connected", 1e300],
      ["slave", "not a host!", 6379, "connected", 12],
      ["slave", "10.0.0.1", 0, "connected", 12],
      ["slave", "10.0.0.1", 6379, 7, 12],
    ]
  ) assert.equal(parseReplicaRole(reply), undefined, JSON.stringify(reply));
  for (
    const reply of [
      ["master", "100", []],
      ["master", 100, [["10.0.0.2", 6379, "100"]]],
      ["master", 100, [["10.0.0.2", "6379", "-5"]]],
      ["master", 100, [["10.0.0.2", "6379", "1e3"]]],
      ["master", 100, ["10.0.0.2"]],
      ["master", 100, "none"],
    ]
  ) assert.equal(parseMasterRole(reply), undefined, JSON.stringify(reply));
});

Deno.test("HOLDS: metrics of one name on several entries never repeat a series", () => {
  const sample = (role: "master" | "replica", listen: string, replicas: string[]) => ({
    name: "mymaster",
    role,
    port: Number(listen.split(":")[1]),
    listen,
    stats: new DatabaseStats(),
    activeConnections: 0,
    readyConnections: 0,
    hasMaster: true,
    replicas: replicas.map((address) => ({ address, usable: true, lagBytes: 0, clients: 1 })),
  });
  const text = renderPrometheus([
    sample("master", "127.0.0.1:6380", []),
    sample("replica", "127.0.0.2:6380", ["10.0.0.2:6379"]),
    sample("replica", "127.0.0.3:6380", ["10.0.0.2:6379"]),
    sample("replica", "127.0.0.1:6381", ["10.0.0.2:6379"]),
  ], []);
  const series = text.split("\n").filter((l) => l.startsWith("sentinel_tunnel_"))
    .map((l) => l.slice(0, l.lastIndexOf(" ")));
  const repeated = series.filter((s, i) => series.indexOf(s) !== i);
  assert.deepEqual(repeated, []);
});

// ---------------------------------------------------------------------------------------------
// Was a bug: a reload that changes masterAuth (or tls, or the node deadlines) leaves the replica
// watcher on its old ROLE connections; the master watcher resets its own.

interface FakeReplicaSet {
  master: FakeRedis;
  replica: FakeRedis;
  /** Passwords each node got with AUTH, in order. */
  auths: Map<FakeRedis, string[]>;
  [Symbol.asyncDispose](): Promise<void>;
}

async function fakeReplicaSet(): Promise<FakeReplicaSet> {
  const auths = new Map<FakeRedis, string[]>();
  let masterPort = 0;
  let replicaPort = 0;
  const record = (node: () => FakeRedis, command: readonly string[]) => {
    const list = auths.get(node()) ?? [];
    list.push(command[command.length - 1]!);
    auths.set(node(), list);
  };
  const master: FakeRedis = await startFakeRedis({
    handle(command) {
      const name = command[0]!.toUpperCase();
      if (name === "AUTH") return record(() => master, command), undefined;
      if (name === "ROLE") return ["master", 100, [["127.0.0.1", String(replicaPort), "100"]]];
      return undefined;
    },
  });
  masterPort = master.port;
  const replica: FakeRedis = await startFakeRedis({
    handle(command) {
      const name = command[0]!.toUpperCase();
      if (name === "AUTH") return record(() => replica, command), undefined;
      if (name === "ROLE") return ["slave", "127.0.0.1", masterPort, "connected", 100];
      return undefined;
    },
  });
  replicaPort = replica.port;
  return {
    master,
    replica,
    auths,
    async [Symbol.asyncDispose]() {
      await master[Symbol.asyncDispose]();
      await replica[Symbol.asyncDispose]();
    },
  };
}

Deno.test({
  name:
    "a reload's new masterAuth reaches the replica watcher's ROLE connections, as it does the master watcher's",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using nodes = await fakeReplicaSet();
    const masterAddress: Address = { hostname: "127.0.0.1", port: nodes.master.port };
    const replicaAddress: Address = { hostname: "127.0.0.1", port: nodes.replica.port };
    const auth = (password: string) => ({ password, passwordSource: "config" });
    // withWatcher with the real probe, set up by hand.
    const master = new FakeMaster({ ...DATABASE, masterAuth: auth("old-secret") });
    const sentinels = new FakeSentinels();
    const registry = new FakeRegistry();
    const watcher = new ReplicaWatcher({ master, sentinels, registry });
    master.set(masterAddress);
    sentinels.listed = [info(replicaAddress)];
    const controller = new AbortController();
    const running = watcher.run(controller.signal);
    try {
      const round = () => timeout(watcher.nextResolution(10_000, controller.signal), "a check");
      await round();
      await round();
      assert.deepEqual(watcher.targets?.addresses, [replicaAddress]);
      // A reload: MasterWatcher.update() takes the new settings and resets its own probe, and the
      // tunnel server tells the replica watcher.
      master.database = { ...master.database, masterAuth: auth("new-secret") };
      watcher.settingsChanged();
      await round();
      await round();
      assert.deepEqual(
        nodes.auths.get(nodes.replica),
        ["old-secret", "new-secret"],
        "the replica watcher still checks the replica on a connection made with the old password",
      );
    } finally {
      controller.abort();
      await running;
    }
  },
});

// ---------------------------------------------------------------------------------------------
// Integration: real redis-server and Sentinel processes.

const processes = { sanitizeOps: false, sanitizeResources: false };

async function nodeOf(client: RedisConnection): Promise<number> {
  const reply = await client.call(["CONFIG", "GET", "port"]);
  assert.ok(Array.isArray(reply) && reply.length === 2, `CONFIG GET port: ${String(reply)}`);
  return Number(reply[1]);
}

async function waitUsable(tunnel: TunnelProcess, replicas: readonly RedisProcess[]) {
  for (const replica of replicas) {
    await tunnel.waitForLog(
      (r) => String(r.message).includes(`replica ${replica.address} is usable`),
      20_000,
    );
  }
}

Deno.test(
  "a replica restarted as a master between two polls gets no read client whose write it acknowledges",
  processes,
  async () => {
    // SIGKILL a replica and start a node on its port that is a master (a pod restarted with an
    // empty config, say). Its read clients' tunnels ended, but nothing takes it out of use: the
    // replica watcher's persistent ROLE connection died too, and is only re-dialled at the next
    // poll. New read clients go to it (it has the fewest clients) and their writes are acknowledged.
    await using deployment = await startDeployment({ masterName: "restarted" });
    const readPort = freePort();
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      // The default poll interval (1 s).
      timeouts: { clientWaitMs: 3000, pollIntervalMs: 1000 },
      databases: [{ name: "restarted", port: readPort, role: "replica" }],
    }, { ports: [readPort] });
    const [, victim, other] = deployment.nodes as [RedisProcess, RedisProcess, RedisProcess];
    await waitUsable(tunnel, [victim, other]);
    victim.kill();
    await victim.exited;
    await using restarted = await startRedis(deployment.dir, { port: victim.port });
    assert.equal((await deployment.cli(restarted, "ROLE")).split("\n")[0], "master");
    const acknowledged: string[] = [];
    const clients: RedisConnection[] = [];
    try {
      for (let i = 0; i < 4; i++) {
        const client = await connectClient(readPort);
        clients.push(client);
        const node = await nodeOf(client);
        const reply = await client.call(["SET", `restarted:${i}`, "v"]);
        if (!(reply instanceof RespErrorReply)) {
          acknowledged.push(`client ${i} on ${node}: ${reply}`);
        }
      }
    } finally {
      for (const client of clients) client.close();
    }
    assert.deepEqual(acknowledged, [], "writes on the read port were acknowledged by a master");
  },
);

Deno.test(
  'a reload from whenNoReplica "master" to "reject" leaves no read-port client writing to the master',
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "fallback", replicas: 0 });
    const readPort = freePort();
    const config = (whenNoReplica: string) => ({
      sentinels: deployment.sentinels.map((s) => s.address),
      timeouts: { clientWaitMs: 2000, pollIntervalMs: 500 },
      databases: [{ name: "fallback", port: readPort, role: "replica", whenNoReplica }],
    });
    await using tunnel = await startTunnel(config("master"), { ports: [readPort] });
    using client = await connectClient(readPort, 5000);
    assert.equal(await nodeOf(client), deployment.nodes[0]!.port);
    assert.equal(await client.call(["SET", "fallback:before", "v"]), "OK");
    await Deno.writeTextFile(tunnel.configPath, JSON.stringify(config("reject")));
    tunnel.kill("SIGHUP");
    await tunnel.waitForLog((r) => /^Reloaded/.test(String(r.message)));
    // Give the reload's checks a few polls.
    await delay(1500);
    let after: unknown;
    try {
      after = await client.call(["SET", "fallback:after", "v"]);
    } catch (error) {
      after = error;
    }
    assert.notEqual(
      after,
      "OK",
      'the read port is "reject" now, yet a client it sent to the master still writes there',
    );
  },
);
