/**
 * The failover hold (failover_hold.ts): from a Sentinel's announcement that
 * the master's replica is being promoted, its clients are cut and new ones
 * wait, until a switch, or until the failover is over without one. The first
 * cases drive a real ControlPlane with fakes; this file's cases are about
 * failover_hold's rules: when a hold ends, and that a round without the
 * announcing Sentinel's word ends nothing. The last ones test
 * FailoverHold.endsWith() directly, as a pure function of one check's views.
 *
 * Every wait is on an event (a check round ending, a ROLE call, a tunnel
 * closing), never on sampled state; the integration tests cover the same code
 * against real Redis.
 */
import assert from "node:assert/strict";
import {
  A,
  attach,
  B,
  failoverEnd,
  LIAR,
  promotion,
  S1,
  S2,
  S3,
  sleepFor,
  switchTo,
  timeout,
  withWatcher,
} from "./_master_harness.ts";

Deno.test("failover hold: holds clients from a promotion until the switch, then serves the new master", async () => {
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

Deno.test("failover hold: resumes on the old master when the failover is aborted", async () => {
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

Deno.test("failover hold: is kept through a round without the announcing Sentinel's view", async () => {
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

Deno.test("failover hold: ends after an abort even while failover-end messages keep coming", async () => {
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
        await sleepFor(10);
      }
    })();
    assert.deepEqual(await h.master(), A);
    await flood;
  });
});

Deno.test("failover hold: holds past the failover-timeout while a configured Sentinel reports the failover", async () => {
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
