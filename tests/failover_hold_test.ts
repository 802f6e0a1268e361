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
import type { Address } from "../src/shared/address.ts";
import type { Agreement, SentinelOrigin, SentinelView } from "../src/control/master_agreement.ts";
import { FailoverHold } from "../src/control/failover_hold.ts";
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

// FailoverHold.endsWith(), directly: one check's views and agreement in, how the hold ends out.

function names(
  sentinel: Address,
  address: Address,
  flags: string[] = ["master"],
  origin: SentinelOrigin = "configured",
): SentinelView {
  return {
    sentinel,
    origin,
    answer: { kind: "master", address, epoch: 1, flags, failoverTimeoutMs: 60_000 },
  };
}

function silentView(sentinel: Address): SentinelView {
  return { sentinel, origin: "configured", answer: { kind: "failed", detail: "timed out" } };
}

function agreedOn(
  address: Address,
  failover: { inProgress: boolean; byConfigured: boolean } = {
    inProgress: false,
    byConfigured: false,
  },
): Agreement {
  return {
    kind: "agreed",
    address,
    epoch: 1,
    via: "configured Sentinels at config-epoch 1",
    origin: "configured",
    failoverInProgress: failover.inProgress,
    failoverReportedByConfigured: failover.byConfigured,
    failoverTimeoutMs: 60_000,
  };
}

const UNDER_WAY = ["master", "failover_in_progress"];

Deno.test("FailoverHold.endsWith() ends with a switch, and never without an agreement", () => {
  const hold = new FailoverHold(A, "+selected-slave from S1", S1, 60_000);
  assert.equal(
    hold.endsWith([silentView(S1)], { kind: "none", detail: "no Sentinel reachable" }),
    undefined,
  );
  assert.deepEqual(hold.endsWith([names(S1, B), names(S2, B)], agreedOn(B)), { kind: "switched" });
});

Deno.test("FailoverHold.endsWith() waits for the announcing Sentinel's own view before ending", () => {
  const hold = new FailoverHold(A, "+selected-slave from S1", S1, 60_000);
  // The others name A with no failover, but S1, which announced it, did not answer.
  const others = [names(S2, A), names(S3, A)];
  assert.equal(hold.endsWith([silentView(S1), ...others], agreedOn(A)), undefined);
  assert.equal(hold.endsWith(others, agreedOn(A)), undefined);
  // S1 names another node, at no newer epoch than the agreement: still its word is awaited.
  assert.equal(hold.endsWith([names(S1, B), ...others], agreedOn(A)), undefined);
  // Its own view names A with no failover under way: the hold ends, and its word was never seen.
  assert.deepEqual(hold.endsWith([names(S1, A), ...others], agreedOn(A)), {
    kind: "ended",
    why: "no Sentinel reports a failover under way",
    refuted: true,
  });
});

Deno.test("FailoverHold.endsWith() holds while the failover is reported, then ends it unrefuted", () => {
  const hold = new FailoverHold(A, "+selected-slave from S1", S1, 60_000);
  const reported = agreedOn(A, { inProgress: true, byConfigured: true });
  assert.equal(hold.endsWith([names(S1, A, UNDER_WAY), names(S2, A)], reported), undefined);
  // Its own view reports it, even when the agreement does not: still under way.
  assert.equal(hold.endsWith([names(S1, A, UNDER_WAY), names(S2, A)], agreedOn(A)), undefined);
  assert.deepEqual(hold.endsWith([names(S1, A), names(S2, A)], agreedOn(A)), {
    kind: "ended",
    why: "no Sentinel reports a failover under way",
    refuted: false,
  });
});

Deno.test("FailoverHold.endsWith() ends a hold a check found at once when the failover is over", () => {
  // No announcing Sentinel: a check saw the failover, so its end is no refutation.
  const hold = new FailoverHold(A, "a failover reported by a check", undefined, 60_000);
  assert.deepEqual(hold.endsWith([names(S2, A)], agreedOn(A)), {
    kind: "ended",
    why: "no Sentinel reports a failover under way",
    refuted: false,
  });
});

Deno.test("FailoverHold.endsWith() past the failover-timeout holds only on a configured Sentinel's word", () => {
  const hold = new FailoverHold(A, "+selected-slave from S1", S1, 0);
  const views = [names(S1, A, UNDER_WAY), names(S2, A)];
  assert.equal(
    hold.endsWith(views, agreedOn(A, { inProgress: true, byConfigured: true })),
    undefined,
  );
  // Only a discovered Sentinel reports it (the announcer is silent): the time limit ends it, and
  // what was reported in this very check bears the announcement out.
  const discovered = new FailoverHold(A, "+selected-slave from S1", S1, 0);
  const onlyDiscovered = [silentView(S1), names(S2, A), names(LIAR, A, UNDER_WAY, "discovered")];
  assert.deepEqual(
    discovered.endsWith(onlyDiscovered, agreedOn(A, { inProgress: true, byConfigured: false })),
    { kind: "ended", why: "it outlived the failover-timeout with no switch", refuted: false },
  );
  // Expired, the announcing Sentinel's missing view is no longer awaited; its word was never seen.
  const unseen = new FailoverHold(A, "+selected-slave from S1", S1, 0);
  assert.deepEqual(unseen.endsWith([silentView(S1), names(S2, A)], agreedOn(A)), {
    kind: "ended",
    why: "it outlived the failover-timeout with no switch",
    refuted: true,
  });
});
