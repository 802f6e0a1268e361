/**
 * SentinelClient against fake Sentinels on loopback: persistent connections,
 * and what a hung Sentinel costs.
 */
import assert from "node:assert/strict";
import { agreeOnMaster } from "../src/control/master_agreement.ts";
import { SentinelClient } from "../src/control/sentinel_client.ts";
import { formatAddress } from "../src/shared/address.ts";
import { errorReply, NO_REPLY, startFakeRedis, startFakeSentinel } from "./_fake_redis.ts";

const OPTIONS = { connectTimeoutMs: 200, replyTimeoutMs: 200, maxSentinels: 16 };
const sockets = { sanitizeOps: false, sanitizeResources: false };

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

Deno.test(
  "SentinelClient.masterViews() keeps one connection per Sentinel and AUTHs once",
  sockets,
  async () => {
    await using sentinel = await startFakeSentinel({
      masterName: "m",
      master: { host: "127.0.0.1", port: 6379 },
      configEpoch: 3,
    });
    const client = new SentinelClient([{ hostname: "127.0.0.1", port: sentinel.port }], {
      ...OPTIONS,
      auth: { password: "secret" },
    });
    const controller = new AbortController();
    try {
      for (let i = 0; i < 20; i++) {
        const [view] = await client.masterViews("m", controller.signal);
        assert.equal(view?.answer.kind, "master");
        assert.ok(view?.answer.kind === "master" && view.answer.epoch === 3);
      }
      assert.equal(client.connectionsOpened, 1);
      assert.equal(sentinel.count("AUTH"), 1);
      assert.equal(sentinel.count("SENTINEL"), 20);
    } finally {
      controller.abort();
      client.update([], OPTIONS);
    }
  },
);

Deno.test(
  "SentinelClient.masterViews() does not wait for, nor pile calls on, a hung Sentinel",
  sockets,
  async () => {
    let hung = true;
    await using good = await startFakeSentinel({
      masterName: "m",
      master: { host: "127.0.0.1", port: 6379 },
      configEpoch: 1,
    });
    await using bad = await startFakeSentinel({
      masterName: "m",
      master: { host: "127.0.0.1", port: 6379 },
      configEpoch: 1,
      handle: (command) => hung && command[0]?.toUpperCase() === "SENTINEL" ? NO_REPLY : undefined,
    });
    const client = new SentinelClient([
      { hostname: "127.0.0.1", port: good.port },
      { hostname: "127.0.0.1", port: bad.port },
    ], OPTIONS);
    const controller = new AbortController();
    try {
      let rounds = 0;
      const fast: number[] = [];
      const end = performance.now() + 2000;
      while (performance.now() < end) {
        const started = performance.now();
        await client.masterViews("m", controller.signal);
        fast.push(performance.now() - started);
        rounds++;
        await pause(10);
      }
      // At most one call in flight: one per reply deadline, whatever the number of rounds.
      const calls = bad.count("SENTINEL");
      assert.ok(calls <= 2000 / OPTIONS.replyTimeoutMs + 2, `${calls} calls in ${rounds} rounds`);
      fast.sort((a, b) => a - b);
      assert.ok(
        fast[Math.floor(fast.length / 2)]! < OPTIONS.replyTimeoutMs,
        `the median round waited for the hung Sentinel: ${fast.join(", ")}`,
      );
      hung = false;
      let counted = false;
      for (let i = 0; i < 100 && !counted; i++) {
        const views = await client.masterViews("m", controller.signal);
        counted = views[1]?.answer.kind === "master";
        await pause(20);
      }
      assert.ok(counted, "the Sentinel was not counted again after it recovered");
    } finally {
      controller.abort();
      client.update([], OPTIONS);
      await pause(OPTIONS.replyTimeoutMs + 100);
    }
  },
);

/** One entry of a `SENTINEL sentinels` reply. */
function listed(port: number, flags: string): string[] {
  const runId = String(port).padStart(40, "0");
  return ["name", runId, "ip", "127.0.0.1", "port", String(port), "runid", runId, "flags", flags];
}

Deno.test(
  "SentinelClient.discoverSentinels() adopts only Sentinels listed without a down or disconnected flag",
  sockets,
  async () => {
    let listing = [
      listed(40001, "sentinel"),
      listed(40002, "s_down,sentinel"),
      listed(40003, "o_down,s_down,sentinel"),
      listed(40004, "sentinel,disconnected"),
    ];
    await using configured = await startFakeRedis({
      handle: (command) =>
        command[0]?.toUpperCase() === "SENTINEL" && command[1]?.toLowerCase() === "sentinels"
          ? listing
          : undefined,
    });
    const client = new SentinelClient([{ hostname: "127.0.0.1", port: configured.port }], OPTIONS);
    try {
      const signal = new AbortController().signal;
      const added = await client.discoverSentinels("mymaster", signal);
      assert.deepEqual(added.map(formatAddress), ["127.0.0.1:40001"]);
      assert.deepEqual(
        client.watching("mymaster").map((s) => `${formatAddress(s.address)} ${s.origin}`),
        [`${configured.address} configured`, "127.0.0.1:40001 discovered"],
      );
      // An adopted Sentinel that its peers now flag down is no longer counted.
      listing = [listed(40001, "s_down,sentinel")];
      await client.discoverSentinels("mymaster", signal);
      assert.deepEqual(client.watching("mymaster").map((s) => formatAddress(s.address)), [
        configured.address,
      ]);
    } finally {
      client.update([], OPTIONS);
    }
  },
);

Deno.test(
  "SentinelClient.discoverSentinels() adopts no more than maxSentinels, configured ones included",
  sockets,
  async () => {
    const listing = Array.from({ length: 5000 }, (_, i) => listed(20000 + i, "sentinel"));
    await using configured = await startFakeRedis({
      handle: (command) =>
        command[0]?.toUpperCase() === "SENTINEL" && command[1]?.toLowerCase() === "sentinels"
          ? listing.slice(0, 1000)
          : undefined,
    });
    const client = new SentinelClient([{ hostname: "127.0.0.1", port: configured.port }], {
      ...OPTIONS,
      maxSentinels: 4,
    });
    try {
      await client.discoverSentinels("mymaster", new AbortController().signal);
      assert.equal(client.watching("mymaster").length, 4);
    } finally {
      client.update([], OPTIONS);
    }
  },
);

// Issue 19: a Sentinel that refuses the credentials is reported with what to fix.

Deno.test(
  "SentinelClient.masterViews() says to set sentinelAuth when a Sentinel answers NOAUTH",
  sockets,
  async () => {
    await using sentinel = await startFakeSentinel({
      masterName: "m",
      master: { host: "127.0.0.1", port: 6379 },
      handle: (command) =>
        command[0]?.toUpperCase() === "SENTINEL"
          ? errorReply("NOAUTH Authentication required.")
          : undefined,
    });
    const client = new SentinelClient(
      [{ hostname: "127.0.0.1", port: sentinel.port }],
      OPTIONS,
    );
    try {
      const views = await client.masterViews("m", AbortSignal.timeout(5000));
      assert.deepEqual(views[0]?.answer, {
        kind: "failed",
        detail:
          "SENTINEL MASTER failed: NOAUTH Authentication required; set sentinelAuth (the Sentinels' requirepass)",
      });
      const agreement = agreeOnMaster("m", views);
      assert.equal(
        agreement.kind === "none" && agreement.detail,
        `no Sentinel reachable (${sentinel.address}: SENTINEL MASTER failed: NOAUTH Authentication required; set sentinelAuth (the Sentinels' requirepass))`,
      );
      assert.equal(
        client.sentinels[0]?.lastError,
        `${sentinel.address}: SENTINEL MASTER failed: NOAUTH Authentication required; set sentinelAuth (the Sentinels' requirepass)`,
      );
    } finally {
      client.update([], OPTIONS);
    }
  },
);

Deno.test(
  "SentinelClient.masterViews() says to check sentinelAuth when a Sentinel refuses the password",
  sockets,
  async () => {
    await using sentinel = await startFakeSentinel({
      masterName: "m",
      master: { host: "127.0.0.1", port: 6379 },
      handle: (command) =>
        command[0]?.toUpperCase() === "AUTH"
          ? errorReply("WRONGPASS invalid username-password pair or user is disabled.")
          : undefined,
    });
    const options = { ...OPTIONS, auth: { password: "wrong" } };
    const client = new SentinelClient([{ hostname: "127.0.0.1", port: sentinel.port }], options);
    try {
      const [view] = await client.masterViews("m", AbortSignal.timeout(5000));
      assert.deepEqual(view?.answer, {
        kind: "failed",
        detail:
          "AUTH failed: WRONGPASS invalid username-password pair or user is disabled; check sentinelAuth",
      });
    } finally {
      client.update([], options);
    }
  },
);

Deno.test(
  "SentinelClient.subscribe() says to set sentinelAuth when a Sentinel answers SUBSCRIBE with NOAUTH",
  sockets,
  async () => {
    await using sentinel = await startFakeSentinel({
      masterName: "m",
      master: { host: "127.0.0.1", port: 6379 },
      handle: (command) =>
        command[0]?.toUpperCase() === "SUBSCRIBE"
          ? errorReply("NOAUTH Authentication required.")
          : undefined,
    });
    const client = new SentinelClient([{ hostname: "127.0.0.1", port: sentinel.port }], OPTIONS);
    const controller = new AbortController();
    try {
      client.subscribe({ onEvent: () => {}, onSubscribed: () => {} }, controller.signal);
      for (let i = 0; i < 100 && typeof client.sentinels[0]?.lastError !== "string"; i++) {
        await pause(20);
      }
      assert.equal(
        client.sentinels[0]?.lastError,
        `${sentinel.address}: SUBSCRIBE +switch-master failed: NOAUTH Authentication required; set sentinelAuth (the Sentinels' requirepass)`,
      );
    } finally {
      controller.abort();
      await client.closed();
    }
  },
);
