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
import { type Address, formatAddress } from "../src/shared/address.ts";
import type { Agreement, SentinelView } from "../src/control/master_agreement.ts";
import { SentinelTrust } from "../src/control/sentinel_trust.ts";
import { MAX_DISTRUSTED_SERIES } from "../src/control/master_watcher.ts";
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
    // Each distrust is counted for the metrics and recorded for the status page, by Sentinel.
    const liar = formatAddress(LIAR);
    const distrusts = h.plane.stats.sentinelsDistrusted.get(liar) ?? 0;
    assert.ok(distrusts >= 1, "the flood's Sentinel was never counted as distrusted");
    const recorded = h.plane.journal.entries().filter((e) =>
      e.event.kind === "sentinel-distrusted" && e.event.sentinel === liar
    );
    assert.equal(recorded.length, distrusts);
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

// SentinelTrust, directly: what a +switch-master is worth, and how a check settles it.

const POLL_MS = 20;

function says(sentinel: Address, address: Address | "failed"): SentinelView {
  return {
    sentinel,
    origin: "configured",
    answer: address === "failed"
      ? { kind: "failed", detail: "timed out" }
      : { kind: "master", address, epoch: 1, flags: ["master"], failoverTimeoutMs: 60_000 },
  };
}

function agreedOn(address: Address): Agreement {
  return {
    kind: "agreed",
    address,
    epoch: 1,
    via: "configured Sentinels at config-epoch 1",
    origin: "configured",
    failoverInProgress: false,
    failoverReportedByConfigured: false,
    failoverTimeoutMs: 60_000,
  };
}

Deno.test("SentinelTrust.onSwitch() cuts on a first word, and knows the master in use and the switch pending", () => {
  const trust = new SentinelTrust();
  assert.deepEqual(trust.onSwitch(A, S1, A, POLL_MS), { kind: "known" });
  assert.deepEqual(trust.onSwitch(B, S1, A, POLL_MS), { kind: "cut" });
  // Another Sentinel with the same news adds nothing.
  assert.deepEqual(trust.onSwitch(B, S2, A, POLL_MS), { kind: "known" });
  assert.equal(trust.isDistrusted(S1), false);
});

Deno.test("SentinelTrust.onSwitch() distrusts a Sentinel that names a second new master before a check", () => {
  const trust = new SentinelTrust();
  assert.deepEqual(trust.onSwitch(B, S1, A, POLL_MS), { kind: "cut" });
  assert.deepEqual(trust.onSwitch(F, S1, A, POLL_MS), { kind: "flood", earlier: B });
  assert.equal(trust.isDistrusted(S1), true);
  // Another Sentinel's word is still believed.
  assert.deepEqual(trust.onSwitch(F, S2, A, POLL_MS), { kind: "cut" });
});

Deno.test("SentinelTrust.settle() bears out a switch the views agree on, and trusts its Sentinel still", () => {
  const trust = new SentinelTrust();
  trust.onSwitch(B, S1, A, POLL_MS);
  assert.equal(trust.settle([says(S1, B), says(S2, B)], agreedOn(B), POLL_MS), undefined);
  assert.equal(trust.isDistrusted(S1), false);
  // Settled: nothing is pending, and the next switch from it cuts again.
  assert.equal(trust.settle([says(S1, B)], agreedOn(B), POLL_MS), undefined);
  assert.deepEqual(trust.onSwitch(F, S1, B, POLL_MS), { kind: "cut" });
});

Deno.test("SentinelTrust.settle() refuses a switch the views do not bear out, distrusting its Sentinel only when its view came", () => {
  const trust = new SentinelTrust();
  trust.onSwitch(F, S1, A, POLL_MS);
  // S1's own view came, and the check agreed on A: its word is refused and it is distrusted.
  assert.deepEqual(trust.settle([says(S1, A), says(S2, A)], agreedOn(A), POLL_MS), {
    to: F,
    sentinel: S1,
    distrusted: true,
  });
  assert.equal(trust.isDistrusted(S1), true);
  assert.deepEqual(trust.onSwitch(F, S1, A, POLL_MS), { kind: "check" });

  const honest = new SentinelTrust();
  honest.onSwitch(B, S1, A, POLL_MS);
  // S1's reply was lost in this round, and nobody agrees: refused, but it costs S1 nothing.
  assert.deepEqual(
    honest.settle([says(S1, "failed"), says(S2, "failed")], {
      kind: "none",
      detail: "no Sentinel reachable",
    }, POLL_MS),
    { to: B, sentinel: S1, distrusted: false },
  );
  assert.equal(honest.isDistrusted(S1), false);
  assert.deepEqual(honest.onSwitch(B, S1, A, POLL_MS), { kind: "cut" });
});

Deno.test("SentinelTrust.clear() forgets the pending switch and every distrust", () => {
  const trust = new SentinelTrust();
  trust.onSwitch(B, S1, A, POLL_MS);
  trust.onSwitch(F, S1, A, POLL_MS);
  assert.equal(trust.isDistrusted(S1), true);
  trust.clear();
  assert.equal(trust.isDistrusted(S1), false);
  assert.equal(trust.settle([says(S1, A)], agreedOn(A), POLL_MS), undefined);
  assert.deepEqual(trust.onSwitch(F, S1, A, POLL_MS), { kind: "cut" });
});

Deno.test("sentinel trust: Sentinels distrusted are counted one by one up to a bound, the rest together", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
    nodes.set(B, "master");
    nodes.set(F, "master");
  }, async (h) => {
    assert.deepEqual(await h.master(), A);
    const liars = Array.from(
      { length: MAX_DISTRUSTED_SERIES + 6 },
      (_, i): Address => ({ hostname: `10.9.${i >> 8}.${i & 255}`, port: 26379 }),
    );
    // Each names one node, then another moments later: a flood, and it is distrusted.
    liars.forEach((liar, i) => {
      h.event(switchTo(i % 2 ? B : F), liar);
      h.event(switchTo(i % 2 ? F : B), liar);
    });
    const counts = h.plane.stats.sentinelsDistrusted;
    assert.equal(counts.size, MAX_DISTRUSTED_SERIES + 1);
    assert.equal(counts.get("other"), 6);
    assert.equal([...counts.values()].reduce((a, b) => a + b, 0), liars.length);
  });
});
