/**
 * The control plane of one master name, shared by every port of the name:
 * one ROLE per node per check whatever the ports, one cut-off reaching every
 * port at once, one hook call per change, each read port's own lag bound.
 * The unit cases drive a real ControlPlane with fake Sentinels and fake ROLE
 * answers (tests/_master_harness.ts); the integration cases run the tunnel
 * against real Redis and Sentinel processes, one name on two master ports
 * and a read port, and count what reaches the nodes and the log.
 */
import assert from "node:assert/strict";
import { eventually as within } from "./_wait.ts";
import { type Address, formatAddress } from "../src/shared/address.ts";
import type { DatabaseConfig } from "../src/shared/settings.ts";
import { masterSettingsOf } from "../src/shared/master_settings.ts";
import { supervise } from "../src/shared/io.ts";
import { ControlPlane } from "../src/control/control_plane.ts";
import type { RoleCheck } from "../src/control/role_probe.ts";
import type { ReplicaInfo } from "../src/control/sentinel_client.ts";
import type { SentinelEvent } from "../src/control/sentinel_events.ts";
import {
  A,
  attach,
  B,
  DATABASE,
  FakeTunnel,
  FENCED,
  S1,
  sleepFor,
  timeout,
  withWatcher,
} from "./_master_harness.ts";
import { freePort, startDeployment } from "./_deployment.ts";
import { startFakeRedis } from "./_fake_redis.ts";
import { DATABASE as READ_PORT, FakeSentinels as ReplicaSentinels } from "./_replica_harness.ts";
import { connectClient, type LogRecord, startTunnel } from "./_tunnel.ts";

const R: Address = { hostname: "10.0.0.3", port: 6379 };
const SECOND: DatabaseConfig = { ...DATABASE, port: 6382 };
const READS: DatabaseConfig = { ...DATABASE, port: 6381, role: "replica" };

const masterRole = (offset: number, replicas: readonly Address[]): RoleCheck => ({
  kind: "role",
  role: "master",
  asMaster: { offset, replicas: replicas.map((address) => ({ address, offset })) },
});
const replicaRole = (master: Address, offset: number): RoleCheck => ({
  kind: "role",
  role: "slave",
  asReplica: { master, state: "connected", offset },
});
const listed = (replica: Address): ReplicaInfo => ({
  address: formatAddress(replica),
  replica,
  flags: ["slave"],
  masterLinkStatus: "ok",
  replicationOffset: 0,
  reportedBy: formatAddress(S1),
});
const switchTo = (to: Address): SentinelEvent => ({
  kind: "switch-master",
  master: DATABASE.name,
  from: A,
  to,
});

Deno.test("ControlPlane asks the master for ROLE once per check, however many ports serve the name", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    sentinels.replicaList = [listed(R)];
    nodes.set(A, masterRole(1000, [R]));
    nodes.set(R, replicaRole(A, 1000));
  }, async (h) => {
    h.attachPort(SECOND);
    const reads = h.attachPort(READS);
    await h.master();
    // The first check with the read port asks R after the master's reply (the master lists it for
    // the first time); from the next one on, R is asked with the master, in the same step. Each
    // round's views come before its ROLE calls: between two round starts, one round's calls.
    await h.sentinels.moreRounds(2);
    const before = h.nodes.asked.length;
    await h.sentinels.moreRounds(5);
    const asked = h.nodes.asked.slice(before);
    assert.equal(asked.filter((a) => a === formatAddress(A)).length, 5, asked.join(" "));
    assert.equal(asked.filter((a) => a === formatAddress(R)).length, 5, asked.join(" "));
    // The one ROLE reply of the master served the read port too: R is usable against it.
    assert.deepEqual(reads.route.targets, { kind: "replica", addresses: [R] });
    assert.equal(reads.route.replicas[0]?.checkedAgainst, A);
  });
});

Deno.test("ControlPlane checks the master every poll while a replica hangs, and keeps the fence open", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    sentinels.replicaList = [listed(R)];
    nodes.set(A, masterRole(1000, [R]));
    nodes.set(R, replicaRole(A, 1000));
  }, async (h) => {
    const reads = h.attachPort({ ...FENCED, port: 6381, role: "replica" });
    await h.master();
    await h.sentinels.moreRounds(2);
    assert.deepEqual(reads.route.targets, { kind: "replica", addresses: [R] });
    // R freezes: its ROLE never answers while held.
    const release = h.nodes.hold(R);
    const before = h.nodes.asked.length;
    // Ten checks of the master while R hangs, each a majority's word renewing the fence (150 ms),
    // far longer than the fence: were the master's checks waiting on R, it would close.
    await h.sentinels.moreRounds(10);
    assert.ok(
      h.nodes.asked.slice(before).filter((a) => a === formatAddress(A)).length >= 9,
      h.nodes.asked.slice(before).join(" "),
    );
    assert.deepEqual(h.plane.master?.address, A);
    assert.equal(h.plane.fencedSince, undefined);
    assert.notEqual(h.plane.problem?.kind, "fenced");
    // The one replica stage under way holds R's verdict; no other piles up behind it.
    assert.equal(h.nodes.asked.slice(before).filter((a) => a === formatAddress(R)).length, 1);
    release();
    await h.sentinels.moreRounds(2);
    assert.deepEqual(reads.route.targets, { kind: "replica", addresses: [R] });
  }, FENCED);
});

Deno.test("ControlPlane's replica stage that fails unexpectedly is restarted by supervise(), as a check is", async () => {
  let calls = 0;
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, masterRole(1000, [R]));
    nodes.set(R, replicaRole(A, 1000));
    sentinels.replicas = () => {
      if (calls++ === 0) return Promise.reject(new TypeError("a bug in the replica stage"));
      return Promise.resolve([listed(R)]);
    };
  }, async (h) => {
    const reads = h.attachPort(READS);
    await h.master();
    await h.sentinels.moreRounds(4);
    assert.equal(h.crashes.length, 1);
    assert.match(String(h.crashes[0]), /a bug in the replica stage/);
    assert.deepEqual(reads.route.targets, { kind: "replica", addresses: [R] });
  });
});

Deno.test("ControlPlane cuts the old master's clients on every port of the name at one +switch-master", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
  }, async (h) => {
    const second = h.attachPort(SECOND);
    const reads = h.attachPort({ ...READS, whenNoReplica: "master" });
    await h.master();
    const onFirst = attach(h, A);
    const onSecond = new FakeTunnel(A);
    second.toMaster.add(onSecond);
    // A read port's client sent to the master (whenNoReplica "master") is the master's client too.
    const onReads = new FakeTunnel(A);
    reads.toMaster.add(onReads);
    h.event(switchTo(B), S1);
    for (const tunnel of [onFirst, onSecond, onReads]) {
      assert.equal(tunnel.closes, 1, "a port of the name kept a client of the old master");
    }
    // And the switch is not yet believed: no port sends a new client anywhere.
    assert.equal(h.route.targets, undefined);
    assert.equal(second.route.targets, undefined);
    assert.equal(reads.route.targets, undefined);
  });
});

Deno.test("ControlPlane reports one master change per failover, however many ports serve the name", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
    nodes.set(B, "master");
  }, async (h) => {
    h.attachPort(SECOND);
    h.attachPort(READS);
    await h.master();
    h.sentinels.allSay(B, 2);
    h.event(switchTo(B), S1);
    assert.deepEqual(await h.master(true), B);
    await h.sentinels.moreRounds(2);
    // The hook queue of the name gets each change once: the first master, then the failover.
    assert.deepEqual(
      h.changes.map((c) => [c.from && formatAddress(c.from), formatAddress(c.to)]),
      [[undefined, formatAddress(A)], [formatAddress(A), formatAddress(B)]],
    );
    assert.equal(h.plane.stats.masterChanges, 1);
  });
});

Deno.test("ControlPlane applies each read port's own maxLagBytes to the replicas it measured once", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    sentinels.replicaList = [listed(R)];
    // R is 5,000 bytes behind: within one port's bound, over the other's.
    nodes.set(A, masterRole(10_000, [R]));
    nodes.set(R, replicaRole(A, 5_000));
  }, async (h) => {
    const lenient = h.attachPort({ ...READS, port: 6381, maxLagBytes: 10_000 });
    const strict = h.attachPort({ ...READS, port: 6383, maxLagBytes: 1_000 });
    await h.master();
    await h.sentinels.moreRounds(2);
    assert.deepEqual(lenient.route.targets, { kind: "replica", addresses: [R] });
    assert.equal(strict.route.targets, undefined);
    assert.match(
      strict.route.problem?.detail ?? "",
      /5000 bytes behind the master \(maxLagBytes 1000\)/,
    );
    assert.equal(lenient.route.replicas[0]?.usable, true);
    assert.equal(strict.route.replicas[0]?.usable, false);
    // A reload lowers the lenient port's bound: its clients of R are cut at the next check, the
    // strict port's (none) untouched.
    const reading = new FakeTunnel(R);
    lenient.toReplicas.add(reading);
    lenient.settings = { ...lenient.settings, maxLagBytes: 1_000 };
    h.plane.wake(true);
    await timeout(reading.closed.promise, "the lenient port's client of R to be cut");
    assert.equal(lenient.route.targets, undefined);
  });
});

Deno.test("ControlPlane cuts no client of a port that has left it", async () => {
  await withWatcher((sentinels, nodes) => {
    sentinels.allSay(A, 1);
    nodes.set(A, "master");
  }, async (h) => {
    const second = h.attachPort(SECOND);
    await h.master();
    const stays = new FakeTunnel(A);
    second.toMaster.add(stays);
    second.route[Symbol.dispose]();
    const cut = attach(h, A);
    h.event(switchTo(B), S1);
    assert.equal(cut.closes, 1);
    assert.equal(stays.closes, 0, "a detached port's tunnel was cut by the plane");
  });
});

// A hostile review's finding: run() cleaned up only when its signal had aborted, so a plane
// stopped during supervise()'s backoff after a failure kept its ROLE connections and its fence's
// timer. It fails on c29a117.
/** Read-port Sentinels (the replica harness's) whose views throw from the `throwOn`th call. */
class ThrowingSentinels extends ReplicaSentinels {
  throwOn = Infinity;
  override masterViews() {
    if (this.viewCalls + 1 >= this.throwOn) {
      this.viewCalls++;
      return Promise.reject(new Error("an unexpected bug in a check"));
    }
    return super.masterViews();
  }
}

Deno.test({
  name:
    "a plane stopped while supervise() backs off after a failure closes its ROLE connections and stops its fence",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using node = await startFakeRedis({
      handle(command) {
        if (command[0]!.toUpperCase() === "ROLE") return ["master", 100, []];
        return undefined;
      },
    });
    const address = { hostname: "127.0.0.1", port: node.port };
    const sentinels = new ThrowingSentinels();
    sentinels.master.set(address);
    const database = {
      ...READ_PORT,
      role: "master" as const,
      port: 6380,
      fence: { afterMs: 400 },
      timeouts: { ...DATABASE.timeouts, pollIntervalMs: 50 },
    };
    const plane = new ControlPlane(masterSettingsOf(database), { sentinels });
    const controller = new AbortController();
    const failures: unknown[] = [];
    const running = supervise((s) => plane.run(s), controller.signal, {
      onFailure: (error) => {
        failures.push(error);
        // SIGTERM, or a reload that removes the name, lands during the backoff.
        controller.abort();
      },
    });
    await timeout(plane.waitForMaster(2000, AbortSignal.timeout(3000)), "a master");
    assert.equal(node.clients.length, 1, "one ROLE connection while running");
    sentinels.throwOn = sentinels.viewCalls + 1;
    await timeout(running, "the plane to stop");
    assert.equal(failures.length, 1);
    await sleepFor(600);
    const problems: string[] = [];
    const open: number = node.clients.length;
    if (open !== 0) {
      problems.push(`${open} ROLE connection(s) still open after the plane stopped`);
    }
    if (plane.stats.fenceClosures !== 0 || plane.fencedSince !== undefined) {
      problems.push("the write fence's timer fired on the stopped plane");
    }
    assert.deepEqual(problems, []);
  },
});

// ---------------------------------------------------------------------------------------------
// Against real Redis and Sentinels.
// ---------------------------------------------------------------------------------------------

const processes = { sanitizeOps: false, sanitizeResources: false };

/** {@linkcode within} with this file's deadline. */
const eventually = <T>(what: string, probe: () => Promise<T | undefined>) =>
  within(what, probe, 20_000);

/** A counter from `INFO commandstats`, such as the calls of `role`. */
function commandCalls(info: string, command: string): number {
  const match = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, "m").exec(info);
  return match ? Number(match[1]) : 0;
}

/** A sample from the Prometheus text, by its full series name. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const messagesOf = (logs: readonly LogRecord[], pattern: RegExp) =>
  logs.filter((l) => pattern.test(String(l.message)));

Deno.test(
  "one name on two master ports and a read port: one ROLE per check, each change logged once, one series per name",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "shared" });
    const [first, second, reads, admin] = [freePort(), freePort(), freePort(), freePort()];
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      admin: `127.0.0.1:${admin}`,
      timeouts: { pollIntervalMs: 200 },
      databases: [
        { name: "shared", port: first },
        { name: "shared", port: second },
        { name: "shared", port: reads, role: "replica" },
      ],
    }, { ports: [first, second, reads] });
    const [master] = deployment.nodes;
    const metrics = async () => await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    await eventually("a usable replica on the read port", async () => {
      const ready = await fetch(`http://127.0.0.1:${admin}/readyz`);
      await ready.body?.cancel();
      return ready.status === 200 ? true : undefined;
    });
    await tunnel.waitForLog((l) => /: master is /.test(String(l.message)));

    // Idle: the master is asked ROLE once per check of the name (the checks are counted in the
    // resolution histogram), not once per port and again for the replicas.
    const checks = async () =>
      sample(
        await metrics(),
        'sentinel_tunnel_resolution_duration_seconds_count{database="shared"}',
      )!;
    const roleCalls = async () =>
      commandCalls(await deployment.cli(master!, "INFO", "commandstats"), "role");
    const [checks0, roles0] = [await checks(), await roleCalls()];
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const [roles1, checks1] = [await roleCalls(), await checks()];
    const checked = checks1 - checks0;
    assert.ok(checked >= 3, `only ${checked} checks in 3 s at a 200 ms poll`);
    // A check under way at either end may have asked ROLE outside the count: one each way.
    assert.ok(
      roles1 - roles0 <= checked + 1,
      `${roles1 - roles0} ROLE calls on the master for ${checked} checks`,
    );

    // Startup: the master was confirmed, and said, once for the three ports.
    const startup = messagesOf(tunnel.logs, /: master is /);
    assert.equal(startup.length, 1, JSON.stringify(startup));

    // A planned failover with clients on both master ports: each step is logged once.
    const clients = await Promise.all([first, second].map((port) => connectClient(port)));
    const from = tunnel.logs.length;
    await using watch = await deployment.watchSwitch();
    await deployment.forceFailover();
    const { address } = await watch.next;
    await tunnel.waitForLog((l) => /master is/.test(String(l.message)) && l.to === address);
    for (const client of clients) await assert.rejects(client.call(["PING"]));
    // Everything logged once comes within a few checks; then count.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const failover = tunnel.logs.slice(from);
    const once = (pattern: RegExp) =>
      assert.equal(
        messagesOf(failover, pattern).length,
        1,
        `${pattern}: ${JSON.stringify(failover.map((l) => l.message))}`,
      );
    once(/: master is /);
    once(/under way .*: new clients wait for the new master/);
    assert.equal(messagesOf(failover, /check failed/).length, 0);
    // The cut names the ports it closed clients on.
    const cut = messagesOf(failover, /closed \d+ client connections? to the old master/)[0];
    assert.ok(cut, JSON.stringify(failover.map((l) => l.message)));
    assert.equal(cut.clientsClosed, 2);
    assert.match(
      String(cut.message),
      new RegExp(
        `closed 2 client connections to the old master \\(1 on port ${first}, 1 on port ${second}\\)`,
      ),
    );
    // No count of nothing: every "closed" says how many, and never 0.
    assert.deepEqual(messagesOf(failover, /closed 0 /), []);
    for (const client of clients) client.close();

    // Metrics about the master: one series for the name, counted once.
    const text = await metrics();
    assert.equal(sample(text, 'sentinel_tunnel_master_changes_total{database="shared"}'), 1);
    assert.equal(sample(text, 'sentinel_tunnel_failovers_total{database="shared"}'), 1);
    assert.equal(
      text.split("\n").filter((l) => l.startsWith("sentinel_tunnel_master_changes_total{")).length,
      1,
    );
  },
);

Deno.test(
  "a reload compares names and ports: a name's new settings reach its plane once, a name no entry serves stops, and entries that disagree are refused",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "shared", sentinels: 1 });
    const [writes, reads, other] = [freePort(), freePort(), freePort()];
    const sentinels = deployment.sentinels.map((s) => s.address);
    await using tunnel = await startTunnel({
      sentinels,
      databases: [
        { name: "shared", port: writes },
        { name: "shared", port: reads, role: "replica" },
        { name: "other", port: other },
      ],
    }, { ports: [writes, reads, other] });
    await tunnel.waitForLog((l) => /: master is /.test(String(l.message)));
    using client = await connectClient(writes);
    assert.equal(await client.call(["SET", "kept", "1"]), "OK");
    const reload = async (config: unknown) => {
      const from = tunnel.logs.length;
      await Deno.writeTextFile(tunnel.configPath, JSON.stringify(config));
      tunnel.kill("SIGHUP");
      return await tunnel.waitForLog((l) =>
        tunnel.logs.indexOf(l) >= from && /^(Reloaded|Reload refused)/.test(String(l.message))
      );
    };

    // A fence for the name: one plane takes it, both of its ports are updated in place.
    const fenced = await reload({
      sentinels,
      fence: { afterMs: 5000 },
      databases: [
        { name: "shared", port: writes },
        { name: "shared", port: reads, role: "replica" },
        { name: "other", port: other },
      ],
    });
    assert.deepEqual(fenced.updated, ["shared", "shared (replicas)", "other"]);
    assert.deepEqual(
      [fenced.mastersAdded, fenced.mastersRemoved, fenced.mastersUpdated],
      [[], [], ["shared", "other"]],
    );
    assert.equal(await client.call(["GET", "kept"]), "1");

    // Entries of one name that disagree are refused; the running config stays.
    const refused = await reload({
      sentinels,
      databases: [
        { name: "shared", port: writes, masterAuth: { password: "x" } },
        { name: "shared", port: reads, role: "replica" },
      ],
    });
    assert.match(String(refused.message), /^Reload refused/);
    assert.match(String(refused.error), /databases\[1\]: masterAuth differs from databases\[0\]/);
    assert.equal(await client.call(["GET", "kept"]), "1");

    // The name "other" leaves with its only entry: its plane stops.
    const removed = await reload({
      sentinels,
      fence: { afterMs: 5000 },
      databases: [
        { name: "shared", port: writes },
        { name: "shared", port: reads, role: "replica" },
      ],
    });
    assert.deepEqual(removed.removed, ["other"]);
    assert.deepEqual([removed.mastersRemoved, removed.mastersUpdated], [["other"], []]);
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port: other }),
      Deno.errors.ConnectionRefused,
    );
    assert.equal(await client.call(["GET", "kept"]), "1");
  },
);

Deno.test(
  "clients a reload closes are counted as cut for reload, per name, and recorded for the status page",
  processes,
  async () => {
    await using deployment = await startDeployment({
      masterName: "shared",
      sentinels: 1,
      replicas: 0,
    });
    const [writes, reads, admin] = [freePort(), freePort(), freePort()];
    const sentinels = deployment.sentinels.map((s) => s.address);
    const reader = { name: "shared", port: reads, role: "replica", whenNoReplica: "master" };
    await using tunnel = await startTunnel({
      sentinels,
      admin: `127.0.0.1:${admin}`,
      databases: [{ name: "shared", port: writes }, reader],
    }, { ports: [writes, reads] });
    await tunnel.waitForLog((l) => /: master is /.test(String(l.message)));
    const reload = async (config: unknown) => {
      const from = tunnel.logs.length;
      await Deno.writeTextFile(tunnel.configPath, JSON.stringify(config));
      tunnel.kill("SIGHUP");
      await tunnel.waitForLog((l) =>
        tunnel.logs.indexOf(l) >= from && /^Reloaded/.test(String(l.message))
      );
    };
    const cutForReload = async () => {
      const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
      return sample(text, 'sentinel_tunnel_clients_cut_total{database="shared",reason="reload"}');
    };
    assert.equal(await cutForReload(), 0);

    // No replica: the read client goes to the master, until whenNoReplica says it may not.
    using readClient = await connectClient(reads);
    assert.equal(await readClient.call(["PING"]), "PONG");
    await reload({
      sentinels,
      admin: `127.0.0.1:${admin}`,
      databases: [{ name: "shared", port: writes }, { ...reader, whenNoReplica: "reject" }],
    });
    await assert.rejects(readClient.call(["PING"]));
    assert.equal(await cutForReload(), 1);

    // An entry removed closes its clients too.
    using writeClient = await connectClient(writes);
    assert.equal(await writeClient.call(["PING"]), "PONG");
    await reload({
      sentinels,
      admin: `127.0.0.1:${admin}`,
      databases: [{ ...reader, whenNoReplica: "reject" }],
    });
    await assert.rejects(writeClient.call(["PING"]));
    await eventually(
      "the removed port's cut counted",
      async () => await cutForReload() === 2 ? true : undefined,
    );

    type Row = {
      event: { kind: string; reason?: string; node: string; clients: number; ports: unknown };
    };
    const { events } = await (await fetch(`http://127.0.0.1:${admin}/api/events`)).json() as {
      events: Row[];
    };
    const cuts = events.map((row) => row.event).filter((e) =>
      e.kind === "cut" && e.reason === "reload"
    );
    assert.deepEqual(
      cuts.map((e) => [e.node, e.clients, e.ports]),
      [
        ["the master", 1, { [`port ${reads}`]: 1 }],
        ["every node", 1, { [`port ${writes}`]: 1 }],
      ],
    );
  },
);
