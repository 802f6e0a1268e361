/**
 * Operating the tunnel against real Redis and Sentinel processes: the admin
 * API and its metrics, failover hooks, and live reload with SIGHUP.
 */
import assert from "node:assert/strict";
import { eventually } from "./_wait.ts";
import { RespErrorReply } from "../src/control/resp.ts";
import { freePort, startDeployment } from "./_deployment.ts";
import { connectClient, oneCommand, startTunnel } from "./_tunnel.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.json() };
}

async function getText(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.text() };
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

Deno.test(
  "admin API reports health, readiness, topology, Sentinels, config and metrics",
  processes,
  async () => {
    const sentinelPassword = "sentinel-secret-for-redaction";
    await using deployment = await startDeployment({ masterName: "observed", sentinelPassword });
    const port = freePort();
    const missingPort = freePort();
    const adminPort = freePort();
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      sentinelAuth: { password: sentinelPassword },
      timeouts: { clientWaitMs: 300 },
      databases: [{ name: "observed", port }, { name: "missing", port: missingPort }],
    }, { ports: [port, missingPort], args: ["--admin", `127.0.0.1:${adminPort}`] });
    const admin = `http://127.0.0.1:${adminPort}`;
    await tunnel.waitForLog((r) => /Admin API listening/.test(String(r.message)));
    await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
    await tunnel.waitForLog((r) => r.kind === "unknown");

    assert.deepEqual(await getText(`${admin}/healthz`), { status: 200, body: "ok\n" });

    // One database has no master: not ready, and the body says which and why.
    const notReady = await getJson(`${admin}/readyz`);
    assert.equal(notReady.status, 503);
    const readiness = notReady.body.databases as {
      name: string;
      ready: boolean;
      reason: string | null;
    }[];
    assert.equal(readiness.find((d) => d.name === "observed")?.ready, true);
    const missing = readiness.find((d) => d.name === "missing")!;
    assert.equal(missing.ready, false);
    assert.match(missing.reason!, /no Sentinel knows master "missing"/);

    using client = await connectClient(port);
    assert.equal(await client.call(["SET", "k", "v".repeat(100)]), "OK");
    assert.ok((await oneCommand(missingPort, ["PING"])) instanceof RespErrorReply);

    const { body: topology } = await getJson(`${admin}/api/topology`);
    const observed = (topology.databases as Record<string, unknown>[]).find((d) =>
      d.name === "observed"
    )!;
    const master = observed.master as {
      address: string;
      confirmedBy: string;
      learnedVia: string;
      confirmedAt: string;
    };
    assert.equal(master.address, deployment.nodes[0]!.address);
    assert.equal(master.confirmedBy, "ROLE");
    assert.match(
      master.learnedVia,
      /^configured Sentinels? 127\.0\.0\.1:\d+.* at config-epoch \d+$/,
    );
    assert.ok(!Number.isNaN(Date.parse(master.confirmedAt)));
    const replicas = (observed.replicas as { address: string }[]).map((r) => r.address).sort();
    assert.deepEqual(replicas, deployment.nodes.slice(1).map((n) => n.address).sort());
    assert.deepEqual(observed.connections, {
      active: 1,
      toMaster: 1,
      toReplicas: 0,
      byMaster: { [deployment.nodes[0]!.address]: 1 },
      byReplica: {},
      ready: 0,
    });

    const { body: sentinels } = await getJson(`${admin}/api/sentinels`);
    const known = sentinels.sentinels as { address: string; origin: string; reachable: boolean }[];
    for (const sentinel of deployment.sentinels) {
      const entry = known.find((k) => k.address === sentinel.address);
      assert.ok(entry, `${sentinel.address} is not listed`);
      assert.equal(entry.origin, "configured");
    }
    assert.ok(known.some((k) => k.reachable), JSON.stringify(known));

    const configuration = await getText(`${admin}/api/configuration`);
    assert.equal(configuration.status, 200);
    assert.ok(!configuration.body.includes(sentinelPassword));
    assert.match(configuration.body, /<redacted>/);

    const metrics = await getText(`${admin}/metrics`);
    assert.equal(metrics.status, 200);
    const value = (series: string) => {
      const line = metrics.body.split("\n").find((l) => l.startsWith(`${series} `));
      assert.ok(line, `no series ${series} in:\n${metrics.body}`);
      return Number(line.slice(series.length + 1));
    };
    const observedLabels = `database="observed",port="${port}",role="master"`;
    const missingLabels = `database="missing",port="${missingPort}",role="master"`;
    assert.equal(value(`sentinel_tunnel_connections_active{${observedLabels}}`), 1);
    assert.ok(value(`sentinel_tunnel_connections_total{${observedLabels}}`) >= 1);
    assert.ok(value(`sentinel_tunnel_connections_rejected_total{${missingLabels}}`) >= 1);
    assert.ok(
      value(`sentinel_tunnel_bytes_total{direction="client_to_server",${observedLabels}}`) > 100,
    );
    assert.ok(
      value(`sentinel_tunnel_bytes_total{direction="server_to_client",${observedLabels}}`) >= 5,
    );
    // About the master: labelled by name alone, one series per name.
    assert.equal(value(`sentinel_tunnel_master_changes_total{database="observed"}`), 0);
    assert.equal(value(`sentinel_tunnel_master_confirmed{database="observed"}`), 1);
    assert.equal(value(`sentinel_tunnel_failovers_total{database="observed"}`), 0);
    assert.equal(value(`sentinel_tunnel_write_fence_closed{database="observed"}`), 0);
    assert.ok(value(`sentinel_tunnel_resolution_duration_seconds_count{database="observed"}`) >= 1);
    assert.match(
      metrics.body,
      /^sentinel_tunnel_sentinel_errors_total\{sentinel="127\.0\.0\.1:\d+"\} 0$/m,
    );
    for (const line of metrics.body.split("\n")) {
      if (line && !line.startsWith("#")) assert.match(line, /^sentinel_tunnel_/);
    }

    assert.equal((await getJson(`${admin}/nope`)).status, 404);
    const post = await fetch(`${admin}/healthz`, { method: "POST" });
    await post.body?.cancel();
    assert.equal(post.status, 405);
  },
);

Deno.test(
  "a failover hook runs with the change in its environment, and a failing hook harms nothing",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "hooked" });
    const dir = await Deno.makeTempDir({ prefix: "st-hook-" });
    const record = `${dir}/changes.log`;
    const port = freePort();
    const readPort = freePort();
    const failingPort = freePort();
    // The name is served on a master port and a read port: the hook runs once per change.
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      onMasterChange: {
        command: [
          "sh",
          "-c",
          `echo "$SENTINEL_TUNNEL_DATABASE $SENTINEL_TUNNEL_OLD_MASTER $SENTINEL_TUNNEL_NEW_MASTER" >> '${record}'`,
        ],
      },
      databases: [
        { name: "hooked", port },
        { name: "hooked", port: readPort, role: "replica" },
      ],
    }, { ports: [port, readPort] });
    // The same deployment behind a tunnel whose hook fails and one that hangs past its timeout.
    await using _failing = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      databases: [{
        name: "hooked",
        port: failingPort,
        onMasterChange: { command: ["sh", "-c", "echo broken >&2; sleep 30"], timeoutMs: 200 },
      }],
    }, { ports: [failingPort] });

    const first = await eventually("the first hook run", async () => {
      const text = await Deno.readTextFile(record).catch(() => "");
      return text.trim() ? text : undefined;
    });
    assert.equal(first, `hooked  ${deployment.nodes[0]!.address}\n`);

    await using watch = await deployment.watchSwitch();
    await deployment.forceFailover();
    const { address } = await watch.next;
    const lines = await eventually("the hook run for the failover", async () => {
      const text = await Deno.readTextFile(record);
      const lines = text.trim().split("\n");
      return lines.length >= 2 ? lines : undefined;
    });
    assert.equal(lines[1], `hooked ${deployment.nodes[0]!.address} ${address}`);
    await tunnel.waitForLog((r) => /hook .* succeeded/.test(String(r.message)));

    // The tunnel with the hanging hook still follows the failover and serves clients.
    await eventually("the tunnel with a failing hook to serve the new master", async () => {
      const served = await oneCommand(failingPort, ["CONFIG", "GET", "port"]);
      return JSON.stringify(served) === JSON.stringify(["port", String(portOf(address))])
        ? true
        : undefined;
    });
    await _failing.waitForLog((r) => /was killed after 200 ms/.test(String(r.message)));

    // One control plane serves both entries: the new master is confirmed, and logged, once.
    await tunnel.waitForLog((l) => /master is/.test(String(l.message)) && l.to === address);
    // Stopping waits for every hook queued: none ran twice.
    await tunnel.stop();
    assert.equal(
      tunnel.logs.filter((l) => /master is/.test(String(l.message)) && l.to === address).length,
      1,
    );
    assert.deepEqual((await Deno.readTextFile(record)).trim().split("\n"), lines.slice(0, 2));
    await Deno.remove(dir, { recursive: true });
  },
);

Deno.test(
  "SIGHUP reloads the config: adds, removes and replaces databases, keeps the others' connections",
  processes,
  async () => {
    await using deployment = await startDeployment({
      masterName: "live",
      replicas: 1,
      sentinels: 1,
    });
    const sentinels = deployment.sentinels.map((s) => s.address);
    const [keptPort, removedPort, movedPort, newPort, addedPort] = [
      freePort(),
      freePort(),
      freePort(),
      freePort(),
      freePort(),
    ];
    await using tunnel = await startTunnel({
      sentinels,
      databases: [
        { name: "live", port: keptPort },
        { name: "gone", port: removedPort },
        { name: "moving", port: movedPort },
      ],
    }, { ports: [keptPort, removedPort, movedPort] });
    using kept = await connectClient(keptPort);
    assert.equal(await kept.call(["SET", "before", "1"]), "OK");

    // An invalid config is refused and the old one keeps running.
    await Deno.writeTextFile(
      tunnel.configPath,
      `{ "sentinels": [], "databases": [{ "name": "live", "port": 70000 }] }`,
    );
    tunnel.kill("SIGHUP");
    const refused = await tunnel.waitForLog((r) => /Reload refused/.test(String(r.message)));
    assert.match(String(refused.error), /databases\[0\]\.port: 70000 is not valid/);
    assert.equal(await kept.call(["PING"]), "PONG");

    await Deno.writeTextFile(
      tunnel.configPath,
      JSON.stringify({
        sentinels,
        timeouts: { clientWaitMs: 4000 },
        databases: [
          { name: "live", port: keptPort },
          { name: "moving", port: newPort },
          { name: "added", port: addedPort },
        ],
      }),
    );
    tunnel.kill("SIGHUP");
    const reloaded = await tunnel.waitForLog((r) => /^Reloaded/.test(String(r.message)));
    assert.deepEqual(
      [reloaded.added, reloaded.removed, reloaded.replaced, reloaded.updated],
      [["added"], ["gone"], ["moving"], ["live"]],
    );

    // The connection on the database that stayed is untouched.
    assert.equal(await kept.call(["GET", "before"]), "1");
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port: removedPort }),
      Deno.errors.ConnectionRefused,
    );
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port: movedPort }),
      Deno.errors.ConnectionRefused,
    );
    const added = await oneCommand(addedPort, ["PING"]);
    assert.ok(
      added instanceof RespErrorReply && /no Sentinel knows master "added"/.test(added.message),
    );
    const moved = await oneCommand(newPort, ["PING"]);
    assert.ok(moved instanceof RespErrorReply && /database "moving"/.test(moved.message));

    // A database renamed on the same port: the new listener waits for the old one to let go.
    await Deno.writeTextFile(
      tunnel.configPath,
      JSON.stringify({
        sentinels,
        timeouts: { clientWaitMs: 4000 },
        databases: [
          { name: "live", port: keptPort },
          { name: "moving", port: newPort },
          { name: "renamed", port: addedPort },
        ],
      }),
    );
    tunnel.kill("SIGHUP");
    const renamed = await tunnel.waitForLog((r) =>
      /^Reloaded/.test(String(r.message)) && JSON.stringify(r.added) === '["renamed"]'
    );
    assert.deepEqual([renamed.removed, renamed.failed], [["added"], []]);
    const reply = await oneCommand(addedPort, ["PING"]);
    assert.ok(
      reply instanceof RespErrorReply && /database "renamed"/.test(reply.message),
      String(reply),
    );
    assert.equal(await kept.call(["GET", "before"]), "1");
  },
);
