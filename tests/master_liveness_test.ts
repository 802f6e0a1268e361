/**
 * A master that is busy is still the master, and a master that is not any more
 * must not be kept because of stale Sentinel entries. Real redis-server and
 * Sentinel processes:
 *
 * - a Lua script that never returns (-BUSY) and `CLIENT PAUSE ... ALL`
 *   (ROLE times out) must not make the tunnel drop the master: a new client is
 *   tunnelled to it and gets what Redis answers, as it would directly;
 * - dead Sentinel entries, forged with `__sentinel__:hello` messages, must not
 *   outvote the live Sentinels after a failover that the tunnel missed.
 */
import assert from "node:assert/strict";
import { RedisConnection } from "../src/control/redis_connection.ts";
import { RespErrorReply, type RespValue } from "../src/control/resp.ts";
import { type Deployment, freePort, startDeployment } from "./_deployment.ts";
import { type Ack, runWriters } from "./_traffic.ts";
import { connectClient, type LogRecord, startTunnel } from "./_tunnel.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

/** A reply as text: `-ERR ...` for an error, JSON otherwise. */
function show(reply: RespValue): string {
  return reply instanceof RespErrorReply ? `-${reply.message}` : JSON.stringify(reply);
}

/** A connection straight to a node, bypassing the tunnel. */
function direct(port: number, replyTimeoutMs = 5000): Promise<RedisConnection> {
  return RedisConnection.open({ hostname: "127.0.0.1", port }, {
    connectTimeoutMs: 2000,
    replyTimeoutMs,
  });
}

/** How many ROLE calls the node refused (`rejected_calls` in `INFO commandstats`). */
async function refusedRoleCalls(deployment: Deployment, port: number): Promise<number> {
  const node = deployment.nodes.find((n) => n.port === port)!;
  const stats = await deployment.cli(node, "INFO", "commandstats");
  const match = /^cmdstat_role:.*rejected_calls=(\d+)/m.exec(stats);
  return match ? Number(match[1]) : 0;
}

/** A deployment that will not fail over by itself within the test: `down-after` is 10 s. */
function startPatientDeployment(masterName: string): Promise<Deployment> {
  return startDeployment({ masterName, replicas: 0, sentinels: 1, downAfterMs: 10_000 });
}

/** The tunnel's warnings and errors, for failure messages. */
function warnings(logs: readonly LogRecord[], last = 6): string {
  return logs.filter((r) => r.level !== "DEBUG" && r.level !== "INFO").slice(-last)
    .map((r) => `  ${String(r.message)}`).join("\n");
}

Deno.test(
  "a client connecting while a script keeps the master busy can run SCRIPT KILL through the tunnel",
  processes,
  async () => {
    await using deployment = await startPatientDeployment("busy");
    const master = deployment.nodes[0]!;
    const port = freePort();
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      timeouts: { pollIntervalMs: 200, clientWaitMs: 1000 },
      databases: [{ name: deployment.masterName, port }],
    }, { ports: [port] });
    await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
    await deployment.cli(master, "CONFIG", "SET", "busy-reply-threshold", "100");
    const refusedBefore = await refusedRoleCalls(deployment, master.port);

    using script = await direct(master.port);
    await script.send(["EVAL", "while true do end", "0"]);
    const scriptReply = script.read({ timeoutMs: 30_000 });
    scriptReply.catch(() => {});
    try {
      // The master answers -BUSY from now on.
      using probe = await direct(master.port);
      const busySince = performance.now();
      for (;;) {
        const reply = await probe.call(["PING"]);
        if (reply instanceof RespErrorReply && reply.code === "BUSY") break;
        assert.ok(performance.now() - busySince < 5000, `PING still answers ${show(reply)}`);
        await sleep(20);
      }
      // Let the tunnel poll the busy master a few times (pollIntervalMs is 200).
      await sleep(1000);

      using client = await connectClient(port, 10_000);
      const killed = await client.call(["SCRIPT", "KILL"]);
      assert.equal(
        show(killed),
        '"OK"',
        `a new client through the tunnel sent SCRIPT KILL to the busy master and got ${
          show(killed)
        }`,
      );
      // It was that SCRIPT KILL that ended the script. Redis answers OK before the script has
      // stopped (it stops at its next interrupt check), so a PING waits for that.
      assert.match(show(await scriptReply), /killed/i);
      assert.equal(await client.call(["PING"]), "PONG");
      // The tunnel did check the master while it was busy: this test exercised that.
      const refused = await refusedRoleCalls(deployment, master.port) - refusedBefore;
      assert.ok(refused >= 2, `the busy master refused only ${refused} ROLE calls`);
    } finally {
      try {
        await deployment.cli(master, "SCRIPT", "KILL");
      } catch {
        // NOTBUSY: the script has ended.
      }
    }
  },
);

Deno.test(
  "a client connecting during CLIENT PAUSE 3000 ALL gets its reply when the pause ends",
  processes,
  async () => {
    await using deployment = await startPatientDeployment("paused");
    const master = deployment.nodes[0]!;
    const port = freePort();
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      // The client waits less than the pause lasts, on purpose.
      timeouts: { pollIntervalMs: 200, masterReplyMs: 300, clientWaitMs: 1000 },
      databases: [{ name: deployment.masterName, port }],
    }, { ports: [port] });
    await tunnel.waitForLog((r) => /master is/.test(String(r.message)));

    await deployment.cli(master, "CLIENT", "PAUSE", "3000", "ALL");
    const pausedAt = performance.now();
    // A few polls whose ROLE check times out (masterReplyMs is 300).
    await sleep(1200);
    using client = await connectClient(port, 10_000);
    await client.send(["SET", "paused:key", "v"]);
    const sentAfterMs = performance.now() - pausedAt;
    assert.ok(sentAfterMs < 2500, `setup: SET sent ${sentAfterMs.toFixed(0)} ms into a 3 s pause`);
    const reply = await client.read({ timeoutMs: 10_000 });
    assert.equal(
      show(reply),
      '"OK"',
      `a new client through the tunnel sent SET during CLIENT PAUSE and got ${show(reply)}`,
    );
    assert.equal(await deployment.cli(master, "GET", "paused:key"), "v");
  },
);

/** `redis-cli` raw output of a RESP2 map (one key or value per line) as a Map. */
function pairs(text: string): Map<string, string> {
  const lines = text.split("\n");
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < lines.length; i += 2) map.set(lines[i]!, lines[i + 1]!);
  return map;
}

/** A hello message of a Sentinel that does not exist, for master `name` at `master`. */
function forgedHello(
  name: string,
  master: string,
  port: number,
): { message: string; runId: string } {
  const bytes = crypto.getRandomValues(new Uint8Array(20));
  const runId = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const [ip, masterPort] = [master.slice(0, master.lastIndexOf(":")), portOf(master)];
  return { message: `127.0.0.1,${port},${runId},0,${name},${ip},${masterPort},0`, runId };
}

/** Publishes forged hellos on the master until every Sentinel lists every forged run id. */
async function addStaleSentinels(deployment: Deployment, count: number): Promise<number[]> {
  const master = deployment.nodes[0]!;
  const forged = Array.from({ length: count }, () => freePort()).map((port) => ({
    port,
    ...forgedHello(deployment.masterName, master.address, port),
  }));
  const deadline = performance.now() + 10_000;
  for (;;) {
    for (const { message } of forged) {
      await deployment.cli(master, "PUBLISH", "__sentinel__:hello", message);
    }
    const lists = await Promise.all(
      deployment.sentinels.map((s) =>
        deployment.cli(s, "SENTINEL", "SENTINELS", deployment.masterName)
      ),
    );
    if (lists.every((list) => forged.every(({ runId }) => list.includes(runId)))) break;
    assert.ok(performance.now() < deadline, "setup: the Sentinels did not take the forged hellos");
    await sleep(100);
  }
  return forged.map((f) => f.port);
}

/** The Sentinel addresses the tunnel's admin API lists; none when it does not answer. */
async function tunnelSentinels(admin: string): Promise<string[]> {
  try {
    const response = await fetch(`http://${admin}/api/sentinels`, {
      signal: AbortSignal.timeout(2000),
    });
    const body = await response.json() as { sentinels?: { address?: unknown }[] };
    return (body.sentinels ?? []).map((s) => String(s.address));
  } catch {
    return [];
  }
}

/** Which node a new client reaches through the tunnel, and whether it acknowledges a SET. */
async function probe(
  port: number,
  key: string,
): Promise<{ node?: number; set?: string; error?: string }> {
  try {
    using client = await connectClient(port, 2000);
    const served = await client.call(["CONFIG", "GET", "port"]);
    if (!Array.isArray(served) || served[0] !== "port") return { error: show(served) };
    const node = Number(served[1]);
    return { node, set: show(await client.call(["SET", key, "1"])) };
  } catch (error) {
    return { error: (error as Error).message };
  }
}

Deno.test(
  "stale Sentinel entries and a missed +switch-master do not keep the tunnel on a demoted master",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "stale" });
    const oldMaster = deployment.nodes[0]!;
    // Four dead Sentinels next to three live ones: the live ones are 3 of 7.
    const stalePorts = await addStaleSentinels(deployment, 4);

    const port = freePort();
    const admin = `127.0.0.1:${freePort()}`;
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      timeouts: { pollIntervalMs: 200, clientWaitMs: 2000 },
      databases: [{ name: deployment.masterName, port }],
    }, { ports: [port], args: ["--admin", admin] });
    await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
    // Give the tunnel its first discovery. Today's tunnel adopts the dead entries, and they
    // outvote the live Sentinels; a tunnel may also leave out entries that Sentinels flag down.
    const discoveredBy = performance.now() + 3000;
    let adopted = false;
    while (!adopted && performance.now() < discoveredBy) {
      const known = await tunnelSentinels(admin);
      adopted = stalePorts.every((p) => known.includes(`127.0.0.1:${p}`));
      if (!adopted) await sleep(100);
    }

    // The tunnel misses the failover: frozen, its subscriptions cut while it cannot resubscribe.
    tunnel.kill("SIGSTOP");
    let newPort: number;
    let contAt: number;
    try {
      for (const sentinel of deployment.sentinels) {
        const killed = await deployment.cli(sentinel, "CLIENT", "KILL", "TYPE", "pubsub");
        assert.ok(Number(killed) >= 1, `setup: no subscription on Sentinel ${sentinel.address}`);
      }
      await using watch = await deployment.watchSwitch();
      await deployment.forceFailover();
      newPort = portOf((await watch.next).address);
      assert.notEqual(newPort, oldMaster.port);
      // Every live Sentinel names the new master and has published its +switch-master (the
      // leader does so only when the failover ends, after naming the new master for a while).
      const settledBy = performance.now() + 20_000;
      for (;;) {
        const views = await Promise.all(
          deployment.sentinels.map(async (s) =>
            pairs(await deployment.cli(s, "SENTINEL", "MASTER", deployment.masterName))
          ),
        );
        const settled = views.every((v) =>
          v.get("port") === String(newPort) && !/failover/.test(v.get("flags") ?? "")
        );
        if (settled) break;
        assert.ok(
          performance.now() < settledBy,
          `setup: the failover did not end: ${
            views.map((v) => `${v.get("port")} ${v.get("flags")}`).join("; ")
          }`,
        );
        await sleep(100);
      }
      // The demoted master does not know it yet: it still takes writes.
      const role = await deployment.cli(oldMaster, "ROLE");
      assert.equal(role.split("\n")[0], "master", "setup: the old master was already converted");
    } finally {
      tunnel.kill("SIGCONT");
      contAt = performance.now();
    }

    const stop = new AbortController();
    const acks: Ack[] = [];
    const writers = runWriters({
      port,
      clients: 2,
      pauseMs: 5,
      signal: stop.signal,
      onAck: (ack) => acks.push(ack),
    });
    let reached: { at: number; set: string } | undefined;
    let last = "";
    try {
      const deadline = contAt + 10_000;
      while (performance.now() < deadline) {
        const result = await probe(port, "probe");
        if (result.node === newPort) {
          reached = { at: performance.now(), set: result.set ?? "" };
          break;
        }
        last = result.error ?? `reached 127.0.0.1:${result.node} (SET answered ${result.set})`;
        await sleep(100);
      }
      // Writers that were on the old master have had time to show it.
      await sleep(1000);
    } finally {
      stop.abort();
    }
    const report = await writers;
    console.log(
      `stale entries: ${
        reached
          ? `a new client reached the new master ${(reached.at - contAt).toFixed(0)} ms`
          : "no new client reached the new master"
      } after SIGCONT; ${
        report.acks.filter((a) => a.node === oldMaster.port).length
      } writes acknowledged by the old master after SIGCONT; the tunnel ${
        adopted ? "listed" : "did not list"
      } the dead Sentinel entries`,
    );
    if (Deno.env.get("ST_DEBUG")) {
      for (const r of tunnel.logs) console.log(JSON.stringify(r));
    }
    const onOld = report.acks.filter((a) => a.node === oldMaster.port);
    assert.ok(
      reached,
      `no new client reached the new master 127.0.0.1:${newPort} within 10 s of SIGCONT; ` +
        `the last one ${last}; ${onOld.length} writes acknowledged by the old master ` +
        `127.0.0.1:${oldMaster.port} after SIGCONT; tunnel warnings:\n${warnings(tunnel.logs)}`,
    );
    assert.equal(reached.set, '"OK"', "SET on the new master through the tunnel");
    assert.equal(
      await deployment.cli(deployment.nodes.find((n) => n.port === newPort)!, "EXISTS", "probe"),
      "1",
    );
    // Once the tunnel has moved, nothing may still be acknowledged by the old master.
    const switchedAt = Math.min(
      reached.at,
      ...report.acks.filter((a) => a.node === newPort).map((a) => a.at),
    );
    const stale = onOld.filter((a) => a.at > switchedAt);
    assert.deepEqual(
      stale.map((a) => a.key),
      [],
      "writes acknowledged by the demoted master after the tunnel reached the new one",
    );
    assert.ok(report.acks.some((a) => a.node === newPort), "no writer reached the new master");
  },
);
