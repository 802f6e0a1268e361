/**
 * The master watcher's decisions (master_watcher.ts): this file drives a real
 * ControlPlane with fakes; its cases are about master_watcher's rules (with
 * the agreement and the decision it applies): which Sentinels' epochs count,
 * what a ROLE answer means, a busy master, where credentials may go,
 * discovered Sentinels, recovery from a crashed check, and nextResolution().
 * The fake Sentinels and ROLE answers let races which real processes hit
 * only by chance be set up exactly. The plane's other rules have files of
 * their own: failover_hold_test.ts, write_fence_test.ts,
 * master_silence_test.ts, sentinel_trust_test.ts; the pure decision is in
 * master_decision_test.ts.
 *
 * Every wait is on an event (a check round ending, a ROLE call, a tunnel
 * closing), never on sampled state; the integration tests cover the same code
 * against real Redis.
 */
import assert from "node:assert/strict";
import { formatAddress } from "../src/shared/address.ts";
import {
  A,
  attach,
  B,
  F,
  LIAR,
  S1,
  S2,
  S3,
  switchTo,
  timeout,
  withWatcher,
} from "./_master_harness.ts";

Deno.test("MasterWatcher drops a check's views that were gathered before +switch-master", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 0);
    // After a failover the old master still says "master" until Sentinel reconfigures it.
    nodes.set(A, "master");
    nodes.set(B, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    // A round starts while the Sentinels still name A, and answers only after the switch.
    h.sentinels.gate = Promise.withResolvers();
    await h.sentinels.nextRoundStarts();
    h.event(switchTo(B), S1);
    await timeout(tunnel.closed.promise, "the switch to cut A's tunnel");
    const askedBefore = h.nodes.asked.length;
    h.sentinels.allSay(B, 1);
    h.sentinels.gate.resolve();
    h.sentinels.gate = undefined;
    assert.deepEqual(await h.master(), B);
    await h.sentinels.moreRounds(3);
    assert.deepEqual(
      h.nodes.asked.slice(askedBefore).filter((a) => a === formatAddress(A)),
      [],
      "A was asked ROLE (with credentials) on the strength of views older than the switch",
    );
    assert.deepEqual(h.changes.map((c) => formatAddress(c.to)), [A, B].map(formatAddress));
  });
});

Deno.test("MasterWatcher ignores a lagging Sentinel that names the old master at an older epoch", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(B, 2);
    nodes.set(A, "master");
    nodes.set(B, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), B);
    const tunnel = attach(h, B);
    // The Sentinels at epoch 2 become unreachable; the one left lags at epoch 1 and names A.
    h.sentinels.say(S1, { failed: "refused" });
    h.sentinels.say(S2, { failed: "refused" });
    h.sentinels.say(S3, { address: A, epoch: 1 });
    await h.sentinels.moreRounds(5);
    assert.equal(tunnel.closes, 0, "a tunnel to the real master was closed");
    assert.ok(!h.nodes.asked.includes(formatAddress(A)), "the old master was asked ROLE");
    assert.deepEqual(h.plane.master?.address, B);
  });
});

Deno.test("MasterWatcher follows the newest epoch of the configured Sentinels over a lagging majority", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 0);
    nodes.set(A, "master");
    nodes.set(B, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    // The +switch-master was missed; one Sentinel has the new config, two still lag.
    h.sentinels.say(S1, { address: B, epoch: 1 });
    await timeout(tunnel.closed.promise, "A's tunnels to be closed");
    assert.deepEqual(await h.master(), B);
  });
});

Deno.test("MasterWatcher closes tunnels to a master that says it is a replica, whatever the Sentinels say", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 0);
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    // The Sentinels agree on nothing (stale entries, a missed switch), and A has been demoted.
    h.sentinels.say(S1, { failed: "refused" });
    h.sentinels.say(S2, { failed: "refused" });
    h.sentinels.say(S3, { failed: "refused" });
    h.nodes.set(A, "slave");
    await timeout(tunnel.closed.promise, "A's tunnels to be closed");
    assert.equal(h.plane.problem?.kind, "not-master");
    // With no view naming a master, nothing is confirmed again, however long it waits.
    await h.sentinels.moreRounds(3);
    assert.equal(h.plane.master, undefined);
    h.nodes.set(A, "master");
    await h.sentinels.moreRounds(3);
    assert.equal(h.plane.master, undefined, "a demoted master came back with no view naming it");
  });
});

Deno.test("MasterWatcher keeps a busy master confirmed and its tunnels open", async () => {
  for (
    const busy of [
      { kind: "busy", detail: "ROLE on 10.0.0.1:6379 answered BUSY Redis is busy" },
      { kind: "busy", detail: "ROLE check failed: no reply within 1000 ms" },
    ] as const
  ) {
    await withWatcher((sentinels, nodes) => {
      sentinels.allSay(A, 0);
      nodes.set(A, "master");
    }, async (h) => {
      assert.deepEqual(await h.master(), A);
      const tunnel = attach(h, A);
      h.nodes.set(A, busy);
      const asked = h.nodes.asked.length;
      await h.sentinels.moreRounds(4);
      assert.ok(h.nodes.asked.length > asked, "ROLE was not asked while busy");
      assert.equal(tunnel.closes, 0);
      assert.deepEqual(h.plane.master?.address, A, `a ${busy.detail} master was dropped`);
      assert.equal(h.plane.problem?.kind, "busy");
    });
  }
});

Deno.test("MasterWatcher never uses, nor sends credentials to, a node that one +switch-master names", async () => {
  for (const from of [LIAR, S1]) {
    await withWatcher((sentinels, nodes) => {
      sentinels.allSay(A, 0);
      sentinels.say(LIAR, { address: F, epoch: 99 }, "discovered");
      nodes.set(A, "master");
      nodes.set(F, "master");
    }, async (h) => {
      assert.deepEqual(await h.master(), A);
      const tunnel = attach(h, A);
      h.event(switchTo(F), from);
      // Cutting is always safe: the old master's clients go at once, then come back to A.
      await timeout(tunnel.closed.promise, "the switch to cut A's tunnel");
      assert.deepEqual(await h.master(), A);
      await h.sentinels.moreRounds(3);
      assert.ok(
        !h.nodes.asked.includes(formatAddress(F)),
        `F was asked ROLE (from ${from.hostname})`,
      );
      assert.deepEqual(h.changes.map((c) => formatAddress(c.to)), [formatAddress(A)]);
      // Its next word only triggers a check: nobody is cut.
      const second = attach(h, A);
      h.event(switchTo(F), from);
      await h.sentinels.moreRounds(2);
      assert.equal(second.closes, 0, "a refused Sentinel cut clients again");
    });
  }
});

Deno.test("MasterWatcher never lets discovered Sentinels alone name a master", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 0);
    nodes.set(A, "master");
    nodes.set(F, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    // The configured Sentinels are down; one of four discovered ones names F at a huge epoch.
    for (const s of [S1, S2, S3]) h.sentinels.say(s, { failed: "refused" });
    h.sentinels.say(LIAR, { address: F, epoch: 1e9 }, "discovered");
    for (let i = 0; i < 3; i++) {
      h.sentinels.say(
        { hostname: "10.0.1.1", port: 26379 + i },
        { address: A, epoch: 0 },
        "discovered",
      );
    }
    await h.sentinels.moreRounds(4);
    assert.ok(!h.nodes.asked.includes(formatAddress(F)));
    assert.deepEqual(h.plane.master?.address, A);
  });
});

Deno.test("MasterWatcher.nextResolution() settles when the next check has run", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 0);
    nodes.set(A, "master");
  }, async (h) => {
    await h.master();
    const rounds = h.sentinels.rounds;
    h.route.reportUnreachable(A);
    await h.plane.nextResolution(1000, new AbortController().signal);
    assert.ok(h.sentinels.rounds > rounds);
  });
});

Deno.test("MasterWatcher lets no discovered Sentinel hold clients with a failover flag", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    sentinels.say(
      LIAR,
      { address: A, epoch: 1, flags: ["master", "failover_in_progress"] },
      "discovered",
    );
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    await h.sentinels.moreRounds(5);
    assert.equal(h.plane.failover, undefined);
    assert.equal(tunnel.closes, 0);
  });
});

Deno.test("MasterWatcher takes no epoch from one discovered Sentinel, so the configured ones still decide", async () => {
  const discovered = [1, 2, 3, 4].map((i) => ({ hostname: `10.1.0.${i}`, port: 26379 }));
  await withWatcher((sentinels, nodes) => {
    for (const s of [S1, S2, S3]) sentinels.say(s, { failed: "down" });
    discovered.forEach((d, i) =>
      sentinels.say(d, { address: A, epoch: i === 3 ? 99_999_999_999_999 : 1 }, "discovered")
    );
    nodes.set(A, "master");
    nodes.set(B, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    h.sentinels.allSay(B, 2);
    await timeout(tunnel.closed.promise, "A's tunnels to be closed");
    assert.deepEqual(await h.master(), B);
  });
});

Deno.test("MasterWatcher survives an unexpected error in a check and goes on checking", async () => {
  let thrown = 0;
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 0);
    nodes.set(A, "master");
    const masterViews = sentinels.masterViews.bind(sentinels);
    sentinels.masterViews = (name, signal) => {
      if (thrown++ === 0) throw new TypeError("a bug in a check");
      return masterViews(name, signal);
    };
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    assert.ok(thrown > 1);
  });
});
