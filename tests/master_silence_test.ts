/**
 * A silent master (master_silence.ts): one whose every connect times out (a
 * dead link, not a dead process) has its tunnels cut once the silence has
 * lasted silentCutMs, where one that refuses keeps them. This file drives a
 * real ControlPlane with fakes; its cases are about master_silence's rules.
 * The hostile review of the same cut is in write_fence_hostile_test.ts.
 *
 * Every wait is on an event (a check round ending, a ROLE call, a tunnel
 * closing), never on sampled state; the integration tests cover the same code
 * against real Redis.
 */
import assert from "node:assert/strict";
import { A, attach, timeout, withWatcher } from "./_master_harness.ts";

Deno.test("master silence: cuts the tunnels of a master that stays silent (every connect times out), not of one that refuses", async () => {
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
