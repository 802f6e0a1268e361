/**
 * The pure decision of one check (master_decision.ts): which node to ask for
 * its ROLE and on whose word (chooseCandidate()), what its answer means
 * (roleVerdict()), and whether a majority of the configured Sentinels names a
 * node (namedByConfiguredMajority()). No plane, no timer: each case builds
 * the inputs and asserts the verdict, one branch of a rule at a time.
 */
import assert from "node:assert/strict";
import type { Address } from "../src/shared/address.ts";
import type { Agreement, SentinelOrigin, SentinelView } from "../src/control/master_agreement.ts";
import {
  type Candidate,
  chooseCandidate,
  namedByConfiguredMajority,
  roleVerdict,
} from "../src/control/master_decision.ts";

const A: Address = { hostname: "10.0.0.1", port: 6379 };
const B: Address = { hostname: "10.0.0.2", port: 6379 };

function agreed(
  address: Address,
  epoch: number,
  origin: "configured" | "majority" = "configured",
): Agreement {
  return {
    kind: "agreed",
    address,
    epoch,
    via: `the Sentinels at config-epoch ${epoch}`,
    origin,
    failoverInProgress: false,
    failoverReportedByConfigured: false,
    failoverTimeoutMs: 60_000,
  };
}

const NONE: Agreement = { kind: "none", detail: "no Sentinel reachable" };
const UNKNOWN: Agreement = { kind: "unknown", detail: 'no Sentinel knows master "mymaster"' };

function candidate(address: Address, named = true): Candidate {
  return { address, via: "a test", epoch: 1, named };
}

function view(
  port: number,
  answer: Address | "failed",
  origin: SentinelOrigin = "configured",
): SentinelView {
  return {
    sentinel: { hostname: "10.0.9.1", port },
    origin,
    answer: answer === "failed" ? { kind: "failed", detail: "connection refused" } : {
      kind: "master",
      address: answer,
      epoch: 1,
      flags: ["master"],
      failoverTimeoutMs: 60_000,
    },
  };
}

Deno.test("chooseCandidate() keeps the known master against an agreement at an older epoch", () => {
  const chosen = chooseCandidate(agreed(A, 1), { master: B, last: B, epoch: 2 });
  assert.deepEqual(chosen?.address, B);
  assert.equal(chosen?.epoch, 2);
  assert.equal(chosen?.named, true);
  assert.match(chosen?.via ?? "", /older config-epoch 1/);
  // The last one confirmed, while none is in use, is kept the same way.
  assert.deepEqual(
    chooseCandidate(agreed(A, 1), { master: undefined, last: B, epoch: 2 })?.address,
    B,
  );
});

Deno.test("chooseCandidate() follows an agreement at the same or a newer epoch, or with no epoch known", () => {
  for (const epoch of [2, 3]) {
    assert.deepEqual(
      chooseCandidate(agreed(A, epoch), { master: B, last: B, epoch: 2 })?.address,
      A,
    );
  }
  assert.deepEqual(
    chooseCandidate(agreed(A, 0), { master: B, last: B, epoch: undefined })?.address,
    A,
  );
  // An older epoch naming the master in use is no conflict: the agreement's words are taken.
  assert.deepEqual(
    chooseCandidate(agreed(A, 1), { master: A, last: A, epoch: 2 }),
    { address: A, via: "the Sentinels at config-epoch 1", epoch: 1, named: true },
  );
});

Deno.test("chooseCandidate() names the agreement's address, with its epoch only when the configured Sentinels decided", () => {
  assert.deepEqual(
    chooseCandidate(agreed(A, 4), { master: undefined, last: undefined, epoch: undefined }),
    { address: A, via: "the Sentinels at config-epoch 4", epoch: 4, named: true },
  );
  assert.deepEqual(
    chooseCandidate(agreed(A, 4, "majority"), {
      master: undefined,
      last: undefined,
      epoch: undefined,
    }),
    { address: A, via: "the Sentinels at config-epoch 4", epoch: undefined, named: true },
  );
});

Deno.test("chooseCandidate() without an agreement keeps the master in use, not named by any view", () => {
  for (const agreement of [NONE, UNKNOWN]) {
    const chosen = chooseCandidate(agreement, { master: A, last: A, epoch: 3 });
    assert.deepEqual(chosen?.address, A);
    assert.equal(chosen?.named, false);
    assert.equal(chosen?.epoch, 3);
    assert.match(chosen?.via ?? "", new RegExp(`\\(${agreement.detail}\\)$`));
  }
});

Deno.test("chooseCandidate() without an agreement and no master in use asks nobody, not even the last one", () => {
  for (const agreement of [NONE, UNKNOWN]) {
    assert.equal(chooseCandidate(agreement, { master: undefined, last: A, epoch: 3 }), undefined);
    assert.equal(
      chooseCandidate(agreement, { master: undefined, last: undefined, epoch: undefined }),
      undefined,
    );
  }
});

Deno.test("roleVerdict() confirms a node that says master, and demotes one that says anything else", () => {
  assert.deepEqual(roleVerdict(candidate(A), { kind: "role", role: "master" }, undefined), {
    kind: "confirm",
  });
  for (const role of ["slave", "sentinel"]) {
    assert.deepEqual(roleVerdict(candidate(A), { kind: "role", role }, A), {
      kind: "demote",
      role,
    });
  }
});

Deno.test("roleVerdict() keeps a busy master in use only while a view names it", () => {
  const busy = { kind: "busy", detail: "ROLE answered BUSY" } as const;
  assert.deepEqual(roleVerdict(candidate(A), busy, A), {
    kind: "busy",
    detail: "ROLE answered BUSY",
  });
  const lost = { kind: "lost", detail: "ROLE answered BUSY", silent: false };
  // Busy elsewhere: not the master in use, no master in use, or kept on its own word only.
  assert.deepEqual(roleVerdict(candidate(A), busy, B), lost);
  assert.deepEqual(roleVerdict(candidate(A), busy, undefined), lost);
  assert.deepEqual(roleVerdict(candidate(A, false), busy, A), lost);
});

Deno.test("roleVerdict() makes an unreachable node lost, and silent only when its connect timed out", () => {
  assert.deepEqual(
    roleVerdict(candidate(A), { kind: "unreachable", detail: "timed out", silent: true }, A),
    { kind: "lost", detail: "timed out", silent: true },
  );
  assert.deepEqual(
    roleVerdict(candidate(A), { kind: "unreachable", detail: "refused" }, A),
    { kind: "lost", detail: "refused", silent: false },
  );
  assert.deepEqual(
    roleVerdict(candidate(A), { kind: "unreachable", detail: "refused", silent: false }, A),
    { kind: "lost", detail: "refused", silent: false },
  );
});

Deno.test("roleVerdict() makes any other failure an error", () => {
  assert.deepEqual(
    roleVerdict(candidate(A), { kind: "error", detail: "AUTH refused: WRONGPASS" }, A),
    { kind: "error", detail: "AUTH refused: WRONGPASS" },
  );
});

Deno.test("namedByConfiguredMajority() needs a strict majority of the configured Sentinels", () => {
  assert.equal(namedByConfiguredMajority([view(1, A), view(2, A), view(3, B)], A), true);
  assert.equal(namedByConfiguredMajority([view(1, A), view(2, B), view(3, B)], A), false);
  // Half is no majority; a Sentinel that failed to answer still counts in the whole.
  assert.equal(namedByConfiguredMajority([view(1, A), view(2, B)], A), false);
  assert.equal(
    namedByConfiguredMajority([view(1, A), view(2, "failed"), view(3, "failed")], A),
    false,
  );
  assert.equal(namedByConfiguredMajority([view(1, A)], A), true);
});

Deno.test("namedByConfiguredMajority() counts no discovered Sentinel, for or against", () => {
  const discovered = [4, 5, 6, 7].map((port) => view(port, A, "discovered"));
  assert.equal(namedByConfiguredMajority(discovered, A), false);
  assert.equal(namedByConfiguredMajority([view(1, B), ...discovered], A), false);
  const against = [4, 5, 6, 7].map((port) => view(port, B, "discovered"));
  assert.equal(namedByConfiguredMajority([view(1, A), ...against], A), true);
  assert.equal(namedByConfiguredMajority([], A), false);
});
