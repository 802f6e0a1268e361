import assert from "node:assert/strict";
import type { Address } from "../src/shared/address.ts";
import {
  agreeOnMaster,
  type SentinelOrigin,
  type SentinelView,
} from "../src/control/master_agreement.ts";

const A: Address = { hostname: "10.0.0.1", port: 6379 };
const B: Address = { hostname: "10.0.0.2", port: 6379 };
const F: Address = { hostname: "10.6.6.6", port: 6379 };

function names(
  port: number,
  address: Address,
  epoch: number,
  origin: SentinelOrigin = "configured",
  flags = ["master"],
): SentinelView {
  return {
    sentinel: { hostname: "10.0.9.1", port },
    origin,
    answer: { kind: "master", address, epoch, flags, failoverTimeoutMs: 10_000 },
  };
}

function fails(port: number, origin: SentinelOrigin = "configured"): SentinelView {
  return {
    sentinel: { hostname: "10.0.9.1", port },
    origin,
    answer: { kind: "failed", detail: "connection refused" },
  };
}

function unknown(port: number): SentinelView {
  return {
    sentinel: { hostname: "10.0.9.1", port },
    origin: "configured",
    answer: { kind: "unknown", detail: "unknown master name" },
  };
}

function agreedOn(views: SentinelView[]): Address | undefined {
  const agreement = agreeOnMaster("mymaster", views);
  return agreement.kind === "agreed" ? agreement.address : undefined;
}

Deno.test("agreeOnMaster() follows the configured Sentinels' newest epoch over an older majority", () => {
  assert.deepEqual(agreedOn([names(1, B, 3), names(2, A, 2), names(3, A, 2)]), B);
  assert.deepEqual(agreedOn([names(1, A, 2), names(2, A, 2), names(3, A, 2)]), A);
});

Deno.test("agreeOnMaster() lets a view mid-failover yield to settled views at its epoch", () => {
  const leader = names(1, A, 3, "configured", ["master", "failover_in_progress"]);
  assert.deepEqual(agreedOn([leader, names(2, B, 3), names(3, B, 3)]), B);
  // Before the others hear of it, the leader's newer epoch still names A, with the failover under way.
  const early = agreeOnMaster("mymaster", [leader, names(2, A, 2), names(3, A, 2)]);
  assert.equal(early.kind, "agreed");
  assert.ok(
    early.kind === "agreed" && early.failoverInProgress && early.failoverReportedByConfigured,
  );
});

Deno.test("agreeOnMaster() agrees on nothing when settled configured views disagree at one epoch", () => {
  const agreement = agreeOnMaster("mymaster", [names(1, A, 3), names(2, B, 3)]);
  assert.equal(agreement.kind, "none");
  assert.match(
    agreement.kind === "none" ? agreement.detail : "",
    /different masters at config-epoch 3/,
  );
});

Deno.test("agreeOnMaster() never lets discovered Sentinels outvote or outdate a configured one", () => {
  const views = [
    names(1, A, 2),
    names(2, F, 1e9, "discovered"),
    names(3, F, 1e9, "discovered"),
    names(4, F, 1e9, "discovered"),
  ];
  assert.deepEqual(agreedOn(views), A);
});

Deno.test("agreeOnMaster() counts discovered Sentinels only as a strict majority when no configured one answers", () => {
  assert.deepEqual(
    agreedOn([fails(1), names(2, A, 1, "discovered"), names(3, A, 1, "discovered")]),
    A,
  );
  // One discovered Sentinel, however new its epoch, is not a majority of four.
  assert.equal(
    agreedOn([fails(1), fails(2), fails(3), names(4, F, 1e9, "discovered")]),
    undefined,
  );
  assert.equal(
    agreedOn([fails(1), names(2, A, 1, "discovered"), names(3, F, 9, "discovered")]),
    undefined,
  );
});

Deno.test("agreeOnMaster() tells an unknown name from unreachable Sentinels", () => {
  assert.equal(agreeOnMaster("mymaster", [unknown(1), unknown(2)]).kind, "unknown");
  const partial = agreeOnMaster("mymaster", [unknown(1), fails(2)]);
  assert.equal(partial.kind, "none");
  const down = agreeOnMaster("mymaster", [fails(1), fails(2)]);
  assert.ok(down.kind === "none" && /^no Sentinel reachable/.test(down.detail));
});

Deno.test("agreeOnMaster() reports a failover only from Sentinels naming the agreed master", () => {
  const liar = names(4, F, 0, "discovered", ["master", "failover_in_progress"]);
  const agreement = agreeOnMaster("mymaster", [names(1, A, 0), names(2, A, 0), liar]);
  assert.ok(agreement.kind === "agreed" && !agreement.failoverInProgress);
});

Deno.test("agreeOnMaster() never counts a node named by host name and by IP as one", () => {
  const byName: Address = { hostname: "localhost", port: 6379 };
  const byIp: Address = { hostname: "127.0.0.1", port: 6379 };
  // Configured Sentinels at one epoch, one naming the master by name and one by IP: no agreement.
  assert.equal(agreedOn([names(1, byName, 4), names(2, byIp, 4)]), undefined);
  // Discovered Sentinels: two spellings of one address are no majority.
  assert.equal(
    agreedOn([
      fails(1),
      names(2, byName, 4, "discovered"),
      names(3, byIp, 4, "discovered"),
      names(4, B, 4, "discovered"),
    ]),
    undefined,
  );
  // One spelling throughout agrees, case aside, as host names compare.
  assert.deepEqual(
    agreedOn([names(1, byName, 4), names(2, { hostname: "LOCALHOST", port: 6379 }, 4)]),
    byName,
  );
});
