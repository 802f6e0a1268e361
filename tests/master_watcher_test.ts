/**
 * MasterWatcher's decisions, with fake Sentinels and fake ROLE answers, so
 * that races which real processes hit only by chance can be set up exactly.
 * Every wait is on an event (a check round ending, a ROLE call, a tunnel
 * closing), never on sampled state. The integration tests cover the same code
 * against real Redis.
 */
import assert from "node:assert/strict";
import { type Address, formatAddress } from "../src/shared/address.ts";
import type { SentinelEvent } from "../src/control/sentinel_events.ts";
import {
  A,
  attach,
  B,
  DATABASE,
  FENCED,
  LIAR,
  problemOf,
  S1,
  S2,
  S3,
  sentinelsGone,
  timeout,
  withWatcher,
} from "./_master_harness.ts";

const F: Address = { hostname: "10.6.6.6", port: 6379 };

const switchTo = (to: Address): SentinelEvent => ({
  kind: "switch-master",
  master: DATABASE.name,
  from: A,
  to,
});
const promotion = (master: Address): SentinelEvent => ({
  kind: "promotion",
  channel: "+selected-slave",
  master: DATABASE.name,
  masterAddress: master,
  replica: undefined,
});
const failoverEnd = (master: Address): SentinelEvent => ({
  kind: "failover-end",
  channel: "-failover-abort-slave-timeout",
  master: DATABASE.name,
  masterAddress: master,
});

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

Deno.test("MasterWatcher holds clients from a promotion until the switch, then serves the new master", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 0);
    nodes.set(A, "master");
    nodes.set(B, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    h.sentinels.say(S1, { address: A, epoch: 1, flags: ["master", "failover_in_progress"] });
    h.event(promotion(A), S1);
    await timeout(tunnel.closed.promise, "the promotion to cut A's tunnel");
    assert.equal(h.plane.master, undefined);
    // Held while the failover is under way: a client waiting now gets no master.
    const waiting = h.plane.waitForMaster(5000, new AbortController().signal);
    await h.sentinels.moreRounds(5);
    assert.equal(
      h.plane.master,
      undefined,
      "a client reached the old master during the promotion",
    );
    // The others already follow the leader's hello; the leader itself still names A, mid-failover.
    h.sentinels.say(S2, { address: B, epoch: 1 });
    h.sentinels.say(S3, { address: B, epoch: 1 });
    h.event(switchTo(B), S2);
    assert.deepEqual((await timeout(waiting, "the new master"))?.address, B);
  });
});

Deno.test("MasterWatcher resumes on the old master when the failover is aborted", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 0);
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    h.sentinels.say(S1, { address: A, epoch: 1, flags: ["master", "failover_in_progress"] });
    h.event(promotion(A), S1);
    await timeout(tunnel.closed.promise, "the promotion to cut A's tunnel");
    await h.sentinels.moreRounds(3);
    assert.equal(h.plane.master, undefined);
    const askedDuringHold = h.nodes.asked.length;
    h.sentinels.say(S1, { address: A, epoch: 1 });
    h.event(failoverEnd(A), S1);
    assert.deepEqual(await h.master(), A);
    assert.ok(h.nodes.asked.length > askedDuringHold, "A was not confirmed by ROLE again");
  });
});

Deno.test("MasterWatcher ends a hold no Sentinel bears out at the next check, and distrusts its source", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 0);
    sentinels.say(LIAR, { address: A, epoch: 0 }, "discovered");
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const first = attach(h, A);
    h.event(promotion(A), LIAR);
    await timeout(first.closed.promise, "the promotion to cut A's tunnel");
    assert.deepEqual(await h.master(), A);
    const second = attach(h, A);
    h.event(promotion(A), LIAR);
    await h.sentinels.moreRounds(2);
    assert.equal(second.closes, 0, "a refused Sentinel cut clients again");
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

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

Deno.test("MasterWatcher distrusts a Sentinel that floods +switch-master, and its checks keep completing", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    sentinels.say(LIAR, { address: A, epoch: 1 }, "discovered");
    nodes.set(A, "master");
    nodes.set(B, "master");
    nodes.set(F, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    h.sentinels.delayMs = 30;
    const rounds = h.sentinels.rounds;
    let cuts = 0;
    for (let i = 0; i < 60; i++) {
      const tunnel = attach(h, A);
      h.event(switchTo(i % 2 ? B : F), LIAR);
      if (tunnel.closes > 0) cuts++;
      await pause(10);
    }
    assert.ok(cuts <= 2, `the flood cut clients ${cuts} times`);
    assert.ok(h.sentinels.rounds - rounds >= 5, "checks stopped completing under the flood");
    assert.ok(!h.nodes.asked.includes(formatAddress(F)));
    assert.deepEqual(await h.master(), A);
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

Deno.test("MasterWatcher does not confirm a master cut by +switch-master again while no Sentinel answers", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
    nodes.set(B, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    for (const s of [S1, S2, S3]) h.sentinels.say(s, { failed: "timed out" });
    const tunnel = attach(h, A);
    h.event(switchTo(B), S1);
    await timeout(tunnel.closed.promise, "the switch to cut A's tunnel");
    await h.sentinels.moreRounds(4);
    assert.equal(h.plane.master, undefined, "A was confirmed again with no view naming it");
    // Its own view did not come: the Sentinel that sent the switch is not distrusted.
    h.sentinels.allSay(B, 2);
    assert.deepEqual(await h.master(), B);
  });
});

Deno.test("MasterWatcher keeps a hold through a round without the announcing Sentinel's view", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
    nodes.set(B, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    // The leader's reply is missing (it failed its last call); the others know of no failover yet.
    h.sentinels.say(S1, { failed: "no answer yet (it failed the last call)" });
    const tunnel = attach(h, A);
    h.event(promotion(A), S1);
    await timeout(tunnel.closed.promise, "the promotion to cut A's tunnel");
    await h.sentinels.moreRounds(3);
    assert.equal(h.plane.master, undefined, "the hold ended without the leader's word");
    assert.ok(h.plane.failover);
    // The leader is still trusted: its switch cuts and routes.
    h.sentinels.say(S1, { address: B, epoch: 2 });
    h.event(switchTo(B), S1);
    assert.deepEqual(await h.master(), B);
  });
});

Deno.test("MasterWatcher ends a hold after an abort even while failover-end messages keep coming", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    sentinels.say(LIAR, { address: A, epoch: 1 }, "discovered");
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    h.sentinels.say(S1, { address: A, epoch: 2, flags: ["master", "failover_in_progress"] });
    h.event(promotion(A), S1);
    await h.sentinels.moreRounds(2);
    assert.ok(h.plane.failover);
    h.sentinels.say(S1, { address: A, epoch: 2 });
    h.sentinels.delayMs = 30;
    const flood = (async () => {
      for (let i = 0; i < 50; i++) {
        h.event(failoverEnd(A), LIAR);
        await pause(10);
      }
    })();
    assert.deepEqual(await h.master(), A);
    await flood;
  });
});

Deno.test("MasterWatcher keeps holding past the failover-timeout while a configured Sentinel reports the failover", async () => {
  const failoverTimeoutMs = 100;
  await withWatcher((sentinels, nodes) => {
    for (const s of [S1, S2, S3]) sentinels.say(s, { address: A, epoch: 0, failoverTimeoutMs });
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    h.sentinels.say(S1, {
      address: A,
      epoch: 1,
      flags: ["master", "failover_in_progress"],
      failoverTimeoutMs,
    });
    h.event(promotion(A), S1);
    await timeout(tunnel.closed.promise, "the promotion to cut A's tunnel");
    // A client waiting well past the failover-timeout gets no master: S1 still reports it.
    const served = await h.plane.waitForMaster(
      5 * failoverTimeoutMs,
      new AbortController().signal,
    );
    assert.equal(
      served,
      undefined,
      "the hold ended at the failover-timeout while a configured Sentinel reported the failover",
    );
    assert.equal(h.plane.problem?.kind, "failover");
    h.sentinels.say(S1, { address: A, epoch: 1, failoverTimeoutMs });
    h.event(failoverEnd(A), S1);
    assert.deepEqual(await h.master(), A);
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

Deno.test("MasterWatcher with a fence cuts the master when no Sentinel confirms it for afterMs, until one does", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    sentinelsGone(h);
    // The master still says master, and nothing else is wrong: only the fence cuts it.
    await timeout(tunnel.closed.promise, "the fence to cut A's tunnel");
    assert.equal(h.plane.master, undefined);
    await problemOf(h, "fenced");
    assert.match(h.plane.problem!.detail, /^write fence closed/);
    // Later checks keep saying why, and still confirm nothing on the master's own word.
    await h.sentinels.moreRounds(3);
    assert.equal(h.plane.master, undefined);
    assert.match(h.plane.problem?.detail ?? "", /^write fence closed/);
    // A Sentinel confirms the master again: the fence opens.
    h.sentinels.allSay(A, 1);
    assert.deepEqual(await h.master(), A);
    assert.equal(h.plane.problem, undefined);
  }, FENCED);
});

Deno.test("MasterWatcher without a fence keeps the master it confirmed while no Sentinel answers", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    sentinelsGone(h);
    // Many times the fence's 150 ms: the master stays.
    await h.sentinels.moreRounds(20);
    assert.deepEqual(h.plane.master?.address, A);
    assert.equal(tunnel.closes, 0);
  });
});

Deno.test("MasterWatcher's fence voids a check that would keep the master on its own word", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    sentinelsGone(h);
    // A check that found no Sentinel asks A's ROLE; the answer comes only after the fence closed.
    h.nodes.gate = Promise.withResolvers();
    await h.nodes.nextAsk();
    await timeout(tunnel.closed.promise, "the fence to cut A's tunnel");
    h.nodes.gate.resolve();
    h.nodes.gate = undefined;
    await h.sentinels.moreRounds(2);
    assert.equal(h.plane.master, undefined, "a check begun before the fence kept A");
    assert.match(h.plane.problem?.detail ?? "", /write fence closed/);
  }, FENCED);
});

Deno.test("MasterWatcher's fence closes when only a minority of the configured Sentinels still name the master", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const tunnel = attach(h, A);
    // Cut off with one Sentinel, which still names A: the agreement keeps A, the fence does not.
    h.sentinels.say(S2, { failed: "no reply within 500 ms" });
    h.sentinels.say(S3, { failed: "no reply within 500 ms" });
    await timeout(tunnel.closed.promise, "the fence to cut A's tunnel");
    await problemOf(h, "fenced");
    // Two of three name A again: a majority, and the fence opens.
    h.sentinels.say(S2, { address: A, epoch: 1 });
    assert.deepEqual(await h.master(), A);
    assert.equal(h.plane.problem, undefined);
  }, FENCED);
});

Deno.test("MasterWatcher cuts the tunnels of a master that stays silent (every connect times out), not of one that refuses", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    // Refused: the process is gone, its tunnels end by themselves; they are not cut.
    const first = attach(h, A);
    h.nodes.set(A, { kind: "unreachable", detail: "ROLE check failed: connection refused" });
    await h.sentinels.moreRounds(3);
    assert.equal(first.closes, 0);
    // Silent: a dead link. Once it has lasted silentCutMs (3 s here), its tunnels are cut.
    const started = performance.now();
    h.nodes.set(A, {
      kind: "unreachable",
      detail: "ROLE check failed: connect timed out after 1000 ms",
      silent: true,
    });
    await timeout(first.closed.promise, "the silent master's tunnels to be cut", 10_000);
    assert.ok(performance.now() - started >= 3000, "cut before the master was silent for 3 s");
    // It answers again: a new silence starts the count from zero.
    h.nodes.set(A, "master");
    assert.deepEqual(await h.master(true), A);
  });
});
