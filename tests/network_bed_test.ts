/**
 * The multi-host test bed itself (tests/_network.ts, _network_deployment.ts):
 * hosts reach each other, cuts make packets vanish silently, heal restores,
 * nothing is left behind, and a Sentinel deployment with the tunnel and the
 * writer probe runs on it. Needs root and iproute2 (CI runs as root); skipped
 * elsewhere, saying why.
 */
import assert from "node:assert/strict";
import {
  canRunNamespaces,
  createTestBed,
  type Host,
  listNamespaces,
  startTunnelOn,
  startWriter,
  tryConnect,
} from "./_network.ts";
import { startNetworkDeployment, startRedisNode } from "./_network_deployment.ts";

const why = canRunNamespaces();
if (why) console.log(`network_bed_test: skipped: ${why}`);

const PROBES = new URL("./probes/", import.meta.url).pathname;
/** Short enough to keep the test quick, long enough for a connect on a live bridge. */
const SILENT_MS = 700;

/** Which hosts each of `a` and `b` received UDP datagrams from, sent at once both ways. */
async function udpBothWays(a: Host, b: Host): Promise<{ a: string[]; b: string[] }> {
  const probe = (from: Host, to: Host) =>
    from.exec(Deno.execPath(), [
      "run",
      "--quiet",
      "-A",
      `${PROBES}udp_probe.ts`,
      from.ip,
      "7999",
      to.ip,
      "5",
      "500",
    ]).then((text) => JSON.parse(text).received as string[]);
  const [fromA, fromB] = await Promise.all([probe(a, b), probe(b, a)]);
  return { a: fromA, b: fromB };
}

async function connects(from: Host, to: Host, port: number): Promise<string> {
  return (await tryConnect(from, to.ip, port, { timeoutMs: SILENT_MS })).result;
}

Deno.test({
  name:
    "createTestBed() cuts links silently, one way or both, heals them and leaves nothing behind",
  ignore: why !== undefined,
  async fn() {
    let prefix = "";
    {
      await using bed = await createTestBed({ hosts: ["app", "r1", "r2"] });
      prefix = bed.prefix;
      const { app, r1, r2 } = bed.hosts;
      assert.equal(
        (await listNamespaces()).filter((ns) => ns.startsWith(`${prefix}-`)).length,
        4,
        "one namespace per host and one for the bridge",
      );
      await using n1 = await startRedisNode(r1, { dir: bed.dir });
      await using _n2 = await startRedisNode(r2, { dir: bed.dir });
      await using n0 = await startRedisNode(app, { dir: bed.dir });

      // Hosts reach each other; a closed port is refused (an RST), as usual.
      assert.equal(await app.exec("redis-cli", ["-h", r1.ip, "-p", "6379", "PING"]), "PONG");
      assert.equal(await r1.exec("redis-cli", ["-h", app.ip, "-p", "6379", "PING"]), "PONG");
      assert.equal(await connects(app, r1, 6390), "refused");

      // A connection made before the cut, to see it hang too.
      const session = app.run(Deno.execPath(), [
        "run",
        "--quiet",
        "-A",
        `${PROBES}tcp_probe.ts`,
        r1.ip,
        "6379",
        `${SILENT_MS}`,
      ], { stdin: "piped", stdout: "piped" });
      const lines = session.child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      const stdin = session.child.stdin.getWriter();
      const nextLine = async () => JSON.parse((await lines.read()).value ?? "{}");
      assert.equal((await nextLine()).result, "ok");
      await stdin.write(new TextEncoder().encode("\n"));
      assert.equal((await nextLine()).reply, "+PONG");

      // Both ways: connects hang (no RST even on a closed port, no ICMP), and so does the session.
      await bed.cut(app, r1);
      assert.deepEqual(bed.cuts, ["app>r1", "r1>app"]);
      assert.equal(await connects(app, r1, 6379), "timeout");
      assert.equal(await connects(app, r1, 6390), "timeout");
      assert.equal(await connects(r1, app, 6379), "timeout");
      assert.equal(await connects(app, r2, 6379), "ok", "other links are untouched");
      await stdin.write(new TextEncoder().encode("\n"));
      assert.equal((await nextLine()).result, "timeout");
      await stdin.close().catch(() => {});
      await lines.cancel();
      await session[Symbol.asyncDispose]();
      assert.deepEqual(await udpBothWays(app, r1), { a: [], b: [] });

      await bed.heal();
      assert.deepEqual(bed.cuts, []);
      assert.equal(await connects(app, r1, 6379), "ok");
      assert.equal(await connects(r1, app, 6379), "ok");
      assert.deepEqual(await udpBothWays(app, r1), { a: [r1.ip], b: [app.ip] });

      // One way: only packets from app to r1 vanish. TCP needs both ways, so it hangs both ways.
      await bed.cut(app, r1, { oneWay: true });
      assert.deepEqual(await udpBothWays(app, r1), { a: [r1.ip], b: [] });
      assert.equal(await connects(app, r1, 6379), "timeout");
      assert.equal(await connects(r1, app, 6379), "timeout");
      await bed.heal();

      // Isolation: r1 reaches nobody, the others still reach each other.
      await bed.isolate(r1);
      assert.equal(await connects(app, r1, 6379), "timeout");
      assert.equal(await connects(r2, r1, 6379), "timeout");
      assert.equal(await connects(app, r2, 6379), "ok");
      assert.equal(await n1.cli("PING"), "PONG", "an isolated host still answers from inside");
      await bed.heal();
      assert.equal(await app.exec("redis-cli", ["-h", r1.ip, "-p", "6379", "PING"]), "PONG");
      assert.equal(await n0.cli("PING"), "PONG");
    }
    assert.deepEqual((await listNamespaces()).filter((ns) => ns.startsWith(`${prefix}-`)), []);
  },
});

Deno.test({
  name: "startNetworkDeployment() on a bed is served by the tunnel to writers, across a failover",
  ignore: why !== undefined,
  async fn() {
    await using bed = await createTestBed({ hosts: ["app", "r1", "r2", "r3"] });
    const { app, r1, r2, r3 } = bed.hosts;
    await using deployment = await startNetworkDeployment({ hosts: [r1, r2, r3], dir: bed.dir });
    await deployment.waitReady();
    const [master] = deployment.nodes;
    assert.equal(await deployment.masterOf(deployment.sentinels[2]!), master!.address);

    const port = 6380;
    await using tunnel = await startTunnelOn(app, {
      sentinels: deployment.sentinelAddresses,
      databases: [{ name: deployment.masterName, port }],
    }, { ports: [port] });
    await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
    await using writer = startWriter(app, { port, connections: 3 });
    await writer.waitFor(() => writer.writes().length >= 30);
    assert.deepEqual(new Set(writer.writes().map((w) => w.node)), new Set([master!.address]));

    await using watch = await deployment.watchSwitch(20_000);
    await deployment.forceFailover();
    const switched = await watch.next;
    assert.equal(switched.from, master!.address);
    assert.notEqual(switched.address, master!.address);
    await writer.waitFor((r) => r.type === "write" && r.node === switched.address, 10_000);
    const records = await writer.stop();
    assert.equal(records.at(-1)?.type, "end");
    const late = records.filter((r) =>
      r.type === "write" && r.node === master!.address && r.at > switched.seenAt + 1000
    );
    assert.deepEqual(late, [], "no write acknowledged by the old master 1 s after the switch");
    assert.equal(
      await deployment.roleOf(deployment.nodes.find((n) => n.address === switched.address)!),
      "master",
    );
    assert.ok([r2.ip, r3.ip].some((ip) => switched.address.startsWith(`${ip}:`)));
  },
});
