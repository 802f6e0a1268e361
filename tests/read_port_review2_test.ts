/**
 * A second hostile review of read ports (commit 0d4f6fe): RedisConnection's
 * idle read, the peer-closed suspension, the guard without a master, and the
 * promotion hold.
 *
 * Tests named "HOLDS: ..." guard properties that held. Every other test
 * failed against 0d4f6fe and guards the fix of one hole; its comment ("Was a
 * bug") says how it failed.
 *
 * The unit tests drive ReplicaWatcher with fakes (as tests/replica_watcher_test.ts
 * does) or with its real RoleProbe against fake nodes (tests/_fake_redis.ts);
 * the RedisConnection tests use a fake server.
 */
import assert from "node:assert/strict";
import { type Address, formatAddress } from "../src/shared/address.ts";
import type { MasterProblem } from "../src/control/master_watcher.ts";
import { ReplicaWatcher } from "../src/control/replica_watcher.ts";
import { agreeOnMaster, type SentinelView } from "../src/control/master_agreement.ts";
import { RedisConnection } from "../src/control/redis_connection.ts";
import { startRedis } from "./_deployment.ts";
import { type FakeRedis, NO_REPLY, type RespReply, startFakeRedis, status } from "./_fake_redis.ts";
import {
  DATABASE,
  delay,
  FakeMaster,
  FakeRegistry,
  FakeSentinels,
  HOUR_MS,
  info,
  M,
  masterRole,
  OFFSET,
  R1,
  R2,
  readable,
  replicaRole,
  S1,
  selectedSlave,
  servingBoth,
  timeout,
  withWatcher,
} from "./_replica_harness.ts";

const S2: Address = { hostname: "10.0.0.8", port: 26379 };

const noMaster: MasterProblem = {
  kind: "failover",
  detail: "failover of 10.0.0.1:6379 under way (a failover reported by 2 of 3 Sentinels)",
  since: Date.now(),
};

// =============================================================================================
// RedisConnection: the idle read kept pending between calls (watchIdle).

/** A fake node that answers ECHO with its argument, and after `ECHO stray` sends one more reply. */
async function echoNode(): Promise<FakeRedis> {
  return await startFakeRedis({
    handle(command, client) {
      if (command[0]?.toUpperCase() !== "ECHO") return undefined;
      const value = command[1] ?? "";
      if (value !== "stray") return value;
      // One reply more than asked for, a moment later: between calls, the idle read takes it.
      client.send(value).then(() => setTimeout(() => client.send(status("STRAY")), 20));
      return NO_REPLY;
    },
  });
}

async function openWatched(node: FakeRedis, onClosed = () => {}): Promise<RedisConnection> {
  const connection = await RedisConnection.open(
    { hostname: "127.0.0.1", port: node.port },
    { connectTimeoutMs: 1000, replyTimeoutMs: 500 },
  );
  connection.watchIdle(onClosed);
  return connection;
}

async function callOrError(connection: RedisConnection, args: string[]): Promise<unknown> {
  try {
    return await connection.call(args);
  } catch (error) {
    return `error: ${(error as Error).message}`;
  }
}

Deno.test({
  // Was a bug: the idle read kept a stray reply (sent unasked between calls) in the buffer, and
  // the next call's parse reset the buffer positions under the pending idle read, so a reply
  // came back twice. Now a peer that sends anything unasked is dropped like one that closed:
  // no call ever gets a reply meant for another.
  name:
    "RedisConnection drops a peer that sends a reply unasked between calls, and never returns it to a later call",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using node = await echoNode();
    let closes = 0;
    const dropped = Promise.withResolvers<void>();
    const connection = await openWatched(node, () => {
      closes++;
      dropped.resolve();
    });
    try {
      assert.equal(await callOrError(connection, ["ECHO", "stray"]), "stray");
      // The stray reply lands while no call is under way.
      await dropped.promise;
      const later = [
        await callOrError(connection, ["ECHO", "b".repeat(10)]),
        await callOrError(connection, ["ECHO", "c".repeat(10)]),
      ];
      for (const reply of later) assert.match(String(reply), /^error: /);
      assert.equal(closes, 1);
    } finally {
      connection.close();
    }
  },
});

Deno.test({
  name:
    "HOLDS: RedisConnection with an idle read reads many replies in turn, large ones too (the buffer grows after a take-over)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using node = await echoNode();
    let closes = 0;
    const connection = await openWatched(node, () => closes++);
    try {
      for (let i = 0; i < 300; i++) {
        // Past READ_CHUNK (4096) every tenth call: the taken-over idle read fills the first
        // chunk, then #makeRoom grows the buffer for the rest.
        const value = i % 10 === 0 ? `${i}:${"x".repeat(50_000 + i)}` : `${i}:${"y".repeat(i)}`;
        assert.equal(await connection.call(["ECHO", value]), value, `call ${i}`);
        if (i % 50 === 0) await delay(5); // Let the idle read sit pending for a while.
      }
      assert.equal(closes, 0);
    } finally {
      connection.close();
    }
  },
});

Deno.test({
  name:
    "HOLDS: RedisConnection tells of a peer's close once, fails the next call at once, and never after closing itself",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using node = await echoNode();
    let closes = 0;
    const heard = Promise.withResolvers<void>();
    const connection = await openWatched(node, () => {
      closes++;
      heard.resolve();
    });
    assert.equal(await connection.call(["ECHO", "one"]), "one");
    node.clients.at(-1)!.close();
    await timeout(heard.promise, "the peer-closed callback");
    assert.equal(connection.closed, true);
    const started = performance.now();
    const after = await callOrError(connection, ["ECHO", "two"]);
    assert.match(String(after), /^error: /);
    assert.ok(performance.now() - started < 400, "a call on a connection the peer closed waited");
    assert.equal(closes, 1);
    // Closed by this side, with the idle read pending: no callback.
    const mine = await openWatched(node, () => closes++);
    assert.equal(await mine.call(["ECHO", "three"]), "three");
    mine.close();
    await delay(50);
    assert.equal(closes, 1);
  },
});

// =============================================================================================
// The peer-closed suspension: a node that closes its ROLE connection after every reply.

interface FlappingSet {
  master: FakeRedis;
  replica: FakeRedis;
  [Symbol.asyncDispose](): Promise<void>;
}

/** A master listing one replica that follows it; `closer` closes the connection after each ROLE reply. */
async function flappingSet(closer: "replica" | "master" | "none"): Promise<FlappingSet> {
  let masterPort = 0;
  let replicaPort = 0;
  const answer = (
    reply: RespReply,
    close: boolean,
    client: { send(r: RespReply): Promise<void>; close(): void },
  ) => {
    if (!close) return reply;
    // As a node at maxclients does (it answers -ERR and closes), or one behind a proxy that
    // closes after each request.
    client.send(reply).then(() => client.close());
    return NO_REPLY;
  };
  const master = await startFakeRedis({
    handle(command, client) {
      if (command[0]?.toUpperCase() !== "ROLE") return undefined;
      return answer(
        ["master", 100, [["127.0.0.1", String(replicaPort), "100"]]],
        closer === "master",
        client,
      );
    },
  });
  masterPort = master.port;
  const replica = await startFakeRedis({
    handle(command, client) {
      if (command[0]?.toUpperCase() !== "ROLE") return undefined;
      return answer(
        ["slave", "127.0.0.1", masterPort, "connected", 100],
        closer === "replica",
        client,
      );
    },
  });
  replicaPort = replica.port;
  return {
    master,
    replica,
    async [Symbol.asyncDispose]() {
      await master[Symbol.asyncDispose]();
      await replica[Symbol.asyncDispose]();
    },
  };
}

/** Runs a replica watcher with its real RoleProbe for `ms` after its first check; counts its checks. */
async function checksIn(closer: "replica" | "master" | "none", ms: number) {
  await using nodes = await flappingSet(closer);
  const masterAddress: Address = { hostname: "127.0.0.1", port: nodes.master.port };
  const replicaAddress: Address = { hostname: "127.0.0.1", port: nodes.replica.port };
  // An hour between polls: every check in the window was woken.
  const master = new FakeMaster({
    ...DATABASE,
    timeouts: { ...DATABASE.timeouts, pollIntervalMs: HOUR_MS },
  });
  const sentinels = new FakeSentinels();
  const registry = new FakeRegistry();
  const watcher = new ReplicaWatcher({ master, sentinels, registry });
  master.set(masterAddress);
  sentinels.listed = [info(replicaAddress)];
  const controller = new AbortController();
  const running = watcher.run(controller.signal);
  try {
    await timeout(watcher.nextResolution(10_000, controller.signal), "a check");
    const before = sentinels.calls;
    await delay(ms);
    return {
      checks: sentinels.calls - before,
      connections: { master: nodes.master.connections, replica: nodes.replica.connections },
    };
  } finally {
    controller.abort();
    await running;
  }
}

for (const closer of ["replica", "master"] as const) {
  Deno.test({
    // Was a bug. Each close runs #suspend -> wake(true), and an urgent wake skips MIN_CHECK_GAP_MS;
    // the ControlConnection reopens at once (the last open succeeded, so no backoff). The check
    // asks ROLE again, the node answers and closes, and so on: back-to-back checks, each one a
    // new TCP connection (and AUTH) to the node, ROLE to the master, and SENTINEL replicas to
    // the Sentinels. No hostile client is needed: a node at maxclients does exactly this when
    // masterAuth is not set (its -ERR comes as the reply and the open does not fail), and so
    // does the master. A flapping replica is also never usable: the close lands during the
    // check that asked it, and #outDuringCheck overrides the verdict.
    // Fix: a peer close should not make the wake urgent (keep MIN_CHECK_GAP_MS), or back off
    // per address on repeated peer closes (count them as failures in ControlConnection).
    name:
      `a ${closer} that closes its ROLE connection after every reply cannot make the replica watcher check back to back`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const quiet = await checksIn("none", 1000);
      const { checks, connections } = await checksIn(closer, 1000);
      // MIN_CHECK_GAP_MS is 100 ms: at most ~10 woken checks a second, plus slack.
      assert.ok(
        checks <= 15,
        `${checks} checks in 1 s (${quiet.checks} with a quiet node), ${
          JSON.stringify(connections)
        } connections opened: the ${closer} drives the check loop`,
      );
    },
  });
}

// =============================================================================================
// The guard while no master is confirmed.

Deno.test("a suspended replica's clients are still guarded while no master is confirmed", async () => {
  // Was a bug. #suspend (a client could not connect, or the node closed its ROLE connection) marks
  // R1 not usable but keeps its clients. #guardWithoutMaster asks ROLE only of *usable*
  // replicas, so while no master is confirmed (a failover, Sentinels unreachable) R1 is never
  // asked again: it is promoted (events missed), says master, and its two read clients keep
  // writing to a node that is not the confirmed master for as long as no master is confirmed.
  // Without the suspension the guard cuts them at the next poll (read_port_hostile_test.ts).
  // Fix: guard every replica whose clients were kept (usable or suspended), or cut the
  // clients of a suspended replica while no master is confirmed.
  await withWatcher({}, async (h) => {
    await servingBoth(h);
    h.master.set(undefined, noMaster);
    // A new read client could not connect to R1 (at maxclients, say): R1 is suspended.
    h.watcher.reportUnreachable(R1);
    h.nodes.set(R1, masterRole(OFFSET + 10, [R2]));
    h.nodes.set(R2, replicaRole(R1, OFFSET + 10, "sync"));
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

Deno.test("HOLDS: with no master confirmed, a usable replica that says master or is unreachable is cut, one that says slave is kept", async () => {
  await withWatcher({}, async (h) => {
    await servingBoth(h);
    h.registry.attach(R2, 3);
    h.master.set(undefined, noMaster);
    h.nodes.set(R2, { kind: "unreachable", detail: "ROLE check failed: refused" });
    await h.rounds(3);
    assert.equal(h.registry.live(R1), 2, "R1 still says slave: its clients stay");
    assert.equal(h.registry.live(R2), 0, "R2 cannot be reached: its clients go");
    assert.deepEqual(readable(h), [], "no new client while no master is confirmed");
  });
});

// =============================================================================================
// The promotion hold (#promoting).

Deno.test("a replica selected for promotion stays out when another Sentinel reports the end of its own failover attempt", async () => {
  // Was a bug. Any failover-end event clears every hold, whichever Sentinel sent it and whichever
  // failover it ends. In a real failover with several candidate leaders, the Sentinels that lost
  // the election send -failover-abort-not-elected (after min(10 s, failover-timeout)) while the
  // leader's failover goes on: R1, selected by the leader and not promoted yet, is re-admitted by
  // the next check and gets read clients just before it becomes a master. The same holds for a
  // single Sentinel that sends +failover-end or a +switch-master naming any other node.
  // Fix: remember which Sentinel announced the promotion, and let only its failover-end (or a
  // switch-master / a master confirmed at another address) end the hold.
  await withWatcher({}, async (h) => {
    await servingBoth(h);
    h.event(selectedSlave(R1));
    assert.deepEqual(readable(h), [formatAddress(R2)]);
    h.watcher.onEvent({
      kind: "failover-end",
      channel: "-failover-abort-not-elected",
      master: DATABASE.name,
      masterAddress: M,
    }, { address: S2 });
    await h.rounds(2);
    assert.deepEqual(
      readable(h),
      [formatAddress(R2)],
      "R1, selected for promotion by S1, is a read target again after S2 gave up its own attempt",
    );
  });
});

Deno.test("a replica selected for promotion stays out when a Sentinel announces 64 other promotions", async () => {
  // Was a bug. #promoting holds at most MAX_PROMOTING (64) replicas and evicts the OLDEST: one
  // Sentinel that publishes +selected-slave for 64 made-up addresses (no check, no distrust: the
  // replica watcher takes every promotion event from a Sentinel that watches the master) evicts
  // R1's hold, and the next check re-admits R1 while its real failover goes on.
  // Fix: evict the made-up ones first (addresses no Sentinel lists and the master does not
  // list), cap per announcing Sentinel, or void the holds' early end (keep R1 out) when full.
  await withWatcher({}, async (h) => {
    await servingBoth(h);
    h.event(selectedSlave(R1));
    for (let i = 0; i < 64; i++) {
      h.watcher.onEvent(selectedSlave({ hostname: `10.9.${i >> 8}.${i & 255}`, port: 6379 }), {
        address: S2,
      });
    }
    await h.rounds(2);
    assert.deepEqual(
      readable(h),
      [formatAddress(R2)],
      "R1, selected for promotion, is a read target again after 64 other promotion events",
    );
  });
});

function view(sentinel: Address, failoverTimeoutMs: number): SentinelView {
  return {
    sentinel,
    origin: "configured",
    answer: { kind: "master", address: M, epoch: 1, flags: ["master"], failoverTimeoutMs },
  };
}

Deno.test("one Sentinel's failover-timeout cannot shorten the promotion hold to nothing", async () => {
  // Was a bug. The hold lasts failoverTimeoutMs, the MINIMUM over the deciding Sentinels
  // (agreeOnMaster): one of three configured Sentinels that reports `failover-timeout 1` makes
  // the hold expire at once, and the check right after +selected-slave re-admits R1 (the hole
  // 0d4f6fe closed). The master watcher's own hold is protected against this (a configured
  // Sentinel that reports the failover keeps it); the replica watcher's is not.
  // Fix: hold for at least the default (180 s) or the largest value any Sentinel reported; let
  // only the end of the failover (switch, failover-end from its Sentinel) shorten it.
  const agreement = agreeOnMaster(DATABASE.name, [
    view(S1, 180_000),
    view(S2, 180_000),
    view({ hostname: "10.0.0.7", port: 26379 }, 1),
  ]);
  assert.equal(agreement.kind, "agreed");
  await withWatcher({}, async (h) => {
    if (agreement.kind === "agreed") h.master.failoverTimeoutMs = agreement.failoverTimeoutMs;
    await servingBoth(h);
    h.event(selectedSlave(R1));
    await delay(5);
    await h.rounds(2);
    assert.deepEqual(
      readable(h),
      [formatAddress(R2)],
      `R1, selected for promotion, is a read target again: the hold lasted ${h.master.failoverTimeoutMs} ms`,
    );
  });
});

Deno.test("HOLDS: a replica selected for promotion stays out across checks while the master stays confirmed, and comes back after +failover-end", async () => {
  await withWatcher({}, async (h) => {
    await servingBoth(h);
    h.event(selectedSlave(R1));
    await h.rounds(5);
    assert.deepEqual(readable(h), [formatAddress(R2)]);
    assert.equal(h.registry.live(R1), 0);
    h.event({
      kind: "failover-end",
      channel: "-failover-abort-slave-timeout",
      master: DATABASE.name,
      masterAddress: M,
    });
    await h.rounds(2);
    assert.deepEqual(readable(h), [R1, R2].map(formatAddress));
  });
});

// =============================================================================================
// #takeOut(master.address) on a new confirmation.

Deno.test("the newly confirmed master's read clients are cut even when a check is already under way", async () => {
  // Was a bug. 0d4f6fe cuts a replica confirmed as the master at the start of a check. But a check
  // already under way (here, waiting on R2's ROLE: a slow replica, up to masterReplyMs; or on
  // the Sentinels, each up to its deadline) runs to its end first, finds the master changed,
  // discards itself, and only the next check cuts R1. Meanwhile R1's read clients write to it.
  // read_port_hostile_test.ts only covers a change that comes while the loop sleeps.
  // Fix: act on a master change at once (race the check against master.nextChange, or do the
  // cut in a listener), not at the start of the next check.
  await withWatcher(
    { database: { timeouts: { ...DATABASE.timeouts, pollIntervalMs: HOUR_MS } } },
    async (h) => {
      await servingBoth(h);
      const release = h.nodes.hold(R2);
      const asked = h.nodes.asks(R2);
      h.watcher.wake(true);
      await asked; // A check is under way, waiting for R2.
      h.nodes.set(R1, masterRole(OFFSET + 10, [R2]));
      h.master.set(R1); // The master watcher confirms R1 (events missed).
      assert.deepEqual(
        readable(h),
        [],
        "no new client to a replica checked against the old master",
      );
      await delay(300);
      const stillThere = h.registry.live(R1);
      release();
      await h.rounds(2);
      assert.equal(h.registry.live(R1), 0);
      assert.equal(
        stillThere,
        0,
        `R1 is the confirmed master, yet its ${stillThere} read clients stayed while a check waited on R2`,
      );
    },
  );
});

Deno.test({
  // Was a bug, against real redis-server: a replica at maxclients answers every new connection with
  // "-ERR max number of clients reached" and closes it. Once the replica watcher's ROLE connection
  // to it is dropped (a `timeout`, a CLIENT KILL, a restart), every reconnect is refused that way,
  // each refusal is a peer close, and each peer close an urgent check: the tunnel hammers an
  // already overloaded replica, the master and the Sentinels back to back (masterAuth not set:
  // with it, AUTH fails and ControlConnection backs off).
  name: "a real replica at maxclients does not make the replica watcher check back to back",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "st-review2-" });
    try {
      await using master = await startRedis(dir);
      await using replica = await startRedis(dir, {
        config: [`replicaof 127.0.0.1 ${master.port}`],
      });
      const masterAddress: Address = { hostname: "127.0.0.1", port: master.port };
      const replicaAddress: Address = { hostname: "127.0.0.1", port: replica.port };
      using admin = await RedisConnection.open(replicaAddress, {
        connectTimeoutMs: 1000,
        replyTimeoutMs: 1000,
      });
      for (let i = 0;; i++) {
        const role = await admin.call(["ROLE"]);
        if (Array.isArray(role) && role[3] === "connected") break;
        assert.ok(i < 100, "the replica never connected to its master");
        await delay(50);
      }
      const database = {
        ...DATABASE,
        timeouts: { ...DATABASE.timeouts, pollIntervalMs: HOUR_MS },
      };
      const fakeMaster = new FakeMaster(database);
      const sentinels = new FakeSentinels();
      const watcher = new ReplicaWatcher({
        master: fakeMaster,
        sentinels,
        registry: new FakeRegistry(),
      });
      fakeMaster.set(masterAddress);
      sentinels.listed = [info(replicaAddress)];
      const controller = new AbortController();
      const running = watcher.run(controller.signal);
      try {
        const round = () => timeout(watcher.nextResolution(10_000, controller.signal), "a check");
        // Checks until the master lists the replica (its ROLE may lag the replica's own).
        for (let i = 0; i < 50 && watcher.targets === undefined; i++) {
          watcher.wake(true);
          await round();
        }
        assert.deepEqual(watcher.targets?.addresses, [replicaAddress]);
        // The replica fills up: once the ROLE connection is gone, no room for a new connection.
        const clients = await admin.call(["INFO", "clients"]);
        const connected = Number(/connected_clients:(\d+)/.exec(String(clients))![1]);
        assert.equal(
          await admin.call(["CONFIG", "SET", "maxclients", String(connected - 1)]),
          "OK",
        );
        // Its ROLE connection is dropped once.
        assert.equal(await admin.call(["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]), 1);
        await delay(200);
        const before = sentinels.calls;
        await delay(1000);
        const checks = sentinels.calls - before;
        const stats = String(await admin.call(["INFO", "stats"]));
        const rejected = /rejected_connections:(\d+)/.exec(stats)?.[1];
        assert.ok(
          checks <= 15,
          `${checks} checks in 1 s; the replica rejected ${rejected} connections so far`,
        );
      } finally {
        controller.abort();
        await running;
      }
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
