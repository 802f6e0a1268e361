/**
 * Hostile peers against a real deployment: a Sentinel injected with a forged
 * `__sentinel__:hello`, a configured Sentinel that answers honestly but
 * publishes a lying `+switch-master`, and malformed `+switch-master` messages.
 *
 * The fake Sentinels and the fake node are RESP servers of tests/_fake_redis.ts.
 * The fake node records every command, so "the tunnel never sent it AUTH and
 * never routed a SET to it" is counted, not guessed; each writer connection
 * asks `CONFIG GET port`, so every acknowledged write names its node.
 */
import assert from "node:assert/strict";
import { type Deployment, freePort, type RedisProcess, startDeployment } from "./_deployment.ts";
import {
  type FakeRedis,
  type FakeSentinel,
  startFakeNode,
  startFakeSentinel,
} from "./_fake_redis.ts";
import { type Ack, missingKeys } from "./_traffic.ts";
import { startTunnel, type TunnelProcess } from "./_tunnel.ts";
import { startWriters } from "./_failover.ts";
import { RedisConnection } from "../src/control/redis_connection.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };
const PASSWORD = "hostile-test-secret";
const HOST = "127.0.0.1";

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` every 100 ms until it returns a value; throws `what` after `timeoutMs`. */
async function waitFor<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined> | T | undefined,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let lastError = "";
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = `: last error: ${(error as Error).message}`;
    }
    if (performance.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${lastError}`);
    }
    await sleep(100);
  }
}

/** A client of the tunnel's port, authenticated as an application would be. */
function tunnelClient(port: number): Promise<RedisConnection> {
  return RedisConnection.open({ hostname: HOST, port }, {
    connectTimeoutMs: 2000,
    replyTimeoutMs: 10_000,
    auth: { password: PASSWORD },
  });
}

/** The node a connection reached, from `CONFIG GET port`. */
async function nodeOf(connection: RedisConnection): Promise<number> {
  const reply = await connection.call(["CONFIG", "GET", "port"]);
  if (Array.isArray(reply) && reply[0] === "port") return Number(reply[1]);
  throw new Error(`CONFIG GET port answered ${JSON.stringify(reply)}`);
}

/** Opens tunnel clients until one reaches `nodePort`, and returns it. */
function clientOn(port: number, nodePort: number, timeoutMs = 10_000): Promise<RedisConnection> {
  return waitFor(`a tunnel client served by node ${nodePort}`, timeoutMs, async () => {
    const connection = await tunnelClient(port);
    try {
      const node = await nodeOf(connection);
      if (node === nodePort) return connection;
      throw new Error(`served by node ${node}`);
    } catch (error) {
      connection.close();
      throw error;
    }
  });
}

/** A field of `SENTINEL MASTER <name>` as a real Sentinel reports it. */
async function masterField(
  deployment: Deployment,
  sentinel: RedisProcess,
  field: string,
): Promise<string> {
  const lines = (await deployment.cli(sentinel, "SENTINEL", "MASTER", deployment.masterName))
    .split("\n");
  for (let i = 0; i + 1 < lines.length; i += 2) {
    if (lines[i] === field) return lines[i + 1]!;
  }
  throw new Error(`SENTINEL MASTER on ${sentinel.address} has no ${field}`);
}

/** `SENTINEL sentinels <name>` of a real Sentinel, one map per listed Sentinel. */
async function listedSentinels(
  deployment: Deployment,
  sentinel: RedisProcess,
): Promise<Map<string, string>[]> {
  const lines = (await deployment.cli(sentinel, "SENTINEL", "SENTINELS", deployment.masterName))
    .split("\n");
  const entries: Map<string, string>[] = [];
  for (let i = 0; i + 1 < lines.length; i += 2) {
    if (lines[i] === "name") entries.push(new Map());
    entries.at(-1)?.set(lines[i]!, lines[i + 1]!);
  }
  return entries;
}

function tunnelConfig(sentinels: readonly string[], masterName: string, port: number) {
  return {
    sentinels,
    masterAuth: { password: PASSWORD },
    timeouts: { clientWaitMs: 10_000 },
    databases: [{ name: masterName, port }],
  };
}

/** Waits until `fake` has a subscriber to `+switch-master` (a tunnel: real Sentinels never subscribe on a Sentinel). */
function waitForSwitchSubscriber(fake: FakeSentinel, timeoutMs = 10_000): Promise<number> {
  return waitFor(
    `a +switch-master subscription on fake Sentinel ${fake.address}`,
    timeoutMs,
    () => fake.subscribers("+switch-master") || undefined,
  );
}

/**
 * Publishes a `+switch-master` that moves `masterName` from the real master to
 * `target`, `times` times, and returns how many deliveries were made.
 */
async function publishSwitches(
  fake: FakeSentinel,
  message: string,
  times: number,
  gapMs: number,
): Promise<number> {
  let delivered = 0;
  for (let i = 0; i < times; i++) {
    delivered += await fake.publish("+switch-master", message);
    await sleep(gapMs);
  }
  return delivered;
}

interface Outcome {
  auth: number;
  set: number;
  fakeAcks: number;
}

/** What reached the fake node, and which acks came from anything but a real node. */
function outcome(fakeNode: FakeRedis, acks: readonly Ack[], deployment: Deployment): Outcome {
  const real = new Set(deployment.nodes.map((n) => n.port));
  return {
    auth: fakeNode.count("AUTH"),
    set: fakeNode.count("SET"),
    fakeAcks: acks.filter((a) => !real.has(a.node)).length,
  };
}

/** AUTH sent by the tunnel itself (on connections that asked ROLE), not relayed from clients. */
function tunnelAuth(fakeNode: FakeRedis): number {
  const control = new Set(
    fakeNode.commands.filter((c) => c.command[0]?.toUpperCase() === "ROLE").map((c) => c.client),
  );
  return fakeNode.commands.filter((c) =>
    control.has(c.client) && c.command[0]?.toUpperCase() === "AUTH"
  ).length;
}

/** A fresh client reaches the real master, and its write lands there. */
async function assertWritesLandOn(
  deployment: Deployment,
  tunnelPort: number,
  master: RedisProcess,
  key: string,
): Promise<void> {
  using connection = await clientOn(tunnelPort, master.port);
  assert.equal(await connection.call(["SET", key, "after"]), "OK");
  assert.equal(await deployment.cli(master, "GET", key), "after");
}

Deno.test(
  "a Sentinel injected with a forged hello cannot move clients or draw AUTH to its node",
  processes,
  async () => {
    const started = performance.now();
    await using deployment = await startDeployment({ masterName: "hello", password: PASSWORD });
    const master = deployment.nodes[0]!;
    const name = deployment.masterName;
    const epoch = await masterField(deployment, deployment.sentinels[0]!, "config-epoch");
    await using fakeNode = await startFakeNode();
    await using fake = await startFakeSentinel({
      masterName: name,
      master: { host: HOST, port: master.port },
      configEpoch: Number(epoch),
    });
    const realSentinels = deployment.sentinels.map((s) => s.address);

    const injectorPort = freePort();
    await using injector = await startTunnel(
      tunnelConfig(realSentinels, name, injectorPort),
      { ports: [injectorPort] },
    );
    (await clientOn(injectorPort, master.port)).close();

    // Any application allowed to PUBLISH can forge a hello, through the tunnel like any client.
    const hello = [HOST, fake.port, fake.runId, 0, name, HOST, master.port, epoch].join(",");
    const stopInjecting = new AbortController();
    let hellos = 0;
    const injecting = (async () => {
      while (!stopInjecting.signal.aborted) {
        try {
          using connection = await tunnelClient(injectorPort);
          while (!stopInjecting.signal.aborted) {
            await connection.call(["PUBLISH", "__sentinel__:hello", hello]);
            hellos++;
            await sleep(500);
          }
        } catch {
          await sleep(100);
        }
      }
    })();
    let subject: TunnelProcess = injector;
    let subjectPort = injectorPort;
    let late: TunnelProcess | undefined;
    try {
      await waitFor(
        "every real Sentinel to list the forged Sentinel as healthy",
        20_000,
        async () => {
          for (const sentinel of deployment.sentinels) {
            const entry = (await listedSentinels(deployment, sentinel)).find((e) =>
              e.get("ip") === HOST && e.get("port") === String(fake.port)
            );
            if (!entry || /s_down|o_down|disconnected/.test(entry.get("flags") ?? "")) {
              return undefined;
            }
          }
          return true;
        },
      );
      const adopted = (r: Record<string, unknown>) =>
        /Discovered Sentinel/.test(String(r.message)) && r.sentinel === fake.address;
      try {
        await injector.waitForLog(adopted, 5000);
      } catch {
        // Discovery only at startup and every 30 s: a tunnel started now adopts it at once.
        console.log(
          "hello: the running tunnel did not adopt the forged Sentinel within 5 s; " +
            "starting a second tunnel, whose first discovery adopts it",
        );
        subjectPort = freePort();
        late = await startTunnel(tunnelConfig(realSentinels, name, subjectPort), {
          ports: [subjectPort],
        });
        subject = late;
        await subject.waitForLog(adopted, 10_000);
      }
      await waitForSwitchSubscriber(fake);
      console.log(
        `hello: forged Sentinel ${fake.address} listed by ${deployment.sentinels.length} ` +
          `real Sentinels and adopted by the tunnel after ${hellos} hellos`,
      );

      const writers = startWriters({
        port: subjectPort,
        clients: 4,
        pauseMs: 5,
        password: PASSWORD,
      });
      let delivered = 0;
      try {
        await waitFor(
          "a write acknowledged by the real master",
          10_000,
          () => writers.acks.some((a) => a.node === master.port) || undefined,
        );
        fake.claim({ host: HOST, port: fakeNode.port }, 1_000_000_000);
        delivered = await publishSwitches(
          fake,
          `${name} ${HOST} ${master.port} ${HOST} ${fakeNode.port}`,
          5,
          300,
        );
        // Long enough for several polls to act on the lie, if they were going to.
        await sleep(3000);
      } finally {
        stopInjecting.abort();
      }
      const report = await writers.stop();
      await injecting;
      const result = outcome(fakeNode, report.acks, deployment);
      const onMaster = report.acks.filter((a) => a.node === master.port);
      console.log(
        `hello: ${delivered} +switch-master deliveries; ${report.acks.length} writes acknowledged, ` +
          `${onMaster.length} by the real master, ${result.fakeAcks} by the fake node; ` +
          `fake node got ${fakeNode.connections} connections, ${result.auth} AUTH ` +
          `(${tunnelAuth(fakeNode)} from the tunnel's ROLE checks), ${result.set} SET, ` +
          `${fakeNode.count("ROLE")} ROLE; writer errors ${
            JSON.stringify(Object.fromEntries(report.errors))
          }`,
      );
      assert.ok(delivered > 0, "the tunnel heard no +switch-master from the forged Sentinel");
      assert.deepEqual(
        result,
        { auth: 0, set: 0, fakeAcks: 0 },
        "a forged Sentinel drew AUTH, SETs or acknowledged writes to its node",
      );
      assert.deepEqual(await missingKeys(master.port, onMaster.map((a) => a.key), PASSWORD), []);
      await assertWritesLandOn(deployment, subjectPort, master, "hello:after");
    } finally {
      stopInjecting.abort();
      await injecting;
      await late?.[Symbol.asyncDispose]();
    }
    console.log(`hello: took ${((performance.now() - started) / 1000).toFixed(1)} s`);
  },
);

Deno.test(
  "a configured Sentinel that publishes a lying +switch-master cannot move writers or draw AUTH",
  processes,
  async () => {
    const started = performance.now();
    await using deployment = await startDeployment({ masterName: "liar", password: PASSWORD });
    const master = deployment.nodes[0]!;
    const name = deployment.masterName;
    const epoch = await masterField(deployment, deployment.sentinels[0]!, "config-epoch");
    await using fakeNode = await startFakeNode();
    // Honest when asked: the real master, the real epoch.
    await using fake = await startFakeSentinel({
      masterName: name,
      master: { host: HOST, port: master.port },
      configEpoch: Number(epoch),
    });
    const port = freePort();
    await using _tunnel = await startTunnel(
      tunnelConfig([fake.address, ...deployment.sentinels.map((s) => s.address)], name, port),
      { ports: [port] },
    );
    await waitForSwitchSubscriber(fake);

    const writers = startWriters({ port, clients: 4, pauseMs: 5, password: PASSWORD });
    let delivered = 0;
    try {
      await waitFor(
        "a write acknowledged by the real master",
        10_000,
        () => writers.acks.some((a) => a.node === master.port) || undefined,
      );
      delivered = await publishSwitches(
        fake,
        `${name} ${HOST} ${master.port} ${HOST} ${fakeNode.port}`,
        5,
        300,
      );
      await sleep(3000);
    } finally {
      writers.stop();
    }
    const report = await writers.stop();
    const result = outcome(fakeNode, report.acks, deployment);
    const onMaster = report.acks.filter((a) => a.node === master.port);
    console.log(
      `liar: ${delivered} +switch-master deliveries; ${report.acks.length} writes acknowledged, ` +
        `${onMaster.length} by the real master, ${result.fakeAcks} by the fake node; ` +
        `fake node got ${fakeNode.connections} connections, ${result.auth} AUTH ` +
        `(${tunnelAuth(fakeNode)} from the tunnel's ROLE checks), ${result.set} SET, ` +
        `${fakeNode.count("ROLE")} ROLE; writer errors ${
          JSON.stringify(Object.fromEntries(report.errors))
        }`,
    );
    assert.ok(delivered > 0, "the tunnel heard no +switch-master from the configured fake");
    assert.deepEqual(
      result,
      { auth: 0, set: 0, fakeAcks: 0 },
      "a lying +switch-master drew AUTH, SETs or acknowledged writes to the fake node",
    );
    assert.deepEqual(await missingKeys(master.port, onMaster.map((a) => a.key), PASSWORD), []);
    await assertWritesLandOn(deployment, port, master, "liar:after");
    console.log(`liar: took ${((performance.now() - started) / 1000).toFixed(1)} s`);
  },
);

Deno.test(
  "malformed +switch-master messages from a configured Sentinel cut no client",
  processes,
  async () => {
    const started = performance.now();
    await using deployment = await startDeployment({ masterName: "garbled", password: PASSWORD });
    const master = deployment.nodes[0]!;
    const name = deployment.masterName;
    const epoch = await masterField(deployment, deployment.sentinels[0]!, "config-epoch");
    await using fake = await startFakeSentinel({
      masterName: name,
      master: { host: HOST, port: master.port },
      configEpoch: Number(epoch),
    });
    const port = freePort();
    await using _tunnel = await startTunnel(
      tunnelConfig([fake.address, ...deployment.sentinels.map((s) => s.address)], name, port),
      { ports: [port] },
    );
    await waitForSwitchSubscriber(fake);

    const old = `${name} ${HOST} ${master.port}`;
    const nowhere = freePort(); // nothing listens there
    const variants: [string, string][] = [
      ["empty host", `${old}  ${nowhere}`],
      ["port -1", `${old} ${HOST} -1`],
      ["port 0", `${old} ${HOST} 0`],
      ["port 70000", `${old} ${HOST} 70000`],
      ["port 3e4", `${old} ${HOST} 3e4`],
      ["port 6379x", `${old} ${HOST} 6379x`],
      ["too few fields", `${old} ${HOST}`],
      ["too many fields", `${old} ${HOST} ${nowhere} extra`],
      ["unknown master name", `${name}-other ${HOST} ${master.port} ${HOST} ${nowhere}`],
    ];
    const cut: string[] = [];
    let delivered = 0;
    for (const [label, message] of variants) {
      // A client that is already talking to the real master when the message comes.
      using client = await clientOn(port, master.port);
      assert.equal(await client.call(["PING"]), "PONG");
      delivered += await publishSwitches(fake, message, 3, 100);
      // A cut is immediate; 1.5 s (a poll and a half) is ample for one to show.
      await sleep(1500);
      try {
        const reply = await client.call(["PING"]);
        if (reply !== "PONG") cut.push(`${label} (PING answered ${JSON.stringify(reply)})`);
      } catch (error) {
        cut.push(`${label} (${(error as Error).message})`);
      }
    }
    console.log(
      `garbled: ${variants.length} variants, ${delivered} deliveries; ` +
        `${cut.length} cut the client: ${cut.join("; ") || "none"}`,
    );
    assert.equal(delivered, variants.length * 3, "some +switch-master messages reached no tunnel");
    assert.deepEqual(cut, [], "a malformed +switch-master cut a client");
    await assertWritesLandOn(deployment, port, master, "garbled:after");
    console.log(`garbled: took ${((performance.now() - started) / 1000).toFixed(1)} s`);
  },
);
