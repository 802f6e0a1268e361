/**
 * A hostile review of the write fence (`fence.afterMs`, write_fence.ts) and the silent-master
 * cut (master_silence.ts) of issue #11; it was fence_review_test.ts. Each test drives a real
 * ControlPlane with fake Sentinels and fake ROLE answers (the harness in _master_harness.ts) and
 * sets a race or a path up exactly, except the TLS ones, which use a real RoleProbe on a real
 * socket that accepts and never answers. Tests named "(held)" guard properties that held; every
 * other one failed against the first version of the fence (e0882d8) and guards its fix.
 */
import assert from "node:assert/strict";
import { type Address, formatAddress, sameAddress } from "../src/shared/address.ts";
import type { DatabaseConfig } from "../src/shared/settings.ts";
import { RoleProbe } from "../src/control/role_probe.ts";
import { parseConfig } from "../src/config/mod.ts";
import {
  A,
  attach,
  B,
  DATABASE,
  FENCED,
  problemOf,
  S1,
  S2,
  S3,
  sentinelsGone,
  timeout,
  withWatcher,
} from "./_master_harness.ts";

const R: Address = { hostname: "10.0.0.3", port: 6379 };
const D1: Address = { hostname: "10.0.1.9", port: 26379 };
const D2: Address = { hostname: "10.0.1.10", port: 26379 };
const D3: Address = { hostname: "10.0.1.11", port: 26379 };
const D4: Address = { hostname: "10.0.1.12", port: 26379 };

// ---------------------------------------------------------------------------------------------
// Findings: these fail on the code under review.
// ---------------------------------------------------------------------------------------------

Deno.test("fence review: a tunnel started with only a minority of the configured Sentinels is fenced after afterMs", async () => {
  await withWatcher((sentinels, nodes) => {
    // Started inside the partition: one configured Sentinel of three names A, the others are gone.
    sentinels.say(S1, { address: A, epoch: 1 });
    sentinels.say(S2, { failed: "no reply within 500 ms" });
    sentinels.say(S3, { failed: "no reply within 500 ms" });
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    // No majority has ever confirmed A: after afterMs (150 ms) the fence must be closed.
    await timeout(
      tunnel.closed.promise,
      "the fence to cut A's tunnel (never armed at startup)",
      2000,
    );
    assert.equal(h.plane.master, undefined);
  }, FENCED);
});

Deno.test("fence review: a tunnel started with only discovered Sentinels answering is fenced after afterMs", async () => {
  await withWatcher((sentinels, nodes) => {
    for (const s of [S1, S2, S3]) sentinels.say(s, { failed: "no reply within 500 ms" });
    // 4 of the 7 Sentinels watching the master: a majority, with no configured one answering.
    for (const d of [D1, D2, D3, D4]) sentinels.say(d, { address: A, epoch: 1 }, "discovered");
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    await timeout(
      tunnel.closed.promise,
      "the fence to cut A's tunnel (never armed at startup)",
      2000,
    );
  }, FENCED);
});

Deno.test("fence review: a reload that adds a fence while the Sentinels are already gone closes it after afterMs", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    sentinelsGone(h);
    await h.sentinels.moreRounds(2);
    h.update(FENCED);
    await timeout(tunnel.closed.promise, "the fence added by a reload to cut A's tunnel", 2000);
  });
});

Deno.test("fence review: a reload that shortens fence.afterMs applies to the running fence", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    await h.sentinels.moreRounds(1);
    const tunnel = attach(h, A);
    sentinelsGone(h);
    await h.sentinels.moreRounds(2);
    h.update(FENCED); // afterMs 3600000 -> 150
    await timeout(tunnel.closed.promise, "the shortened fence to cut A's tunnel", 2000);
  }, { ...DATABASE, fence: { afterMs: 3_600_000 } });
});

Deno.test("fence review: a reload that turns the fence off opens a closed fence", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    // Left with one configured Sentinel, which still names A: fenced.
    sentinelsGone(h, [S2, S3]);
    await problemOf(h, "fenced");
    // The operator turns the fence off to get writes back: the agreement (S1) names A, A says master.
    h.update(DATABASE);
    assert.deepEqual(await h.master(), A, "still fenced after the fence was turned off");
  }, FENCED);
});

Deno.test("fence review: a closed fence opens when a majority names a new master at a lower config-epoch (Sentinels redeployed)", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 5);
    nodes.set(A, "master");
    nodes.set(B, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    // The Sentinels are redeployed (config-epochs start again) and take longer than afterMs.
    sentinelsGone(h);
    await problemOf(h, "fenced");
    // Back: all three name B at epoch 0; A is now B's replica, B says master.
    h.nodes.set(A, "slave");
    h.sentinels.allSay(B, 0);
    // Unfenced, the "older view" path asks A, sees slave, forgets the epoch and follows B.
    // Fenced, the gate refuses A (no majority names it) before ROLE: the epoch is never forgotten.
    assert.deepEqual(await h.master(), B, "fenced for good with 3 of 3 Sentinels naming B");
  }, FENCED);
});

Deno.test("fence review: a healthy majority keeps the fence open for a busy master whose ROLE takes masterReplyMs", async () => {
  // The defaults pollIntervalMs 1000 and masterReplyMs 1000 with "afterMs": 2000 (twice the poll),
  // scaled down ten times; each Sentinel round trip takes 5 ms.
  const database: DatabaseConfig = {
    ...DATABASE,
    fence: { afterMs: 200 },
    timeouts: { ...DATABASE.timeouts, pollIntervalMs: 100, masterReplyMs: 100 },
  };
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    sentinels.delayMs = 5;
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    // Busy: no reply within masterReplyMs. The design keeps a busy master and its clients.
    h.nodes.delayMs = 100;
    h.nodes.set(A, { kind: "busy", detail: "ROLE check failed: no reply within 100 ms" });
    // Every round has 3 of 3 configured Sentinels naming A, about every 205 ms; the fence's
    // time restarts only after the ROLE answer, so it runs out between two confirmations.
    await h.sentinels.moreRounds(6);
    assert.equal(tunnel.closes, 0, `cut with a healthy majority: ${h.plane.problem?.detail}`);
    assert.notEqual(h.plane.problem?.kind, "fenced");
  }, database);
});

Deno.test("fence review: the config refuses a fence.afterMs below the span of a healthy check", () => {
  // Was a bug: afterMs 100 with the default pollIntervalMs 1000 closed the fence between two
  // healthy checks, every poll. The config refuses it now (tests/config_test.ts has the message).
  assert.throws(
    () =>
      parseConfig(
        JSON.stringify({
          sentinels: ["127.0.0.1:26379"],
          fence: { afterMs: 100 },
          databases: [{ name: "mymaster", port: 6380 }],
        }),
        "review.jsonc",
        { getEnv: () => undefined },
      ),
    /fence\.afterMs: 100 is too short/,
  );
});

Deno.test("silent review: a master that goes silent while every Sentinel is gone too has its tunnels cut", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    // The tunnel's host loses its uplink: Sentinels and master alike go silent.
    sentinelsGone(h);
    h.nodes.set(A, {
      kind: "unreachable",
      detail: "ROLE check failed: no connection within 1000 ms",
      silent: true,
    });
    // After the first silent ROLE A is no longer confirmed, no view names it, and no later check
    // asks it again: #noteSilence never runs a second time, so the tunnel hangs until TCP gives up.
    await timeout(tunnel.closed.promise, "the silent master's tunnels to be cut", 6000);
  });
});

/** A TCP port that accepts connections and never reads or writes: a frozen process (SIGSTOP). */
async function withFrozenNode(body: (address: Address) => Promise<void>): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) accepted.push(conn);
    } catch { /* closed */ }
  })();
  try {
    await body({ hostname: "127.0.0.1", port: listener.addr.port });
  } finally {
    listener.close();
    await accepting;
    for (const conn of accepted) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  }
}

Deno.test("silent review: over TLS, a frozen master that accepts TCP is busy, not silent (as it is in plain TCP)", async () => {
  await withFrozenNode(async (address) => {
    for (const tls of [undefined, { verify: false }]) {
      using probe = new RoleProbe(() => ({
        connectTimeoutMs: 200,
        replyTimeoutMs: 200,
        ...(tls ? { tls } : {}),
      }));
      const role = await probe.check(address, new AbortController().signal);
      const label = tls ? "TLS" : "plain";
      // Plain: connect succeeds, ROLE has no reply: busy, and a confirmed master keeps its clients.
      // TLS: the handshake times out: "silent", and its clients are cut after 3 s.
      assert.equal(role.kind, "busy", `${label}: ${JSON.stringify(role)}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// What held: regression tests that pass.
// ---------------------------------------------------------------------------------------------

Deno.test("fence review (held): a stopped watcher leaves no fence timer behind, even with afterMs of an hour", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    await h.sentinels.moreRounds(2);
    // The op sanitizer fails this test if the 1-hour timer outlives run().
  }, { ...DATABASE, fence: { afterMs: 3_600_000 } });
});

Deno.test("fence review (held): discovered Sentinels alone do not open a closed fence", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    sentinelsGone(h);
    await timeout(tunnel.closed.promise, "the fence to cut A's tunnel");
    for (const d of [D1, D2, D3]) h.sentinels.say(d, { address: A, epoch: 1 }, "discovered");
    await h.sentinels.moreRounds(5);
    assert.equal(h.plane.master, undefined);
    assert.equal(h.plane.problem?.kind, "fenced");
  }, FENCED);
});

Deno.test("fence review (held): a configured minority naming a newer master does not open a closed fence", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
    nodes.set(B, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    sentinelsGone(h);
    await problemOf(h, "fenced");
    h.sentinels.say(S1, { address: B, epoch: 2 });
    await h.sentinels.moreRounds(5);
    assert.equal(h.plane.master, undefined);
    // A majority at the newest epoch opens it, on B.
    h.sentinels.say(S2, { address: B, epoch: 2 });
    assert.deepEqual(await h.master(), B);
  }, FENCED);
});

Deno.test("fence review (held): a failover hold that outlives afterMs fences, and the switch confirmed by a majority opens it", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
    nodes.set(B, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    // A configured majority reports the failover under way, for longer than afterMs.
    for (const s of [S1, S2, S3]) {
      h.sentinels.say(s, { address: A, epoch: 1, flags: ["master", "failover_in_progress"] });
    }
    await timeout(tunnel.closed.promise, "the hold to cut A's tunnel");
    await problemOf(h, "fenced");
    assert.equal(h.plane.master, undefined);
    h.nodes.set(A, "slave");
    h.sentinels.allSay(B, 2);
    assert.deepEqual(await h.master(), B);
    assert.equal(h.plane.problem, undefined);
  }, FENCED);
});

Deno.test("fence review (held): a read port of a fenced database offers neither replicas nor the master to new clients", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    sentinels.replicaList = [{
      address: formatAddress(R),
      replica: R,
      flags: ["slave"],
      masterLinkStatus: "ok",
      replicationOffset: 100,
      reportedBy: formatAddress(S1),
    }];
    // One ROLE reply of the master serves both: it confirms A and lists R as attached.
    nodes.set(A, {
      kind: "role",
      role: "master",
      asMaster: { offset: 100, replicas: [{ address: R, offset: 100 }] },
    });
    nodes.set(R, {
      kind: "role",
      role: "slave",
      asReplica: { master: A, state: "connected", offset: 100 },
    });
  }, async (h) => {
    const read = h.attachPort({ ...FENCED, port: 6381, role: "replica", whenNoReplica: "master" });
    while (read.route.targets?.kind !== "replica") {
      await timeout(h.plane.nextChange, "the read port to offer a replica");
    }
    const targets = read.route.targets;
    assert.deepEqual(targets?.kind, "replica");
    assert.ok(targets?.addresses.some((a) => sameAddress(a, R)));
    sentinelsGone(h);
    await problemOf(h, "fenced");
    assert.equal(read.route.targets, undefined, "a fenced read port still offers somewhere");
    assert.equal(read.route.problem?.kind, "fenced");
  }, FENCED);
});
