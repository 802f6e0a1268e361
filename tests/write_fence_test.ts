/**
 * The write fence (write_fence.ts, `fence.afterMs`): when no majority of the
 * configured Sentinels has named the master for afterMs, its clients are cut
 * and nothing goes there until a majority names a master again. This file
 * drives a real ControlPlane with fakes; its cases are about write_fence's
 * rules. The hostile review of the fence is write_fence_hostile_test.ts.
 *
 * Every wait is on an event (a check round ending, a ROLE call, a tunnel
 * closing), never on sampled state; the integration tests cover the same code
 * against real Redis.
 */
import assert from "node:assert/strict";
import {
  A,
  attach,
  FENCED,
  problemOf,
  S2,
  S3,
  sentinelsGone,
  timeout,
  withWatcher,
} from "./_master_harness.ts";

Deno.test("write fence: cuts the master when no Sentinel confirms it for afterMs, until one does", async () => {
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

Deno.test("write fence: without one, the master confirmed is kept while no Sentinel answers", async () => {
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

Deno.test("write fence: voids a check that would keep the master on its own word", async () => {
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

Deno.test("write fence: closes when only a minority of the configured Sentinels still name the master", async () => {
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
