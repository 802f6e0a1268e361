import assert from "node:assert/strict";
import { canConnect, freePort, startDeployment, startRedis, waitForPort } from "./_deployment.ts";

// Spawned processes and their pipes outlive individual ops by design; the
// deployment's own dispose is what these tests check instead.
const processTest = { sanitizeResources: false, sanitizeOps: false };

Deno.test("freePort() never hands out the same port twice", () => {
  const ports = Array.from({ length: 50 }, () => freePort());
  assert.equal(new Set(ports).size, ports.length);
});

Deno.test("waitForPort() rejects with TimeoutError when nothing listens", async () => {
  const port = freePort();
  await assert.rejects(waitForPort(port, 200), { name: "TimeoutError" });
});

Deno.test("waitForPort() resolves once the port listens", async () => {
  const port = freePort();
  using _listener = Deno.listen({ hostname: "127.0.0.1", port });
  await waitForPort(port, 1000);
});

Deno.test({
  name: "startRedis() rejects with the config error Redis printed",
  ...processTest,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "st-deploy-test-" });
    try {
      await assert.rejects(
        startRedis(dir, { config: ["no-such-directive yes"] }),
        /Cannot start Redis node .*no-such-directive/s,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "startDeployment() survives a forced failover and cleans up",
  ...processTest,
  async fn() {
    const deployment = await startDeployment();
    try {
      assert.equal(deployment.nodes.length, 3);
      assert.equal(deployment.sentinels.length, 3);
      const [master, ...replicas] = deployment.nodes;
      assert.ok(master);
      assert.equal(await deployment.sentinelMaster(), master.address);

      await using watch = await deployment.watchSwitch(15_000);
      const before = performance.now();
      await deployment.forceFailover();
      const { address, seenAt } = await watch.next;
      assert.ok(
        replicas.some((replica) => replica.address === address),
        `new master "${address}" is not a replica`,
      );
      assert.ok(seenAt >= before);
      await deployment.waitReady();
      assert.equal(await deployment.sentinelMaster(), address);
    } finally {
      await deployment[Symbol.asyncDispose]();
      await deployment[Symbol.asyncDispose]();
    }
    // A settled `exited` means the pid was reaped.
    for (const process of [...deployment.nodes, ...deployment.sentinels]) {
      assert.equal(process.state, "exited");
      assert.equal((await process.exited).signal, "SIGKILL");
      assert.equal(await canConnect(process.port), false, process.address);
    }
    await assert.rejects(Deno.stat(deployment.dir), Deno.errors.NotFound);
  },
});

Deno.test({
  name: "startDeployment() with passwords authenticates cli() and Sentinels",
  ...processTest,
  async fn() {
    await using deployment = await startDeployment({
      replicas: 1,
      password: "node secret",
      sentinelPassword: 'sentinel"secret',
    });
    const [master, replica] = deployment.nodes;
    const [sentinel] = deployment.sentinels;
    assert.ok(master && replica && sentinel);

    assert.equal(await deployment.cli(master, "SET", "key", "value"), "OK");
    assert.equal(await deployment.cli(sentinel, "PING"), "PONG");
    assert.equal(await deployment.sentinelMaster(), master.address);
    await deployment.cli(master, "WAIT", "1", "5000");
    assert.equal(await deployment.cli(replica, "GET", "key"), "value");

    // Without the password both kinds of process refuse commands.
    for (const target of [master, sentinel]) {
      const output = await new Deno.Command("redis-cli", {
        args: ["-p", String(target.port), "-e", "PING"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(output.success, false);
      assert.match(new TextDecoder().decode(output.stderr), /NOAUTH/);
    }
    await assert.rejects(
      deployment.cli(master, "NO-SUCH-COMMAND"),
      /unknown command/,
    );
  },
});

Deno.test({
  name: "RedisProcess.stop() pauses a Sentinel and waitReady() sees it again",
  ...processTest,
  async fn() {
    await using deployment = await startDeployment({ replicas: 1 });
    const [first, second] = deployment.sentinels;
    assert.ok(first && second);
    first.stop();
    assert.equal(first.state, "stopped");
    // The paused Sentinel is skipped rather than waited on.
    assert.equal(
      await deployment.sentinelMaster(),
      deployment.nodes[0]?.address,
    );
    first.cont();
    assert.equal(first.state, "running");
    await deployment.waitReady();
    second.kill();
    await second.exited;
    assert.equal(second.state, "exited");
    second.kill(); // already dead: no throw
  },
});

Deno.test({
  name: "startDeployment() kills what it started when a Sentinel fails",
  ...processTest,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "st-deploy-test-" });
    try {
      const error = await startDeployment({ dir, downAfterMs: 0 }).then(
        () => undefined,
        (error: unknown) => error,
      );
      assert.ok(error instanceof Error);
      assert.match(error.message, /Cannot start Redis sentinel/);
      assert.match(error.message, /down-after-milliseconds/);
      // The caller's directory is kept, so its config files name every port.
      const ports: number[] = [];
      for await (const entry of Deno.readDir(dir)) {
        const match = /^(?:node|sentinel)-(\d+)\.conf$/.exec(entry.name);
        if (match?.[1]) ports.push(Number(match[1]));
      }
      assert.ok(ports.length >= 4, `only ${ports.length} config files`);
      for (const port of ports) {
        assert.equal(await canConnect(port), false, `port ${port}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
