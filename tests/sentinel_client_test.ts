/**
 * SentinelClient against fake Sentinels on loopback: persistent connections,
 * and what a hung Sentinel costs.
 */
import assert from "node:assert/strict";
import { SentinelClient } from "../src/sentinel_client.ts";
import { NO_REPLY, startFakeSentinel } from "./_fake_redis.ts";

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
