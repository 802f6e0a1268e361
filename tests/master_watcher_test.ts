/**
 * MasterWatcher's decisions, with fake Sentinels and fake ROLE answers, so
 * that races which real processes hit only by chance can be set up exactly.
 * The integration tests cover the same code against real Redis.
 */
import assert from "node:assert/strict";
import { type Address, formatAddress } from "../src/address.ts";
import { type DatabaseConfig, DEFAULT_TIMEOUTS } from "../src/config.ts";
import { ConnectionRegistry, type RegisteredTunnel } from "../src/connection_registry.ts";
import {
  type CheckRoleOptions,
  MasterWatcher,
  type RoleCheck,
  type SentinelSource,
} from "../src/master_watcher.ts";
import type { MajorityVerdict, MasterLookup } from "../src/sentinel_client.ts";

const A: Address = { hostname: "10.0.0.1", port: 6379 };
const B: Address = { hostname: "10.0.0.2", port: 6379 };
const SENTINEL: Address = { hostname: "10.0.0.9", port: 26379 };

const DATABASE: DatabaseConfig = {
  name: "mymaster",
  bind: "127.0.0.1",
  port: 6380,
  timeouts: { ...DEFAULT_TIMEOUTS, pollIntervalMs: 20 },
};

/** Sentinels whose answers the test sets, optionally held until released. */
class FakeSentinels implements SentinelSource {
  /** What a poll's first Sentinel says. */
  poll: Address = A;
  /** What most Sentinels say. */
  majority: Address | undefined = A;
  /** While set, polls wait for it. */
  gate: PromiseWithResolvers<void> | undefined;
  polls = 0;

  async getMasterAddress(_name: string, signal: AbortSignal): Promise<MasterLookup> {
    this.polls++;
    const answer = this.poll;
    if (this.gate) {
      const gate = this.gate.promise;
      await Promise.race([
        gate,
        new Promise((resolve) => signal.addEventListener("abort", resolve)),
      ]);
    }
    return { kind: "found", address: answer, sentinel: SENTINEL };
  }

  majorityMaster(): Promise<MajorityVerdict> {
    return Promise.resolve(
      this.majority
        ? { address: this.majority, detail: "2 of 3 Sentinels" }
        : { address: undefined, detail: "no majority" },
    );
  }

  discoverSentinels(): Promise<Address[]> {
    return Promise.resolve([]);
  }
}

/** ROLE answers by address; an address not listed is unreachable. */
function roles(answers: Map<string, string>) {
  return (address: Address, _options: CheckRoleOptions): Promise<RoleCheck> => {
    const role = answers.get(formatAddress(address));
    return Promise.resolve(
      role ? { kind: "role", role } : { kind: "unreachable", detail: "refused" },
    );
  };
}

class FakeTunnel implements RegisteredTunnel {
  readonly master: Address;
  closes = 0;
  constructor(master: Address) {
    this.master = master;
  }
  close(): void {
    this.closes++;
  }
}

function wait(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(what: string, condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await wait(5);
  }
}

async function withWatcher(
  sentinels: FakeSentinels,
  answers: Map<string, string>,
  body: (watcher: MasterWatcher, registry: ConnectionRegistry<FakeTunnel>) => Promise<void>,
): Promise<void> {
  const registry = new ConnectionRegistry<FakeTunnel>();
  const watcher = new MasterWatcher(DATABASE, { sentinels, registry, checkRole: roles(answers) });
  const controller = new AbortController();
  const running = watcher.run(controller.signal);
  try {
    await body(watcher, registry);
  } finally {
    controller.abort();
    sentinels.gate?.resolve();
    await running;
  }
}

Deno.test("MasterWatcher drops what a poll learned before +switch-master arrived", async () => {
  const sentinels = new FakeSentinels();
  // After a Sentinel failover the old master still says "master" until it is reconfigured.
  const answers = new Map([[formatAddress(A), "master"], [formatAddress(B), "master"]]);
  await withWatcher(sentinels, answers, async (watcher) => {
    await until("A confirmed", () => watcher.master !== undefined);
    // A poll is under way and will answer A, the old master.
    sentinels.gate = Promise.withResolvers();
    const polls = sentinels.polls;
    await until("a poll in flight", () => sentinels.polls > polls);
    watcher.onSwitchMaster(B, SENTINEL);
    sentinels.poll = B;
    sentinels.majority = B;
    sentinels.gate.resolve();
    sentinels.gate = undefined;
    const seen: string[] = [];
    for (let i = 0; i < 40; i++) {
      if (watcher.master) seen.push(formatAddress(watcher.master.address));
      await wait(5);
    }
    assert.ok(
      !seen.includes(formatAddress(A)),
      `A was confirmed again after the switch: ${seen.join(", ")}`,
    );
    assert.equal(formatAddress(watcher.master!.address), formatAddress(B));
  });
});

Deno.test("MasterWatcher ignores a lagging Sentinel that names the old master", async () => {
  const sentinels = new FakeSentinels();
  const answers = new Map([[formatAddress(A), "master"], [formatAddress(B), "master"]]);
  sentinels.poll = B;
  sentinels.majority = B;
  await withWatcher(sentinels, answers, async (watcher, registry) => {
    await until(
      "B confirmed",
      () =>
        watcher.master !== undefined && formatAddress(watcher.master.address) === formatAddress(B),
    );
    const tunnel = new FakeTunnel(watcher.master!.address);
    registry.add(tunnel);
    // The first Sentinel asked lags and still names A; most Sentinels name B.
    sentinels.poll = A;
    const polls = sentinels.polls;
    await until("several polls", () => sentinels.polls >= polls + 3);
    assert.equal(formatAddress(watcher.master!.address), formatAddress(B));
    assert.equal(tunnel.closes, 0, "a tunnel to the real master was closed");
  });
});

Deno.test("MasterWatcher closes tunnels to an unconfirmed old master when most Sentinels name another", async () => {
  const sentinels = new FakeSentinels();
  const answers = new Map([[formatAddress(A), "master"]]);
  await withWatcher(sentinels, answers, async (watcher, registry) => {
    await until("A confirmed", () => watcher.master !== undefined);
    const tunnel = new FakeTunnel(watcher.master!.address);
    registry.add(tunnel);
    // A stops answering (SIGSTOP): unconfirmed, but its tunnels are kept.
    answers.delete(formatAddress(A));
    await until("A unconfirmed", () => watcher.master === undefined);
    assert.equal(tunnel.closes, 0);
    // +switch-master was missed; a poll names B, which cannot be reached yet either.
    sentinels.poll = B;
    sentinels.majority = B;
    await until("tunnels to A closed", () => tunnel.closes > 0);
    assert.equal(watcher.master, undefined);
  });
});

Deno.test("MasterWatcher closes tunnels to a node that says it is a replica", async () => {
  const sentinels = new FakeSentinels();
  const answers = new Map([[formatAddress(A), "master"]]);
  await withWatcher(sentinels, answers, async (watcher, registry) => {
    await until("A confirmed", () => watcher.master !== undefined);
    const tunnel = new FakeTunnel(watcher.master!.address);
    registry.add(tunnel);
    answers.set(formatAddress(A), "slave");
    await until("tunnels to A closed", () => tunnel.closes > 0);
    assert.equal(watcher.master, undefined);
    assert.equal(watcher.problem?.kind, "not-master");
  });
});

Deno.test("MasterWatcher.nextResolution() settles when the next check has run", async () => {
  const sentinels = new FakeSentinels();
  const answers = new Map([[formatAddress(A), "master"]]);
  await withWatcher(sentinels, answers, async (watcher) => {
    await until("A confirmed", () => watcher.master !== undefined);
    const polls = sentinels.polls;
    watcher.reportUnreachable(A);
    await watcher.nextResolution(1000, new AbortController().signal);
    assert.ok(sentinels.polls > polls);
  });
});
