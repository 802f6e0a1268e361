/**
 * The tunnel against real redis-server and Sentinel processes: routing, an
 * unknown master name, a password-protected deployment, and Sentinels that
 * are all down.
 */
import assert from "node:assert/strict";
import { RedisConnection } from "../src/control/redis_connection.ts";
import { RespErrorReply } from "../src/control/resp.ts";
import { freePort, startDeployment } from "./_deployment.ts";
import { connectClient, oneCommand, startTunnel } from "./_tunnel.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };

/** One master and one Sentinel: enough where no failover happens. */
function startMinimalDeployment(masterName: string) {
  return startDeployment({ masterName, replicas: 0, sentinels: 1 });
}

function sentinelList(
  deployment: { sentinels: readonly { address: string }[] },
): string[] {
  return deployment.sentinels.map((s) => s.address);
}

Deno.test(
  "tunnel routes a client to the master and keeps answering",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "routing" });
    const port = freePort();
    await using tunnel = await startTunnel({
      sentinels: sentinelList(deployment),
      databases: [{ name: "routing", port }],
    }, { ports: [port] });

    using client = await connectClient(port);
    assert.equal(await client.call(["SET", "greeting", "hello"]), "OK");
    const role = await client.call(["ROLE"]);
    assert.ok(
      Array.isArray(role) && role[0] === "master",
      `ROLE through the tunnel: ${JSON.stringify(role)}`,
    );
    // The write landed on the master itself, not on a replica.
    assert.equal(
      await deployment.cli(deployment.nodes[0]!, "GET", "greeting"),
      "hello",
    );
    const served = await client.call(["CONFIG", "GET", "port"]);
    assert.deepEqual(served, ["port", String(deployment.nodes[0]!.port)]);
    // A 1 MiB value crosses intact both ways.
    const big = "x".repeat(1024 * 1024);
    assert.equal(await client.call(["SET", "big", big]), "OK");
    assert.equal(await client.call(["GET", "big"]), big);

    const change = await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
    assert.equal(change.database, "routing");
    assert.equal(change.to, deployment.nodes[0]!.address);
  },
);

Deno.test(
  "tunnel answers an unknown master name with a RESP error",
  processes,
  async () => {
    await using deployment = await startMinimalDeployment("known");
    const port = freePort();
    await using _tunnel = await startTunnel({
      sentinels: sentinelList(deployment),
      databases: [{ name: "nosuchmaster", port }],
    }, { ports: [port] });

    const started = performance.now();
    const reply = await oneCommand(port, ["PING"]);
    assert.ok(
      reply instanceof RespErrorReply,
      `expected an error reply, got ${JSON.stringify(reply)}`,
    );
    assert.match(
      reply.message,
      /^ERR sentinel-tunnel: database "nosuchmaster": no Sentinel knows master "nosuchmaster"/,
    );
    // The Sentinels already said no: the client is not kept waiting for clientWaitMs (5 s).
    assert.ok(
      performance.now() - started < 4000,
      `took ${performance.now() - started} ms`,
    );
  },
);

Deno.test(
  "tunnel serves a password-protected deployment with Sentinel and master auth",
  processes,
  async () => {
    const password = "node pass";
    const sentinelPassword = "sentinel-pass";
    await using deployment = await startDeployment({
      masterName: "secure",
      password,
      sentinelPassword,
    });
    const port = freePort();
    const unauthenticatedPort = freePort();
    const env = { ST_SENTINEL_PW: sentinelPassword, ST_MASTER_PW: password };
    await using tunnel = await startTunnel({
      sentinels: sentinelList(deployment),
      sentinelAuth: { passwordEnv: "ST_SENTINEL_PW" },
      databases: [{ name: "secure", port, masterAuth: { passwordEnv: "ST_MASTER_PW" } }],
    }, { ports: [port], env });
    await using _withoutMasterAuth = await startTunnel({
      sentinels: sentinelList(deployment),
      sentinelAuth: { passwordEnv: "ST_SENTINEL_PW" },
      timeouts: { clientWaitMs: 1500 },
      databases: [{ name: "secure", port: unauthenticatedPort }],
    }, { ports: [unauthenticatedPort], env });

    using client = await connectClient(port);
    const noauth = await client.call(["GET", "x"]);
    assert.ok(
      noauth instanceof RespErrorReply && noauth.code === "NOAUTH",
      "the tunnel does not authenticate clients",
    );
    assert.equal(await client.call(["AUTH", password]), "OK");
    assert.equal(await client.call(["SET", "x", "1"]), "OK");
    assert.equal(await deployment.cli(deployment.nodes[0]!, "GET", "x"), "1");

    // Without masterAuth, ROLE cannot be checked: the client is told why.
    const refused = await oneCommand(unauthenticatedPort, ["PING"]);
    assert.ok(
      refused instanceof RespErrorReply,
      `expected an error reply, got ${JSON.stringify(refused)}`,
    );
    assert.match(refused.message, /NOAUTH/);
    assert.match(refused.message, /masterAuth/);

    const text = JSON.stringify(tunnel.logs);
    assert.ok(
      !text.includes(password) && !text.includes(sentinelPassword),
      "a password reached the logs",
    );
  },
);

Deno.test(
  "tunnel keeps serving the known master when every Sentinel is down",
  processes,
  async () => {
    await using deployment = await startDeployment({
      masterName: "orphan",
      replicas: 1,
    });
    const port = freePort();
    await using tunnel = await startTunnel({
      sentinels: sentinelList(deployment),
      timeouts: { pollIntervalMs: 200 },
      databases: [{ name: "orphan", port }],
    }, { ports: [port] });
    assert.equal(await oneCommand(port, ["SET", "before", "1"]), "OK");

    for (const sentinel of deployment.sentinels) sentinel.kill("SIGKILL");
    await Promise.all(deployment.sentinels.map((s) => s.exited));
    await tunnel.waitForLog((r) =>
      r.kind === "unreachable" && /no Sentinel reachable/.test(String(r.detail))
    );
    // Several polls fail, and new clients are still served by the known master.
    for (let i = 0; i < 10; i++) {
      assert.equal(await oneCommand(port, ["SET", `during:${i}`, "1"]), "OK");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(
      await deployment.cli(deployment.nodes[0]!, "GET", "during:9"),
      "1",
    );
  },
);

Deno.test(
  "tunnel gives a RESP error when no Sentinel is reachable at start",
  processes,
  async () => {
    const deadSentinels = [freePort(), freePort()].map((p) => `127.0.0.1:${p}`);
    const port = freePort();
    await using tunnel = await startTunnel({
      sentinels: deadSentinels,
      timeouts: { clientWaitMs: 800 },
      databases: [{ name: "lonely", port }],
    }, { ports: [port] });
    const reply = await oneCommand(port, ["PING"]);
    assert.ok(
      reply instanceof RespErrorReply,
      `expected an error reply, got ${JSON.stringify(reply)}`,
    );
    assert.match(
      reply.message,
      /database "lonely": no confirmed master after waiting 800 ms: no Sentinel reachable/,
    );
    assert.ok(reply.message.includes(deadSentinels[0]!), reply.message);
    await tunnel.waitForLog((r) => /rejected client/.test(String(r.message)));
  },
);

Deno.test(
  "tunnel exits 0 on SIGTERM and closes its tunnels",
  processes,
  async () => {
    await using deployment = await startMinimalDeployment("bye");
    const port = freePort();
    const tunnel = await startTunnel({
      sentinels: sentinelList(deployment),
      databases: [{ name: "bye", port }],
    }, { ports: [port] });
    using client = await connectClient(port);
    assert.equal(await client.call(["PING"]), "PONG");
    const status = await tunnel.stop();
    assert.equal(status.code, 0);
    await assert.rejects(client.call(["PING"]), /closed|reset/);
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port }),
      Deno.errors.ConnectionRefused,
    );
    await tunnel[Symbol.asyncDispose]();
  },
);

Deno.test(
  "tunnel survives running out of file descriptors and serves again",
  processes,
  async () => {
    await using deployment = await startMinimalDeployment("crowded");
    const port = freePort();
    // About 40 descriptors: Deno's own, the listener, Sentinel connections, and a few tunnels.
    await using tunnel = await startTunnel({
      sentinels: sentinelList(deployment),
      databases: [{ name: "crowded", port }],
    }, { ports: [port], fdLimit: 40 });
    await tunnel.waitForLog((r) => /master is/.test(String(r.message)));

    // Far more clients than descriptors: accept fails with EMFILE, which is logged and retried.
    const crowd: Deno.TcpConn[] = [];
    for (let i = 0; i < 60; i++) crowd.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    const failure = await tunnel.waitForLog((r) => /accept failed/.test(String(r.message)));
    assert.match(String(failure.error), /open files|descriptor/i);
    for (const conn of crowd) conn.close();

    // Once they are gone, new clients are served again, by the same process.
    let reply: unknown;
    for (let attempt = 0; attempt < 50 && reply !== "PONG"; attempt++) {
      reply = await oneCommand(port, ["PING"], 2000).catch((error) => String(error));
      if (reply !== "PONG") await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(reply, "PONG");
    assert.equal((await tunnel.stop()).code, 0);
  },
);

Deno.test(
  "tunnel works over IPv6: Sentinels at [::1] and a listener on ::1",
  processes,
  async () => {
    await using deployment = await startMinimalDeployment("six");
    const port = freePort();
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => `[::1]:${s.port}`),
      databases: [{ name: "six", port, bind: "::1" }],
    });
    await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
    const logs = JSON.stringify(tunnel.logs);
    assert.match(logs, /listening on \[::1\]:\d+/);
    assert.match(logs, /learned via configured Sentinel \[::1\]:\d+ \(1 of 1\) at config-epoch 0/);
    using client = await RedisConnection.open({ hostname: "::1", port }, {
      connectTimeoutMs: 2000,
      replyTimeoutMs: 5000,
    });
    assert.equal(await client.call(["SET", "v6", "yes"]), "OK");
    assert.equal(await deployment.cli(deployment.nodes[0]!, "GET", "v6"), "yes");
  },
);
