/**
 * ReplicaView's decisions, which replicas a read port may send clients to, on
 * a real ControlPlane (tests/_replica_harness.ts): the master is decided by the
 * plane's master watcher from a fake Sentinel's view and the master's ROLE,
 * and the replicas are judged with that same ROLE reply. Fake Sentinels, fake
 * ROLE answers and a fake registry let races (an event during a check, a
 * master change during a check) be set up exactly. Every wait is on an event
 * (a check ending, a ROLE call, a change of state), never on a time window.
 * The read port integration tests cover the same code against real Redis.
 */
import assert from "node:assert/strict";
import { type Address, formatAddress, sameAddress } from "../src/shared/address.ts";
import type { SentinelEvent } from "../src/control/sentinel_events.ts";
import type { ReplicaInfo } from "../src/control/sentinel_client.ts";
import {
  both,
  DATABASE,
  F,
  failoverUnderWay,
  type Harness,
  healthy,
  HOUR_MS,
  info,
  judged,
  M,
  masterRole,
  MAX_LAG,
  OFFSET,
  R1,
  R2,
  readable,
  replicaRole,
  sdown,
  selectedSlave,
  servingBoth,
  statusOf,
  switchTo,
  until,
  withWatcher,
} from "./_replica_harness.ts";

/** How the plane names what S1 said of M: the one configured Sentinel, at M's epoch. */
const VIA = "configured Sentinel 10.0.0.9:26379 (1 of 1) at config-epoch 1";

Deno.test("ReplicaView makes usable every replica that passes every check", async () => {
  await withWatcher({}, async (h) => {
    await h.rounds(1);
    assert.deepEqual(h.watcher.targets, { kind: "replica", addresses: [R1, R2] });
    assert.equal(h.watcher.problem, undefined);
    for (const replica of [R1, R2]) {
      const status = statusOf(h, replica);
      assert.equal(status.usable, true);
      assert.equal(status.reason, undefined);
      assert.equal(status.lagBytes, 0);
      assert.deepEqual(status.checkedAgainst, M);
    }
    assert.deepEqual(h.registry.cuts, []);
  });
});

/** One way for R1 to fail a rule, and the reason the watcher must give. */
interface Rule {
  readonly name: string;
  readonly breakIt: (h: Harness) => void;
  readonly reason: RegExp;
  /** Whether R1 is still asked ROLE (Sentinel flags rule it out first). */
  readonly asked?: boolean;
}

const RULES: Rule[] = [
  {
    name: "no Sentinel lists it any more",
    breakIt: (h) => h.sentinels.listed = [info(R2)],
    reason: /^no Sentinel lists it any more$/,
    asked: false,
  },
  {
    name: "its ROLE says master",
    breakIt: (h) => h.nodes.set(R1, masterRole(0, [])),
    reason: /^it says it is master$/,
  },
  {
    name: "its ROLE names another master",
    breakIt: (h) => h.nodes.set(R1, replicaRole(F)),
    reason: /^it replicates from 10\.6\.6\.6:6379, not the confirmed master 10\.0\.0\.1:6379$/,
  },
  {
    name: "its link to the master is not connected",
    breakIt: (h) => h.nodes.set(R1, replicaRole(M, -1, "sync")),
    reason: /^its link to the master is sync$/,
  },
  {
    name: "its ROLE reply is malformed",
    breakIt: (h) => h.nodes.set(R1, { kind: "role", role: "slave" }),
    reason: /^its ROLE reply is malformed$/,
  },
  {
    name: "its ROLE cannot be asked",
    breakIt: (h) => h.nodes.set(R1, { kind: "unreachable", detail: "ROLE check failed: refused" }),
    reason: /^ROLE check failed: refused$/,
  },
  {
    name: "the master's ROLE does not list it",
    breakIt: (h) => h.nodes.set(M, masterRole(OFFSET, [R2])),
    reason: /^master 10\.0\.0\.1:6379 does not list it among its replicas$/,
  },
  {
    name: "it lags more than maxLagBytes",
    breakIt: (h) => h.nodes.set(R1, replicaRole(M, OFFSET - MAX_LAG - 1)),
    reason: new RegExp(
      `^it is ${MAX_LAG + 1} bytes behind the master \\(maxLagBytes ${MAX_LAG}\\)$`,
    ),
  },
];

for (const rule of RULES) {
  Deno.test(`ReplicaView cuts off and stops using a replica when ${rule.name}`, async () => {
    await withWatcher({}, async (h) => {
      await servingBoth(h);
      const cutsBefore = h.registry.cuts.length;
      rule.breakIt(h);
      await h.rounds();
      assert.deepEqual(readable(h), [formatAddress(R2)]);
      assert.deepEqual(h.registry.cutsOf(R1, cutsBefore)[0], 2, "R1's clients were not cut");
      assert.deepEqual(h.registry.cutsOf(R2), [], "R2's clients were cut");
      assert.equal(h.watcher.problem, undefined);
      const status = h.watcher.replicas.find((r) => formatAddress(r.address) === "10.0.0.2:6379");
      if (rule.reason.source === "^no Sentinel lists it any more$") {
        assert.equal(status, undefined, "a replica no Sentinel lists is still shown");
        return;
      }
      assert.ok(status);
      assert.equal(status.usable, false);
      assert.match(status.reason ?? "", rule.reason);
      if (rule.asked === false) {
        // Ruled out by the Sentinel's word alone: it is not even asked.
        const asked = h.nodes.asked.length;
        await h.rounds();
        assert.ok(!h.nodes.asked.slice(asked).includes(formatAddress(R1)), "R1 was asked ROLE");
      }
    });
  });
}

// Sentinel refreshes what it knows of a replica every 10 s: right after a failover its flags and
// master-link-status lag the replica's own ROLE. The nodes' own word, asked at every check, decides.
const STALE_SENTINEL_WORDS: { name: string; listed: ReplicaInfo }[] = [
  ...["s_down", "o_down", "disconnected"].map((flag) => ({
    name: `flags it ${flag}`,
    listed: info(R1, { flags: [flag] }),
  })),
  { name: "reports its master link err", listed: info(R1, { link: "err" }) },
];

for (const word of STALE_SENTINEL_WORDS) {
  Deno.test(`ReplicaView keeps a replica a Sentinel ${word.name} while its own ROLE and the master's say it is in step`, async () => {
    await withWatcher({}, async (h) => {
      await servingBoth(h);
      const cutsBefore = h.registry.cuts.length;
      h.sentinels.listed = [word.listed, info(R2)];
      const asked = h.nodes.asked.length;
      await h.rounds();
      assert.deepEqual(readable(h), both);
      assert.deepEqual(h.registry.cutsOf(R1, cutsBefore), [], "R1's clients were cut");
      assert.equal(statusOf(h, R1).usable, true);
      assert.ok(h.nodes.asked.slice(asked).includes(formatAddress(R1)), "R1 was not asked ROLE");
      // Its own ROLE saying the link is down takes it out at once, whatever the Sentinel says.
      h.nodes.set(R1, replicaRole(M, -1, "connect"));
      await h.rounds();
      assert.deepEqual(readable(h), [formatAddress(R2)]);
      assert.equal(h.registry.cutsOf(R1, cutsBefore)[0], 2, "R1's clients were not cut");
      assert.match(statusOf(h, R1).reason ?? "", /^its link to the master is connect$/);
    });
  });
}

Deno.test("ReplicaView counts lag from the master's offset to the replica's own, up to maxLagBytes", async () => {
  await withWatcher({
    setup: (h) => {
      healthy(h);
      // The master's acknowledged offsets say 0 lag; the replicas' own offsets say otherwise.
      h.nodes.set(R1, replicaRole(M, OFFSET - MAX_LAG));
      h.nodes.set(R2, replicaRole(M, OFFSET - MAX_LAG - 1));
    },
  }, async (h) => {
    await h.rounds(1);
    assert.deepEqual(readable(h), [formatAddress(R1)]);
    assert.equal(statusOf(h, R1).lagBytes, MAX_LAG);
    assert.equal(statusOf(h, R2).lagBytes, MAX_LAG + 1);
    // A replica ahead of the offset the master reported (read at once, not atomically) has no lag.
    h.nodes.set(R2, replicaRole(M, OFFSET + 5));
    await h.rounds();
    assert.deepEqual(readable(h), both);
    assert.equal(statusOf(h, R2).lagBytes, 0);
  });
});

Deno.test("ReplicaView gives every replica's reason in its problem when none is usable", async () => {
  await withWatcher({
    setup: (h) => {
      healthy(h);
      h.nodes.set(R1, replicaRole(M, OFFSET - 5000));
      // A Sentinel's flags are no rule any more (its view lags): R2's own ROLE rules it out.
      h.nodes.set(R2, replicaRole(M, -1, "sync"));
      h.sentinels.listed = [info(R1), info(R2, { flags: ["s_down"] })];
    },
  }, async (h) => {
    await h.rounds(1);
    assert.equal(h.watcher.targets, undefined);
    assert.equal(h.watcher.problem?.kind, "unreachable");
    assert.equal(
      h.watcher.problem?.detail,
      "replica 10.0.0.2:6379: it is 5000 bytes behind the master (maxLagBytes 1000); " +
        "replica 10.0.0.3:6379: its link to the master is sync",
    );
    h.sentinels.listed = [];
    await h.rounds();
    assert.equal(
      h.watcher.problem?.detail,
      "no Sentinel lists a replica of master 10.0.0.1:6379",
    );
  });
});

Deno.test("ReplicaView never uses a node the master does not list, whatever it and a Sentinel say", async () => {
  await withWatcher({
    setup: (h) => {
      healthy(h);
      // F: listed by a Sentinel, says it follows M, connected, at M's offset; M does not know it.
      h.nodes.set(M, masterRole(OFFSET, [R1]));
      h.nodes.set(F, replicaRole(M));
      h.sentinels.listed = [info(F), info(R1)];
    },
  }, async (h) => {
    await h.rounds(1);
    assert.deepEqual(readable(h), [formatAddress(R1)]);
    for (let i = 0; i < 3; i++) {
      await h.rounds(1);
      assert.ok(!readable(h).includes(formatAddress(F)), "a client could be sent to F");
    }
    const status = statusOf(h, F);
    assert.equal(status.usable, false);
    assert.equal(status.reason, "master 10.0.0.1:6379 does not list it among its replicas");
    // Nor when it is the only candidate left.
    h.nodes.set(R1, replicaRole(M, OFFSET, "sync"));
    await h.rounds();
    assert.equal(h.watcher.targets, undefined);
    assert.match(h.watcher.problem?.detail ?? "", /10\.6\.6\.6:6379: master .* does not list it/);
  });
});

/**
 * What each cutting event is, what is true of R1 once it has happened, and
 * which replicas a new client may go to before the next check.
 */
const CUTTING_EVENTS: {
  name: string;
  event: SentinelEvent;
  reason: RegExp;
  after: (h: Harness) => void;
  /**
   * A promotion of the master in use starts the master's failover hold: the
   * replica being promoted is named, so R2, usable against the master being
   * replaced, goes on serving reads. A +switch-master with no failover held
   * before cuts the old master off: no master is confirmed until the next
   * check, so no replica takes a new client. A +sdown of a replica leaves the
   * master alone.
   */
  readableBeforeCheck: string[];
  /**
   * While the next check waits for M's ROLE: it has ended the failover hold
   * (S1 reports none), and M is not confirmed yet, so no replica takes a new
   * client after a promotion or a switch; a +sdown leaves R2.
   */
  readableWhileNextCheckWaits: string[];
}[] = [
  {
    name: "+selected-slave naming it",
    event: selectedSlave(R1),
    reason: /^\+selected-slave from 10\.0\.0\.9:26379: it is being promoted$/,
    after: (h) => h.nodes.set(R1, masterRole(OFFSET, [R2])),
    readableBeforeCheck: [formatAddress(R2)],
    readableWhileNextCheckWaits: [],
  },
  {
    name: "+switch-master to it",
    event: switchTo(R1),
    reason: /^\+switch-master from 10\.0\.0\.9:26379 makes it the master$/,
    after: (h) => h.nodes.set(R1, masterRole(OFFSET, [R2])),
    readableBeforeCheck: [],
    readableWhileNextCheckWaits: [],
  },
  {
    name: "+sdown of it",
    event: sdown(R1),
    reason: /^\+sdown from 10\.0\.0\.9:26379: Sentinel sees it down$/,
    after: (h) => {
      h.nodes.set(R1, { kind: "unreachable", detail: "ROLE check failed: timed out" });
      h.sentinels.listed = [info(R1, { flags: ["s_down"] }), info(R2)];
    },
    readableBeforeCheck: [formatAddress(R2)],
    readableWhileNextCheckWaits: [formatAddress(R2)],
  },
];

// S1's view still names M, with no failover under way: the next check does not bear a promotion
// or a switch out, and confirms M again; R1, which says it is master by then, stays out.
for (
  const { name, event, reason, after, readableBeforeCheck, readableWhileNextCheckWaits }
    of CUTTING_EVENTS
) {
  Deno.test(`ReplicaView cuts a replica's clients at ${name}, before any check`, async () => {
    await withWatcher({}, async (h) => {
      await servingBoth(h);
      const cutsBefore = h.registry.cuts.length;
      const askedBefore = h.nodes.asked.length;
      h.event(event);
      // No check has run since the event: the event alone did this.
      assert.equal(h.nodes.asked.length, askedBefore);
      assert.deepEqual(h.registry.cuts.slice(cutsBefore), [{
        address: "10.0.0.2:6379",
        closed: 2,
      }]);
      assert.deepEqual(readable(h), readableBeforeCheck);
      assert.equal(statusOf(h, R1).usable, false);
      assert.match(statusOf(h, R1).reason ?? "", reason);
      assert.equal(statusOf(h, R2).usable, true, "the event took R2 out");
      after(h);
      await h.rounds();
      assert.deepEqual(readable(h), [formatAddress(R2)]);
      assert.deepEqual(h.registry.cutsOf(R2), []);
    });
  });

  Deno.test(`ReplicaView discards a check under way at ${name}`, async () => {
    await withWatcher({}, async (h) => {
      await servingBoth(h);
      // A check asks R1, which answers as it stood before the event, only after the event.
      const releaseStale = h.nodes.hold(R1);
      await h.nodes.asks(R1);
      h.event(event);
      after(h);
      // The next check waits on M's ROLE, so what the stale one left can be looked at.
      const releaseNext = h.nodes.hold(M);
      const nextAsked = h.nodes.asks(M);
      releaseStale();
      await nextAsked;
      assert.deepEqual(
        readable(h),
        readableWhileNextCheckWaits,
        "a stale check made R1 usable again",
      );
      assert.equal(statusOf(h, R1).usable, false);
      assert.match(statusOf(h, R1).reason ?? "", reason);
      releaseNext();
      // The check that asked M may have left the replicas to the stale check's stage, still
      // running when it began: wait for a verdict against the master confirmed now.
      await judged(h);
      assert.deepEqual(readable(h), [formatAddress(R2)]);
    });
  });
}

Deno.test("ReplicaView sends no client to a replica checked against the old master, and checks the new one at once", async () => {
  await withWatcher(
    { database: { timeouts: { ...DATABASE.timeouts, pollIntervalMs: HOUR_MS } } },
    async (h) => {
      await servingBoth(h);
      // R1 is promoted; R2 follows it; the old master is down.
      h.nodes.set(R1, masterRole(OFFSET + 100, [R2]));
      h.nodes.set(R2, replicaRole(R1, OFFSET + 100));
      h.nodes.set(M, { kind: "unreachable", detail: "ROLE check failed: refused" });
      h.sentinels.listed = [info(R2), info(M, { flags: ["s_down"] })];
      const release = h.nodes.hold(R1);
      const asked = h.nodes.asks(R1);
      // S1 names R1 (its events were missed) and the poll comes: the poll interval is an hour,
      // so the test wakes the plane as the poll would.
      h.master.set(R1);
      h.plane.wake();
      // The check has cut M off and asks R1: no master is confirmed while its ROLE is awaited.
      await asked;
      // R2 still shows usable, but against M: no new client goes there.
      assert.equal(statusOf(h, R2).usable, true);
      assert.deepEqual(statusOf(h, R2).checkedAgainst, M);
      assert.equal(
        h.watcher.targets,
        undefined,
        "a replica checked against the old master is a target",
      );
      assert.equal(h.watcher.problem?.kind, "unreachable");
      // The check that confirms R1 judges the replicas against it: no other check runs.
      release();
      await h.rounds(1);
      assert.deepEqual(h.watcher.targets, { kind: "replica", addresses: [R2] });
      assert.deepEqual(statusOf(h, R2).checkedAgainst, R1);
      // R1, now the master, is no replica: its read clients are cut.
      assert.equal(h.registry.cutsOf(R1)[0], 2, "R1's clients were not cut");
    },
  );
});

Deno.test("ReplicaView discards a check made against a master that changed under it", async () => {
  await withWatcher({}, async (h) => {
    await servingBoth(h);
    const release = h.nodes.hold(R2);
    await h.nodes.asks(R2);
    // R1 is promoted while the check against M waits for R2, which says it follows M.
    h.nodes.set(R1, masterRole(OFFSET, [R2]));
    h.master.set(R1);
    const next = h.nodes.hold(R1);
    const nextAsked = h.nodes.asks(R1);
    release();
    await nextAsked;
    assert.equal(h.watcher.targets, undefined);
    // Checked against R1, R2 (still following M) is not usable.
    next();
    await h.rounds(1);
    assert.equal(h.watcher.targets, undefined);
    assert.match(
      statusOf(h, R2).reason ?? "",
      /replicates from 10\.0\.0\.1:6379, not the confirmed/,
    );
    assert.deepEqual(statusOf(h, R2).checkedAgainst, R1);
    h.nodes.set(R2, replicaRole(R1));
    await h.rounds();
    assert.deepEqual(readable(h), [formatAddress(R2)]);
  });
});

Deno.test("ReplicaView serves no replica while no master is confirmed, and says why", async () => {
  // S1 names M, which cannot be reached: no master is confirmed.
  const refused = { kind: "unreachable", detail: "ROLE check failed: refused" } as const;
  await withWatcher({
    setup: (h) => {
      healthy(h);
      h.nodes.set(M, refused);
    },
  }, async (h) => {
    await h.rounds(1);
    assert.equal(h.watcher.targets, undefined);
    assert.equal(h.watcher.problem?.kind, "master-unreachable");
    assert.equal(
      h.watcher.problem?.detail,
      "no confirmed master to check the replicas against: master 10.0.0.1:6379 from " +
        `${VIA}: ROLE check failed: refused`,
    );
    // The master's ROLE is the plane's own check now, so M is asked; no replica is.
    assert.deepEqual(
      h.nodes.asked,
      [formatAddress(M)],
      "a replica was asked ROLE with no master to check against",
    );
    // A master confirmed: checked at once, and served.
    healthy(h);
    await h.rounds(1);
    assert.deepEqual(readable(h), both);
    // The master lost again (S1 reports a failover): no new client, but nobody is cut.
    await failoverUnderWay(h);
    assert.equal(h.watcher.targets, undefined);
    // The problem is the master watcher's own now, kind "failover".
    assert.equal(h.watcher.problem?.kind, "failover");
    assert.equal(
      h.watcher.problem?.detail,
      "no confirmed master to check the replicas against: failover of 10.0.0.1:6379 under way " +
        `(a failover reported by ${VIA})`,
    );
    await h.rounds();
    assert.deepEqual(h.registry.cuts, []);
  });
});

Deno.test("ReplicaView with no master confirmed and no problem yet says it is still resolving", async () => {
  let asked: Promise<void> | undefined;
  await withWatcher({
    setup: (h) => {
      healthy(h);
      h.nodes.hold(M);
      asked = h.nodes.asks(M);
    },
  }, async (h) => {
    // The first check waits for M's ROLE: no master is confirmed, and nothing has failed yet.
    await asked;
    assert.equal(h.watcher.targets, undefined);
    assert.equal(
      h.watcher.problem?.detail,
      "no confirmed master to check the replicas against: still resolving",
    );
  });
});

Deno.test("ReplicaView with whenNoReplica master falls back on the master only while no replica is usable", async () => {
  const database = { whenNoReplica: "master" } as const;
  await withWatcher({ database, setup: () => {} }, async (h) => {
    await h.rounds(1);
    // No master confirmed: nowhere to go.
    assert.equal(h.watcher.targets, undefined);
    assert.match(h.watcher.problem?.detail ?? "", /no confirmed master/);
    healthy(h);
    h.nodes.set(R1, replicaRole(M, OFFSET - 2 * MAX_LAG));
    h.nodes.set(R2, replicaRole(M, OFFSET, "sync"));
    await h.rounds(1);
    assert.deepEqual(h.watcher.targets, { kind: "master", addresses: [M] });
    assert.equal(h.watcher.problem, undefined);
    h.nodes.set(R1, replicaRole(M));
    await h.rounds();
    assert.deepEqual(h.watcher.targets, { kind: "replica", addresses: [R1] });
  });
});

Deno.test("ReplicaView keeps a usable replica, and takes no new one, while the master's ROLE is busy", async () => {
  const masterAnswer = {
    kind: "busy",
    detail: "ROLE on 10.0.0.1:6379 answered BUSY Redis is busy",
  } as const;
  await withWatcher({
    setup: (h) => {
      healthy(h);
      h.sentinels.listed = [info(R1)];
      h.nodes.set(R1, replicaRole(M, OFFSET - 10));
    },
  }, async (h) => {
    await h.rounds(1);
    assert.deepEqual(readable(h), [formatAddress(R1)]);
    h.registry.attach(R1, 2);
    h.nodes.set(M, masterAnswer);
    h.sentinels.listed = [info(R1), info(R2)];
    await h.rounds();
    assert.deepEqual(readable(h), [formatAddress(R1)]);
    assert.equal(statusOf(h, R1).lagBytes, 10, "the last lag known is kept");
    assert.deepEqual(h.registry.cutsOf(R1), []);
    assert.equal(statusOf(h, R2).usable, false);
    assert.equal(statusOf(h, R2).reason, `the master cannot confirm it: ${masterAnswer.detail}`);
    // Its own ROLE still counts: one that stops following the master goes.
    h.nodes.set(R1, replicaRole(M, OFFSET, "connect"));
    await h.rounds();
    assert.equal(h.watcher.targets, undefined);
    assert.equal(h.registry.cutsOf(R1)[0], 2, "R1's clients were not cut");
  });
});

Deno.test("ReplicaView keeps a usable replica, and takes no new one, while the master's ROLE is unreachable", async () => {
  const masterAnswer = {
    kind: "unreachable",
    detail: "ROLE check failed: connection refused",
  } as const;
  await withWatcher({
    setup: (h) => {
      healthy(h);
      h.sentinels.listed = [info(R1)];
      h.nodes.set(R1, replicaRole(M, OFFSET - 10));
    },
  }, async (h) => {
    await h.rounds(1);
    assert.deepEqual(readable(h), [formatAddress(R1)]);
    h.registry.attach(R1, 2);
    h.nodes.set(M, masterAnswer);
    h.sentinels.listed = [info(R1), info(R2)];
    await h.rounds();
    // The master's one ROLE reply serves the master watcher too: a master that cannot be reached
    // is lost (the old watcher's fake master stayed confirmed), and without a confirmed master no
    // replica takes a new client, so [] where R1 was. R1 keeps its clients: it still says slave.
    assert.deepEqual(readable(h), []);
    assert.equal(statusOf(h, R1).lagBytes, 10, "the last lag known is kept");
    assert.deepEqual(h.registry.cutsOf(R1), []);
    // R2 is not judged without a master to judge it against (it has no status of its own); the
    // port says why no new client goes anywhere.
    assert.deepEqual(h.watcher.replicas.map((r) => formatAddress(r.address)), [formatAddress(R1)]);
    assert.equal(
      h.watcher.problem?.detail,
      "no confirmed master to check the replicas against: master 10.0.0.1:6379 from " +
        `${VIA}: ${masterAnswer.detail}`,
    );
    // Its own ROLE still counts, as read without a master: a link down is not enough (replicas
    // relink at every failover, and their clients stay), ...
    h.nodes.set(R1, replicaRole(M, OFFSET, "connect"));
    await h.rounds();
    assert.equal(h.watcher.targets, undefined);
    assert.deepEqual(h.registry.cutsOf(R1), []);
    // ... but one that stops being a replica goes.
    h.nodes.set(R1, masterRole(OFFSET, []));
    await h.rounds();
    assert.equal(h.watcher.targets, undefined);
    assert.equal(h.registry.cutsOf(R1)[0], 2, "R1's clients were not cut");
  });
});

Deno.test("ReplicaView takes no replica on its own word when a new master's ROLE is busy", async () => {
  await withWatcher({}, async (h) => {
    await servingBoth(h);
    // R1 is promoted and confirmed; R2, still syncing with it, is not usable against it yet.
    h.nodes.set(R1, masterRole(OFFSET, [R2]));
    h.nodes.set(R2, replicaRole(R1, OFFSET, "sync"));
    h.sentinels.listed = [info(R2)];
    h.master.set(R1);
    await h.rounds();
    assert.deepEqual(h.plane.master?.address, R1);
    assert.equal(h.watcher.targets, undefined);
    // Then the new master's ROLE is busy (a master that was never confirmed is not confirmed on a
    // busy reply at all): R2 says it follows R1, connected, but only on its own word.
    h.nodes.set(R1, { kind: "busy", detail: "ROLE check failed: no reply within 1000 ms" });
    h.nodes.set(R2, replicaRole(R1));
    await h.rounds();
    assert.deepEqual(h.plane.master?.address, R1, "a busy master in use was dropped");
    assert.equal(h.watcher.targets, undefined);
    assert.match(statusOf(h, R2).reason ?? "", /^the master cannot confirm it: .*no reply/);
  });
});

Deno.test("ReplicaView keeps the Sentinels' last list while none answers", async () => {
  await withWatcher({}, async (h) => {
    await servingBoth(h);
    h.sentinels.listed = undefined;
    await h.rounds();
    assert.deepEqual(readable(h), both);
    assert.deepEqual(h.registry.cuts, []);
  });
});

Deno.test("ReplicaView only wakes for a promotion without a replica, a -sdown, or a failover end", async () => {
  await withWatcher({}, async (h) => {
    await servingBoth(h);
    const events: SentinelEvent[] = [
      { ...selectedSlave(R1), replica: undefined },
      { ...sdown(R1), change: "up" },
      { ...sdown(M), instanceType: "master" },
      { kind: "failover-end", channel: "+failover-end", master: DATABASE.name, masterAddress: M },
      { kind: "sentinel-added", master: DATABASE.name },
    ];
    for (const event of events) h.event(event);
    assert.deepEqual(h.registry.cuts, []);
    // The promotion, of M, the master in use, also starts the master's failover hold: no master
    // is confirmed, so no replica takes a new client ([] where both were beside the old watcher's
    // fake master). The replicas themselves were not taken out.
    assert.deepEqual(readable(h), []);
    assert.deepEqual(h.watcher.replicas.map((r) => [formatAddress(r.address), r.usable]), [
      [formatAddress(R1), true],
      [formatAddress(R2), true],
    ]);
  });
});

// A wake that came while the loop slept once only ended the sleep, and the loop slept on for the
// whole poll interval: reportUnreachable() and the urgent re-check after an event were lost.
Deno.test("ControlPlane.wake() while the loop sleeps runs a check without waiting a poll interval", async () => {
  await withWatcher(
    { database: { timeouts: { ...DATABASE.timeouts, pollIntervalMs: HOUR_MS } } },
    async (h) => {
      await servingBoth(h);
      h.nodes.set(R1, replicaRole(M, OFFSET, "sync"));
      h.watcher.reportUnreachable(R1);
      await h.rounds(1);
      assert.deepEqual(readable(h), [formatAddress(R2)]);
    },
  );
});

Deno.test("ReplicaView checks the replicas again when the same master is lost and confirmed anew", async () => {
  await withWatcher(
    { database: { timeouts: { ...DATABASE.timeouts, pollIntervalMs: HOUR_MS } } },
    async (h) => {
      await h.rounds(1);
      assert.deepEqual(readable(h), both);
      const first = h.plane.master?.confirmation;
      // M is lost (a failover that then aborts) and confirmed again at the same address: S1
      // selects R2, reports the failover under way, then gives up.
      h.master.failover();
      h.event(selectedSlave(R2));
      // R2, being promoted, is out; R1, usable against the master being replaced, reads on.
      assert.deepEqual(readable(h), [formatAddress(R1)]);
      await h.rounds(1);
      assert.ok(h.plane.failover, "the check did not see the failover under way");
      h.master.set(M);
      const releaseM = h.nodes.hold(M);
      const releaseR1 = h.nodes.hold(R1);
      const asked = h.nodes.asks(M);
      h.event({
        kind: "failover-end",
        channel: "-failover-abort-slave-timeout",
        master: DATABASE.name,
        masterAddress: M,
      });
      await asked;
      // The check under way has ended the failover (S1 reports it no more), and M is not
      // confirmed yet: nothing to check a replica against, no failover to read through.
      assert.equal(h.watcher.targets, undefined);
      releaseM();
      // M is confirmed anew while the check that did it still waits for R1.
      await until(h, "M confirmed again", () => h.plane.master !== undefined);
      assert.deepEqual(h.plane.master?.address, M);
      assert.notEqual(h.plane.master?.confirmation, first);
      // The verdicts were made against the earlier confirmation: no new client until a new check.
      assert.equal(h.watcher.targets, undefined);
      releaseR1();
      await judged(h);
      assert.deepEqual(readable(h), both);
    },
  );
});

Deno.test("ReplicaView applies a check overtaken by an event to every replica but the one it names", async () => {
  await withWatcher({}, async (h) => {
    h.nodes.set(R2, replicaRole(F));
    await h.rounds(1);
    assert.deepEqual(readable(h), [formatAddress(R1)]);
    // R2 now follows M; the check that sees it is overtaken by a +sdown of R1 while it runs.
    h.nodes.set(R2, replicaRole(M));
    const releaseR2 = h.nodes.hold(R2);
    await h.nodes.asks(R2);
    const verdictBefore = h.plane.replicaHealth.find((r) => sameAddress(r.address, R2));
    h.event(sdown(R1));
    // The checks after it wait on M, so what the overtaken check left can be looked at.
    const releaseM = h.nodes.hold(M);
    releaseR2();
    await until(
      h,
      "the overtaken check's verdict on R2",
      () => h.plane.replicaHealth.find((r) => sameAddress(r.address, R2)) !== verdictBefore,
    );
    // A flood of events about R1 would discard every check if one discarded it whole.
    assert.deepEqual(readable(h), [formatAddress(R2)]);
    assert.match(statusOf(h, R1).reason ?? "", /\+sdown/);
    releaseM();
  });
});

Deno.test("ReplicaView asks ROLE only of replicas the master lists, however many a Sentinel lists", async () => {
  await withWatcher({}, async (h) => {
    const junk = Array.from({ length: 1000 }, (_, i) => ({ hostname: "10.9.0.1", port: 1000 + i }));
    h.sentinels.listed = [info(R1), ...junk.map((address) => info(address)), info(R2)];
    await h.rounds(2);
    assert.deepEqual(readable(h), both);
    // A Sentinel's list opens no connection: only the master and the replicas it lists are asked.
    assert.deepEqual(
      [...new Set(h.nodes.asked)].sort(),
      [M, R1, R2].map(formatAddress).sort(),
    );
    assert.match(statusOf(h, junk[0]!).reason ?? "", /does not list it among its replicas/);
    // A replica the master lists for the first time is asked then, and used.
    const R3: Address = { hostname: "10.0.0.4", port: 6379 };
    h.nodes.set(R3, replicaRole(M));
    h.sentinels.listed = [info(R1), info(R2), info(R3)];
    await h.rounds(2);
    assert.deepEqual(readable(h), both);
    h.nodes.set(M, masterRole(OFFSET, [R1, R2, R3]));
    await h.rounds(2);
    assert.deepEqual(readable(h), [...both, formatAddress(R3)]);
  });
});

// A node that closes its ROLE connection, or that a client could not reach, is suspended: out of
// use, its clients kept until a check sees it. Was a bug, seen in a planned failover (Sentinel's
// CLIENT KILL on the other replica): when that happened while a check ran, the check's stale
// verdict cut the clients it had just decided to keep, at warning.
Deno.test("ReplicaView keeps the clients of a replica suspended while a check runs; the next check decides", async () => {
  await withWatcher(
    { database: { timeouts: { ...DATABASE.timeouts, pollIntervalMs: HOUR_MS } } },
    async (h) => {
      await servingBoth(h);
      const cutsBefore = h.registry.cuts.length;
      const release = h.nodes.hold(R2);
      const started = h.nodes.asks(R2);
      h.plane.wake(true);
      await started; // this check judges the replicas once R2 answers
      h.watcher.reportUnreachable(R1);
      assert.deepEqual(readable(h), [formatAddress(R2)]);
      release();
      await until(h, "R1 usable again", () => readable(h).includes(formatAddress(R1)));
      assert.deepEqual(h.registry.cutsOf(R1, cutsBefore), [], "R1's clients were cut");
      assert.equal(h.registry.live(R1), 2);
    },
  );
});
