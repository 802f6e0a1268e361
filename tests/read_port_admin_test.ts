/**
 * The admin API of a read port, against real redis-server and Sentinel
 * processes: readiness per entry, each replica's check and live clients in the
 * topology, and the replica series of the metrics; then the same answers once
 * every replica is gone.
 */
import assert from "node:assert/strict";
import { eventually as within } from "./_wait.ts";
import { freePort, startDeployment } from "./_deployment.ts";
import { connectClient, startTunnel } from "./_tunnel.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };

/** Generous: a Sentinel takes `down-after-milliseconds` and a poll or two to notice. */
const DEADLINE_MS = 30_000;

/** {@linkcode within} with this file's deadline. */
const eventually = <T>(what: string, probe: () => Promise<T | undefined>) =>
  within(what, probe, DEADLINE_MS);

interface Readiness {
  ready: boolean;
  databases: {
    name: string;
    role: string;
    listen: string;
    ready: boolean;
    serving: string | null;
    reason: string | null;
  }[];
}

interface ReadReplica {
  address: string;
  usable: boolean;
  reason: string | null;
  lagBytes: number | null;
  checkedAgainst: string | null;
  checkedAt: string;
  liveClients: number;
}

interface TopologyEntry {
  name: string;
  role: string;
  listen: string;
  readReplicas: ReadReplica[] | null;
  connections: { active: number; toMaster: number; toReplicas: number };
}

async function get(url: string): Promise<{ status: number; text: string }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: response.status, text: await response.text() };
}

/** The value of one series, or `undefined` when it is absent. */
function sample(metrics: string, series: string): number | undefined {
  const line = metrics.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

Deno.test(
  "admin API lists a read port next to the master port, with its replicas, until they die",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "reads-admin" });
    await deployment.waitReady();
    const name = deployment.masterName;
    const masterPort = freePort();
    const readPort = freePort();
    const adminPort = freePort();
    await using _tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      timeouts: { clientWaitMs: 3000, pollIntervalMs: 500 },
      databases: [
        { name, port: masterPort },
        { name, port: readPort, role: "replica" },
      ],
    }, { ports: [masterPort, readPort], args: ["--admin", `127.0.0.1:${adminPort}`] });
    const admin = `http://127.0.0.1:${adminPort}`;
    const replicaAddresses = deployment.nodes.slice(1).map((n) => n.address).sort();
    const masterListen = `127.0.0.1:${masterPort}`;
    const readListen = `127.0.0.1:${readPort}`;

    // Both entries ready: the master port has its master, the read port a usable replica.
    const readiness = await eventually("both entries ready", async () => {
      const { status, text } = await get(`${admin}/readyz`);
      return status === 200 ? JSON.parse(text) as Readiness : undefined;
    });
    assert.equal(readiness.ready, true);
    assert.deepEqual(
      readiness.databases.map((d) => [d.name, d.role, d.listen, d.ready, d.serving, d.reason]),
      [
        [name, "master", masterListen, true, "master", null],
        [name, "replica", readListen, true, "replica", null],
      ],
    );

    // Both replicas usable, and an open read client counted at the replica it reads from.
    using reader = await connectClient(readPort);
    const [, readFromPort] = (await reader.call(["CONFIG", "GET", "port"])) as string[];
    const readFrom = `127.0.0.1:${readFromPort}`;
    assert.ok(replicaAddresses.includes(readFrom), `${readFrom} is not a replica`);
    const topology = await eventually("both replicas usable and the reader counted", async () => {
      const { text } = await get(`${admin}/api/topology`);
      const entries = (JSON.parse(text) as { databases: TopologyEntry[] }).databases;
      const read = entries.find((d) => d.listen === readListen);
      const usable = read?.readReplicas?.filter((r) => r.usable) ?? [];
      const counted = read?.readReplicas?.find((r) => r.address === readFrom)?.liveClients;
      return usable.length === 2 && counted === 1 ? entries : undefined;
    });
    const masterEntry = topology.find((d) => d.listen === masterListen)!;
    assert.equal(masterEntry.role, "master");
    assert.equal(masterEntry.readReplicas, null);
    const readEntry = topology.find((d) => d.listen === readListen)!;
    assert.equal(readEntry.name, name);
    assert.equal(readEntry.role, "replica");
    assert.deepEqual(readEntry.readReplicas!.map((r) => r.address).sort(), replicaAddresses);
    for (const replica of readEntry.readReplicas!) {
      assert.equal(replica.reason, null);
      assert.equal(typeof replica.lagBytes, "number");
      assert.equal(replica.checkedAgainst, deployment.nodes[0]!.address);
      assert.ok(!Number.isNaN(Date.parse(replica.checkedAt)), replica.checkedAt);
      assert.equal(replica.liveClients, replica.address === readFrom ? 1 : 0);
    }
    assert.deepEqual(readEntry.connections, {
      ...readEntry.connections,
      active: 1,
      toMaster: 0,
      toReplicas: 1,
    });

    // The metrics: every per-database series says which entry, and each replica has its own.
    const { text: metrics } = await get(`${admin}/metrics`);
    const readLabels = `database="${name}",port="${readPort}"`;
    for (const replica of replicaAddresses) {
      const labels = `${readLabels},replica="${replica}"`;
      assert.equal(sample(metrics, `sentinel_tunnel_replica_usable{${labels}}`), 1, metrics);
      assert.equal(
        sample(metrics, `sentinel_tunnel_replica_clients{${labels}}`),
        replica === readFrom ? 1 : 0,
      );
      // The lag is the name's, measured once whatever the read ports.
      assert.ok(
        sample(
          metrics,
          `sentinel_tunnel_replica_lag_bytes{database="${name}",replica="${replica}"}`,
        )! >= 0,
        metrics,
      );
    }
    const masterLabels = `database="${name}",port="${masterPort}",role="master"`;
    assert.equal(
      sample(metrics, `sentinel_tunnel_connections_active{${readLabels},role="replica"}`),
      1,
    );
    assert.equal(sample(metrics, `sentinel_tunnel_connections_active{${masterLabels}}`), 0);
    // Series about the master are the name's: one, whatever its ports.
    const confirmed = metrics.split("\n").filter((l) =>
      l.startsWith("sentinel_tunnel_master_confirmed{")
    );
    assert.deepEqual(confirmed, [`sentinel_tunnel_master_confirmed{database="${name}"} 1`]);
    // Every per-port series of either entry carries all three labels.
    const perName =
      /^sentinel_tunnel_(master_|failovers_|failover_in_progress|write_fence_|resolution_duration_|replica_lag_|clients_cut_|hook_|sentinel_distrusted_)/;
    for (const line of metrics.split("\n")) {
      if (!line.includes(`database="${name}"`) || line.includes('replica="')) continue;
      if (perName.test(line)) continue;
      assert.match(line, /port="\d+"/, line);
      assert.match(line, /role="(master|replica)"/, line);
    }

    // Every replica killed: the read port is not ready and says why, naming them.
    for (const node of deployment.nodes.slice(1)) node.kill("SIGKILL");
    const down = await eventually("the read port not ready, naming both replicas", async () => {
      const { status, text } = await get(`${admin}/readyz`);
      if (status !== 503) return undefined;
      const body = JSON.parse(text) as Readiness;
      const read = body.databases.find((d) => d.listen === readListen);
      const named = replicaAddresses.every((a) => read?.reason?.includes(a));
      return read && !read.ready && named ? body : undefined;
    });
    assert.equal(down.ready, false);
    const readDown = down.databases.find((d) => d.listen === readListen)!;
    assert.equal(readDown.serving, null);
    assert.equal(readDown.role, "replica");
    // The master port is not affected.
    const masterUp = down.databases.find((d) => d.listen === masterListen)!;
    assert.equal(masterUp.ready, true);
    assert.equal(masterUp.reason, null);

    await eventually("replica_usable 0 for both replicas", async () => {
      const { text } = await get(`${admin}/metrics`);
      const zero = replicaAddresses.every((replica) =>
        sample(text, `sentinel_tunnel_replica_usable{${readLabels},replica="${replica}"}`) === 0
      );
      return zero ? true : undefined;
    });
    const { text: after } = await get(`${admin}/api/topology`);
    const readAfter = (JSON.parse(after) as { databases: TopologyEntry[] }).databases
      .find((d) => d.listen === readListen)!;
    for (const replica of readAfter.readReplicas!) {
      assert.equal(replica.usable, false);
      assert.equal(typeof replica.reason, "string");
    }
  },
);
