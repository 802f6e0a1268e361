/**
 * How far a Sentinel's events are believed (sentinel_trust.ts): an event may
 * cut clients off but never routes them, and a Sentinel whose word a check
 * refuses is distrusted for a while. The first cases drive a real
 * ControlPlane with fakes; this file's cases are about sentinel_trust's
 * rules: a +switch-master flood, a hold no Sentinel bears out, a reply lost
 * in one round. The last ones test SentinelTrust.onSwitch() and settle()
 * directly.
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
  promotion,
  S1,
  S2,
  S3,
  sleepFor,
  switchTo,
  timeout,
  withWatcher,
} from "./_master_harness.ts";

Deno.test("sentinel trust: a hold no Sentinel bears out ends at the next check, and its source is distrusted", async () => {
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

Deno.test("sentinel trust: distrusts a Sentinel that floods +switch-master, and checks keep completing", async () => {
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
      await sleepFor(10);
    }
    assert.ok(cuts <= 2, `the flood cut clients ${cuts} times`);
    assert.ok(h.sentinels.rounds - rounds >= 5, "checks stopped completing under the flood");
    assert.ok(!h.nodes.asked.includes(formatAddress(F)));
    assert.deepEqual(await h.master(), A);
  });
});

Deno.test("sentinel trust: does not confirm a master cut by +switch-master again while no Sentinel answers", async () => {
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
