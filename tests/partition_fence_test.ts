/**
 * Failover scenarios 2, 3 and 5 of issue #11 on the multi-host test bed
 * (tests/_network.ts): the tunnel's host cut off from every Sentinel, a
 * partition that strands the tunnel with the old master (with and without the
 * write fence), and a silent link between the tunnel and the master alone.
 * The Sentinels run on hosts of their own (s1..s3) so that a cut can part
 * them from the nodes. Needs root and iproute2 (CI runs as root); skipped
 * elsewhere, saying why. The figures are printed for the closing note.
 *
 * Two steps fail until the tunnel does what issue #11 asks (src/ is not changed
 * here): "/readyz says the Sentinels are gone" (it says ready, reason null) and
 * "busy tunnels end within the keepalive bound" (a tunnel with a command in
 * flight is left to TCP's retransmissions, about 15 minutes).
 */
import assert from "node:assert/strict";
import {
  canRunNamespaces,
  createTestBed,
  httpGet,
  type LogRecord,
  startSubscriber,
  startTunnelOn,
  startWriter,
  type WriteRecord,
} from "./_network.ts";
import { type BedRedis, startNetworkDeployment } from "./_network_deployment.ts";

const why = canRunNamespaces();
if (why) console.log(`partition_fence_test: skipped: ${why}`);

const HOSTS = ["app", "r1", "r2", "r3", "s1", "s2", "s3"] as const;
const PORT = 6380;
const ADMIN_PORT = 9121;
const POLL_MS = 500;
const CLIENT_WAIT_MS = 1000;
/** Above `CLIENT_WAIT_MS`, so that a client waiting for a master reads the tunnel's RESP error. */
const REPLY_TIMEOUT_MS = 3000;
const TIMEOUTS = {
  pollIntervalMs: POLL_MS,
  clientWaitMs: CLIENT_WAIT_MS,
  masterConnectMs: 1000,
  masterReplyMs: 1000,
};

function message(record: LogRecord): string {
  return String(record.message);
}

function logTime(record: LogRecord): number {
  return Date.parse(String(record["@timestamp"]));
}

/** Node addresses of the acknowledged writes, with their counts. */
function ackedBy(writes: readonly WriteRecord[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const w of writes) counts[w.node] = (counts[w.node] ?? 0) + 1;
  return counts;
}

/** The keys of `keys` that `node` does not hold (GET answers nil), asked on one connection. */
async function missingOn(node: BedRedis, keys: readonly string[]): Promise<string[]> {
  if (keys.length === 0) return [];
  const out = await node.host.exec(
    "redis-cli",
    ["--no-raw", "-h", node.host.ip, "-p", `${node.port}`],
    { stdin: keys.map((key) => `GET ${key}`).join("\n") + "\n", timeoutMs: 20_000 },
  );
  const replies = out.split("\n");
  assert.equal(replies.length, keys.length, `one GET reply per key from ${node.address}`);
  return keys.filter((_, i) => replies[i] === "(nil)");
}

/** Waits until `replica` reports `role:slave` of `master` with its link up. */
async function waitReplicaOf(
  replica: BedRedis,
  master: BedRedis,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let info = "";
  while (Date.now() < deadline) {
    try {
      info = await replica.cli("INFO", "replication");
      if (
        info.includes("role:slave") && info.includes(`master_host:${master.host.ip}`) &&
        info.includes("master_link_status:up")
      ) return;
    } catch (error) {
      info = String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${replica.address} is not a linked replica of ${master.address}: ${info}`);
}

Deno.test({
  name:
    "sentinel-tunnel without a fence keeps serving its confirmed master when its host loses every Sentinel",
  ignore: why !== undefined,
  async fn(t) {
    await using bed = await createTestBed({ hosts: HOSTS });
    const { app, r1, r2, r3, s1, s2, s3 } = bed.hosts;
    await using deployment = await startNetworkDeployment({
      hosts: [r1, r2, r3],
      sentinelHosts: [s1, s2, s3],
      dir: bed.dir,
    });
    await deployment.waitReady();
    const master = deployment.nodes[0]!;
    await using tunnel = await startTunnelOn(app, {
      sentinels: deployment.sentinelAddresses,
      timeouts: TIMEOUTS,
      databases: [{ name: deployment.masterName, port: PORT }],
    }, { ports: [PORT], args: ["--admin", `127.0.0.1:${ADMIN_PORT}`] });
    await tunnel.waitForLog((r) => /master is/.test(message(r)));
    await using writer = startWriter(app, { port: PORT, connections: 3 });
    await writer.waitFor(() => writer.writes().length >= 30);
    const readyBefore = await httpGet(app, `http://127.0.0.1:${ADMIN_PORT}/readyz`);
    assert.equal(readyBefore.status, 200, readyBefore.body);

    const cutAt = Date.now();
    for (const sentinel of [s1, s2, s3]) await bed.cut(app, sentinel);
    const noted = await tunnel.waitForLog(
      (r) => /check failed \(unreachable\)/.test(message(r)) && /keeping master/.test(message(r)),
    );
    console.log(
      `scenario 2: the tunnel noted every Sentinel gone ${
        logTime(noted) - cutAt
      } ms after the cut: ${message(noted)}`,
    );
    // Several polls without a Sentinel: existing clients keep writing to the master, new ones too.
    const checkFrom = Date.now() + 4 * POLL_MS;
    await writer.waitFor((r) => r.type === "write" && r.at > checkFrom, 10_000);
    await using late = startWriter(app, { port: PORT, prefix: "late" });
    await late.waitFor((r) => r.type === "write", 10_000);

    const ready = await httpGet(app, `http://127.0.0.1:${ADMIN_PORT}/readyz`);
    const sentinels = await httpGet(app, `http://127.0.0.1:${ADMIN_PORT}/api/sentinels`);
    const topology = await httpGet(app, `http://127.0.0.1:${ADMIN_PORT}/api/topology`);
    const problem = JSON.parse(topology.body).databases[0].problem;
    console.log(`scenario 2: /readyz ${ready.status} ${JSON.stringify(JSON.parse(ready.body))}`);
    console.log(`scenario 2: /api/topology problem ${JSON.stringify(problem)}`);

    const records = await writer.stop();
    const lateRecords = await late.stop();
    const afterCut = records.filter((r): r is WriteRecord => r.type === "write" && r.at > cutAt);
    const lateWrites = lateRecords.filter((r): r is WriteRecord => r.type === "write");
    console.log(
      `scenario 2: acknowledged after the cut: ${
        JSON.stringify(ackedBy(afterCut))
      } (existing clients), ${
        JSON.stringify(ackedBy(lateWrites))
      } (a client connected after the cut)`,
    );
    await t.step("keeps serving the master it last confirmed", () => {
      assert.deepEqual(Object.keys(ackedBy(afterCut)), [master.address]);
      assert.deepEqual(Object.keys(ackedBy(lateWrites)), [master.address]);
      assert.deepEqual(
        records.filter((r) => r.type === "error" && r.at > cutAt),
        [],
        "no client of the master is cut",
      );
      const known = JSON.parse(sentinels.body).sentinels as {
        address: string;
        reachable: boolean;
      }[];
      assert.deepEqual(
        known.map((s) => [s.address, s.reachable]),
        deployment.sentinelAddresses.map((address) => [address, false]),
        "/api/sentinels: every Sentinel unreachable",
      );
      assert.equal(problem?.kind, "unreachable");
      assert.match(problem?.detail, /^no Sentinel reachable/);
      const readiness = JSON.parse(ready.body);
      assert.equal(ready.status, 200, "ready: new clients are served");
      assert.equal(readiness.databases[0].master, master.address);
    });
    // Issue #11 asks that /readyz say the Sentinels are gone: ready (the master is served), with
    // the watcher's problem as the reason. It said reason null before.
    await t.step("/readyz says the Sentinels are gone", () => {
      const { reason } = JSON.parse(ready.body).databases[0];
      assert.match(String(reason), /Sentinel/, `/readyz: ${ready.body}`);
    });
  },
});

Deno.test({
  name:
    "sentinel-tunnel's write fence stops writes to a partitioned old master; without it they are acknowledged and lost",
  ignore: why !== undefined,
  async fn() {
    const AFTER_MS = 2000;
    /** Process scheduling and the log's own delay, on top of afterMs and one poll. */
    const SLACK_MS = 500;
    await using bed = await createTestBed({ hosts: HOSTS });
    const { app, r1, r2, r3, s1, s2, s3 } = bed.hosts;
    await using deployment = await startNetworkDeployment({
      hosts: [r1, r2, r3],
      sentinelHosts: [s1, s2, s3],
      dir: bed.dir,
    });
    await deployment.waitReady();
    const old = deployment.nodes[0]!;
    const config = (fence: boolean) => ({
      sentinels: deployment.sentinelAddresses,
      timeouts: TIMEOUTS,
      ...(fence ? { fence: { afterMs: AFTER_MS } } : {}),
      databases: [{ name: deployment.masterName, port: fence ? PORT : PORT + 1 }],
    });
    await using fenced = await startTunnelOn(app, config(true), { ports: [PORT] });
    await using plain = await startTunnelOn(app, config(false), { ports: [PORT + 1] });
    await fenced.waitForLog((r) => /master is/.test(message(r)));
    await plain.waitForLog((r) => /master is/.test(message(r)));
    const writerOptions = { connections: 3, replyTimeoutMs: REPLY_TIMEOUT_MS };
    await using fencedWriter = startWriter(app, { ...writerOptions, port: PORT, prefix: "f" });
    await using plainWriter = startWriter(app, { ...writerOptions, port: PORT + 1, prefix: "p" });
    await fencedWriter.waitFor(() => fencedWriter.writes().length >= 30);
    await plainWriter.waitFor(() => plainWriter.writes().length >= 30);
    await using watch = await deployment.watchSwitch(30_000);

    // {app, r1's node} | {r2, r3, every Sentinel}: the majority fails over without the tunnel.
    const partitionStart = Date.now();
    await bed.partition([app, r1], [r2, r3, s1, s2, s3]);
    const partitioned = Date.now();
    const fenceClosed = await fenced.waitForLog((r) => /write fence closed/.test(message(r)));
    const switched = await watch.next;
    assert.equal(switched.from, old.address);
    assert.ok(
      [r2, r3].some((h) => switched.address === `${h.ip}:6379`),
      `promoted on the majority side: ${switched.address}`,
    );
    const promoted = deployment.nodes.find((n) => n.address === switched.address)!;
    // New clients of the fenced port: a RESP error naming the fence, after clientWaitMs.
    const refused = await fencedWriter.waitFor(
      (r) =>
        r.type === "error" && r.at > logTime(fenceClosed) && /^ERR sentinel-tunnel/.test(r.error),
      10_000,
    );
    // The plain port still writes to the old master, well after the switch.
    await plainWriter.waitFor(
      (r) => r.type === "write" && r.node === old.address && r.at > switched.seenAt + 1000,
      10_000,
    );

    const healedAt = Date.now();
    await bed.heal();
    const reopened = await fenced.waitForLog(
      (r) => /write fence open again/.test(message(r)),
      20_000,
    );
    for (const writer of [fencedWriter, plainWriter]) {
      await writer.waitFor(
        (r) => r.type === "write" && r.node === promoted.address && r.at > healedAt,
        20_000,
      );
    }
    const fencedWrites = (await fencedWriter.stop()).filter((r): r is WriteRecord =>
      r.type === "write"
    );
    const plainWrites = (await plainWriter.stop()).filter((r): r is WriteRecord =>
      r.type === "write"
    );

    const oldAcks = (writes: WriteRecord[]) => writes.filter((w) => w.node === old.address);
    const lastOldAck = Math.max(...oldAcks(fencedWrites).map((w) => w.at));
    const plainAfterPartition = oldAcks(plainWrites).filter((w) => w.at > partitionStart);
    const plainAfterSwitch = plainAfterPartition.filter((w) => w.at > switched.seenAt);
    const fencedAfterPartition = oldAcks(fencedWrites).filter((w) => w.at > partitionStart);
    const fencedAfterSwitch = fencedAfterPartition.filter((w) => w.at > switched.seenAt);
    const error = (refused as { error: string }).error;
    console.log(
      `scenario 3: partition in force ${partitioned - partitionStart} ms after it began; ` +
        `+switch-master to ${switched.address} at +${switched.seenAt - partitionStart} ms`,
    );
    console.log(
      `scenario 3 (fence afterMs ${AFTER_MS}, poll ${POLL_MS}): "write fence closed" logged at +${
        logTime(fenceClosed) - partitionStart
      } ms, last write acknowledged by the old master at +${lastOldAck - partitionStart} ms ` +
        `(bound +${
          AFTER_MS + POLL_MS + SLACK_MS
        } ms); ${fencedAfterPartition.length} acknowledged by it after the partition began, ` +
        `${fencedAfterSwitch.length} after the switch; ` +
        `fence open again ${logTime(reopened) - healedAt} ms after the heal`,
    );
    console.log(`scenario 3: a new client of the fenced port got: ${error}`);
    console.log(
      `scenario 3 (no fence): ${plainAfterPartition.length} writes acknowledged by the old ` +
        `master after the partition began, ${plainAfterSwitch.length} after the switch`,
    );

    // The fence: nothing acknowledged by the old master past afterMs and one poll.
    assert.ok(
      lastOldAck <= partitionStart + AFTER_MS + POLL_MS + SLACK_MS,
      `last old-master ack at +${lastOldAck - partitionStart} ms`,
    );
    assert.match(message(fenceClosed), /write fence closed/);
    assert.match(error, /^ERR sentinel-tunnel: database "mymaster": .*write fence closed/);
    assert.equal(
      fencedWrites.filter((w) => w.at > healedAt && w.node !== promoted.address).length,
      0,
      "after the heal, the fenced port writes to the new master only",
    );
    // Without it: the old master, still master in its minority, acknowledges writes after the
    // switch. Plain Redis with a direct client does the same (no min-replicas-to-write here).
    assert.ok(
      plainAfterSwitch.length > 0,
      "writes acknowledged by the old master after the switch",
    );

    // They are lost: the new master never had them, and the old one drops them when it resyncs.
    await waitReplicaOf(old, promoted, 20_000);
    const keys = plainAfterPartition.map((w) => w.key);
    const fencedKeys = fencedAfterPartition.map((w) => w.key);
    const lostOnPromoted = await missingOn(promoted, keys);
    const lostOnOld = await missingOn(old, keys);
    const fencedLost = await missingOn(promoted, fencedKeys);
    console.log(
      `scenario 3 (no fence): after the heal ${lostOnPromoted.length} of the ${keys.length} ` +
        `are missing on the new master ${promoted.address}, ${lostOnOld.length} on the old ` +
        `master (now its replica); with the fence ${fencedLost.length} of ${fencedKeys.length}`,
    );
    assert.deepEqual(
      await missingOn(promoted, plainAfterSwitch.map((w) => w.key)),
      plainAfterSwitch.map((w) => w.key),
      "every write the old master acknowledged after the switch is missing on the new master",
    );
    assert.deepEqual(lostOnOld, lostOnPromoted, "and gone from the old master once it resynced");
  },
});

Deno.test({
  name:
    "sentinel-tunnel refuses new clients when only its link to the master goes silent, and recovers after the heal",
  ignore: why !== undefined,
  async fn(t) {
    /** The app host's keepalive: probes after 2 s idle, 1 s apart, 3 of them: dead at 5 s. */
    const KEEPALIVE = { time: 2, intvl: 1, probes: 3 };
    const KEEPALIVE_BOUND_MS = (KEEPALIVE.time + KEEPALIVE.intvl * KEEPALIVE.probes) * 1000;
    const SLACK_MS = 3000;
    await using bed = await createTestBed({ hosts: HOSTS });
    const { app, r1, r2, r3, s1, s2, s3 } = bed.hosts;
    // Per namespace: only the app host's sockets (the tunnel's among them) get these timers.
    await app.sysctl({
      "net.ipv4.tcp_keepalive_time": KEEPALIVE.time,
      "net.ipv4.tcp_keepalive_intvl": KEEPALIVE.intvl,
      "net.ipv4.tcp_keepalive_probes": KEEPALIVE.probes,
    });
    assert.equal(await app.exec("sysctl", ["-n", "net.ipv4.tcp_keepalive_time"]), "2");
    const retries2 = await app.exec("sysctl", ["-n", "net.ipv4.tcp_retries2"]);
    await using deployment = await startNetworkDeployment({
      hosts: [r1, r2, r3],
      sentinelHosts: [s1, s2, s3],
      dir: bed.dir,
    });
    await deployment.waitReady();
    const master = deployment.nodes[0]!;
    await using tunnel = await startTunnelOn(app, {
      sentinels: deployment.sentinelAddresses,
      timeouts: TIMEOUTS,
      databases: [{ name: deployment.masterName, port: PORT }],
    }, { ports: [PORT] });
    await tunnel.waitForLog((r) => /master is/.test(message(r)));
    // Idle tunnels (subscribed clients) and busy ones (writers with a command always in flight,
    // which wait a minute for a reply: their connections end only if the tunnel ends them).
    await using subscriber = startSubscriber(app, {
      port: PORT,
      connections: 3,
      replyTimeoutMs: REPLY_TIMEOUT_MS,
    });
    await using writer = startWriter(app, { port: PORT, connections: 3, replyTimeoutMs: 60_000 });
    await writer.waitFor(() => writer.writes().length >= 30);
    for (const conn of [0, 1, 2]) {
      await subscriber.waitFor((r) => r.type === "connect" && r.conn === conn);
    }
    await using watch = await deployment.watchSwitch(120_000);

    const cutAt = Date.now();
    await bed.cut(app, r1);
    const unreachable = await tunnel.waitForLog((r) =>
      /check failed \(master-unreachable\)/.test(message(r)) && logTime(r) >= cutAt
    );
    // A new client is held clientWaitMs, then told why.
    const freshAt = Date.now();
    await using fresh = startWriter(app, {
      port: PORT,
      prefix: "fresh",
      replyTimeoutMs: REPLY_TIMEOUT_MS,
    });
    const refused = await fresh.waitFor((r) => r.type === "error", 10_000) as {
      error: string;
      at: number;
    };
    const idleEnded = await Promise.all([0, 1, 2].map((conn) =>
      subscriber.waitFor(
        (r) => r.type === "closed" && r.conn === conn && r.at > cutAt,
        KEEPALIVE_BOUND_MS + 20_000,
      )
    ));
    const bound = cutAt + KEEPALIVE_BOUND_MS + SLACK_MS;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, bound - Date.now())));
    // Each busy connection's first end after the cut: the tunnel closing it, not its own timeout.
    const busyEnded = [0, 1, 2].flatMap((conn) =>
      writer.records.filter((r) =>
        r.type === "error" && r.conn === conn && r.at > cutAt && r.node === master.address
      ).slice(0, 1)
    );
    // The tunnel's sockets to the master, with their TCP timers: "on" is retransmission.
    const timers = (await app.exec("ss", ["-tnoH", "state", "established", "dst", master.address]))
      .split("\n").filter(Boolean).map((line) => /timer:\([^)]*\)/.exec(line)?.[0] ?? "none");
    const busyLastAck = Math.max(...writer.writes().map((w) => w.at));

    const healedAt = Date.now();
    await bed.heal();
    const confirmed = await tunnel.waitForLog(
      (r) => /master is/.test(message(r)) && logTime(r) >= healedAt,
      15_000,
    );
    await fresh.waitFor((r) => r.type === "write" && r.at > healedAt, 15_000);
    await subscriber.waitFor((r) => r.type === "connect" && r.at > healedAt, 15_000);
    await writer.waitFor((r) => r.type === "write" && r.at > healedAt, 15_000);
    const switchedMeanwhile = await Promise.race([
      watch.next.then((event) => event.address, () => undefined),
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 0)),
    ]);
    const sentinelsName = await Promise.all(
      deployment.sentinels.map((s) => deployment.masterOf(s)),
    );
    const freshRecords = await fresh.stop();
    const writerRecords = await writer.stop();
    const subscriberRecords = await subscriber.stop();
    const afterHeal = [...freshRecords, ...writerRecords].filter((r): r is WriteRecord =>
      r.type === "write" && r.at > healedAt
    );
    const reconnected = subscriberRecords.filter((r) => r.type === "connect" && r.at > healedAt);

    console.log(
      `scenario 5: the tunnel found the master unreachable ${
        logTime(unreachable) - cutAt
      } ms after the cut: ${message(unreachable)}`,
    );
    console.log(
      `scenario 5: a new client got its RESP error ${
        refused.at - freshAt
      } ms after it started (clientWaitMs ${CLIENT_WAIT_MS}): ${refused.error}`,
    );
    console.log(
      `scenario 5: idle (subscribed) tunnels ended ${
        idleEnded.map((r) => r.at - cutAt).join(", ")
      } ms after the cut (keepalive ${KEEPALIVE.time}/${KEEPALIVE.intvl}/${KEEPALIVE.probes}: ` +
        `${KEEPALIVE_BOUND_MS} ms after the last byte)`,
    );
    console.log(
      `scenario 5: busy tunnels (a write in flight) ended within ${
        bound - cutAt
      } ms of the cut: ${busyEnded.length} of 3, at +${
        busyEnded.map((r) => r.at - cutAt).join(", +")
      } ms; their last ack before the heal at +${
        busyLastAck - cutAt
      } ms; the app host's net.ipv4.tcp_retries2 is ${retries2}; the tunnel's sockets to the ` +
        `master then: ${timers.join(" ")}`,
    );
    console.log(
      `scenario 5: after the heal: master confirmed again after ${
        logTime(confirmed) - healedAt
      } ms; writes acknowledged ${JSON.stringify(ackedBy(afterHeal))}; subscribers reconnected to ${
        JSON.stringify([...new Set(reconnected.map((r) => (r as { node: string }).node))])
      }`,
    );

    await t.step("new clients get the RESP error naming the cause after clientWaitMs", () => {
      assert.match(
        refused.error,
        new RegExp(
          `^ERR sentinel-tunnel: database "mymaster": no confirmed master after waiting ` +
            `${CLIENT_WAIT_MS} ms: master ${master.address} .*ROLE check failed`,
        ),
      );
      assert.ok(refused.at - freshAt >= CLIENT_WAIT_MS, "held for clientWaitMs first");
    });
    await t.step("idle tunnels end within the keepalive bound", () => {
      for (const r of idleEnded) {
        assert.ok(r.at <= bound, `ended at +${r.at - cutAt} ms`);
        assert.equal((r as { node: string }).node, master.address);
      }
    });
    await t.step("no failover, and everything recovers by itself after the heal", () => {
      assert.equal(switchedMeanwhile, undefined, "no +switch-master");
      assert.deepEqual(sentinelsName, deployment.sentinelAddresses.map(() => master.address));
      assert.deepEqual(Object.keys(ackedBy(afterHeal)), [master.address]);
      assert.ok(afterHeal.some((w) => w.key.startsWith("fresh:")), "the new client writes");
      assert.ok(afterHeal.some((w) => w.key.startsWith("w:")), "the busy writers write again");
      assert.ok(reconnected.every((r) => (r as { node: string }).node === master.address));
    });
    // Keepalive probes only an idle connection: a tunnel whose command to the master is
    // unacknowledged is left to TCP's retransmissions (net.ipv4.tcp_retries2, about 15 minutes at
    // the default 15). The tunnel cuts the tunnels of a master whose every connect times out for
    // silentCutMs (3 s here); this failed before it did.
    await t.step("busy tunnels end within the keepalive bound", () => {
      assert.equal(busyEnded.length, 3, `busy connections ended: ${JSON.stringify(busyEnded)}`);
      for (const r of busyEnded) {
        assert.ok(r.at <= bound, `ended at +${r.at - cutAt} ms`);
        assert.match((r as { error: string }).error, /closed/, "closed by the tunnel");
      }
    });
  },
});
