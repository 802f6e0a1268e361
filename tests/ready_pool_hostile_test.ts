/**
 * A hostile review of the ready pool (`preconnect`, `data/ready_pool.ts`):
 * properties it must keep, against a fake master on loopback (for hostile
 * peers and timing) and against real redis-server and Sentinel processes (for
 * slots, reloads and replies).
 * Tests marked "(held)" guard properties that hold today.
 */
import assert from "node:assert/strict";
import { RespErrorReply } from "../src/control/resp.ts";
import { type ByteStream, connectTo } from "../src/shared/connect.ts";
import { PortStats } from "../src/shared/stats.ts";
import { ClientSlots } from "../src/data/client_slots.ts";
import type { Dialer } from "../src/data/ready_pool.ts";
import { Tunnel, TunnelBuffers } from "../src/data/tunnel.ts";
import { type Deployment, freePort, startDeployment } from "./_deployment.ts";
import { connectClient, oneCommand, startTunnel } from "./_tunnel.ts";
import { FakeMaster, FakeSource, sleep, startPool, until } from "./_ready_pool_harness.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 10_000) {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A dialer that connects for real, then waits at a gate the test opens. */
function gatedDialer() {
  const held: PromiseWithResolvers<void>[] = [];
  let open = false;
  const connect: Dialer = async (address, options) => {
    const stream = await connectTo(address, options);
    if (open) return stream;
    const gate = Promise.withResolvers<void>();
    held.push(gate);
    await gate.promise;
    return stream;
  };
  return {
    connect,
    held,
    /** Lets every dial held so far through, and the later ones straight through. */
    openAll() {
      open = true;
      for (const gate of held.splice(0)) gate.resolve();
    },
    close() {
      open = false;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Bugs: these fail now.
// ---------------------------------------------------------------------------------------------

Deno.test("ReadyPool: the backoff grows against a master that accepts and drops every connection (maxclients)", async () => {
  // Redis at maxclients accepts, writes this, and closes: a dial "succeeds" every time.
  await using master = new FakeMaster(async (conn) => {
    await conn.write(new TextEncoder().encode("-ERR max number of clients reached\r\n"));
    conn.close();
  });
  const source = new FakeSource(master.address, 2);
  source.database = { ...source.database, preconnect: 1 };
  await using _pool = startPool(source);
  await sleep(3000);
  // Doubling from 100 ms: dials at about 0, 0.1, 0.3, 0.7, 1.5, 3.1 s, so 5 or 6 in 3 s.
  // A backoff reset by each successful connect dials every 100 ms: about 30.
  const dials = master.conns.length;
  assert.ok(dials <= 8, `${dials} connections in 3 s to a master that drops each at once`);
});

Deno.test("ReadyPool refills for the new master after dials to the old one, under way at the change, are voided", async () => {
  await using first = new FakeMaster();
  await using second = new FakeMaster();
  const source = new FakeSource(first.address, 2);
  const dialer = gatedDialer();
  await using p = startPool(source, { connect: dialer.connect });
  await until("2 dials under way to the first", () => dialer.held.length === 2);
  source.confirm(second.address);
  await sleep(50);
  dialer.openAll();
  await until("the stale dials closed", () => first.conns.length === 2 && first.open === 0);
  // Nothing else happens (no client, no change of master): the pool must still fill up.
  await until("2 ready to the new master", () => p.pool.size === 2 && second.open === 2, 2000);
});

Deno.test("ReadyPool refills after a reload voids the dials under way (settingsChanged)", async () => {
  await using master = new FakeMaster();
  const source = new FakeSource(master.address, 2);
  const dialer = gatedDialer();
  await using p = startPool(source, { connect: dialer.connect });
  await until("2 dials under way", () => dialer.held.length === 2);
  source.database = { ...source.database, tcpKeepAlive: true };
  p.pool.settingsChanged();
  await sleep(50);
  dialer.openAll();
  await until("2 ready after the reload", () => p.pool.size === 2 && master.open === 2, 2000);
});

Deno.test("ReadyPool: a client under maxClients gets a slot while the pool's dials hold them (shedOne sheds a dial)", async () => {
  await using master = new FakeMaster();
  const source = new FakeSource(master.address, 2);
  const slots = new ClientSlots(2);
  const dialer = gatedDialer();
  dialer.openAll();
  await using p = startPool(source, { slots, connect: dialer.connect });
  await until("2 ready", () => p.pool.size === 2);
  // A slow master (a TLS handshake, a loaded host): the next dials hang a while.
  dialer.close();
  // Client 1 comes, as DatabaseListener admits it: over the cap, it sheds one; then takes one.
  const admit = () => slots.tryTake() || (p.pool.shedOne() && slots.tryTake());
  assert.ok(admit(), "client 1 admitted");
  const ready = p.pool.take(source.targets!);
  assert.ok(ready, "client 1 took a ready connection");
  // Its take refilled: a dial under way holds the second slot.
  await until("a dial under way", () => dialer.held.length === 1);
  // Client 2 of maxClients 2 must be admitted: only one client is live.
  const admitted = admit();
  dialer.openAll();
  ready.close();
  assert.ok(admitted, "client 2 of 2 refused: a ready connection's dial holds its slot");
});

/** A tunnel for the deployment's master with the admin API; `config` is the whole config but sentinels/admin. */
async function tunnelWith(
  deployment: Deployment,
  config: Record<string, unknown>,
  ports: number[],
) {
  const admin = `127.0.0.1:${freePort()}`;
  const full = (more: Record<string, unknown>) => ({
    sentinels: deployment.sentinels.map((s) => s.address),
    admin,
    timeouts: { clientWaitMs: 10_000 },
    ...more,
  });
  const tunnel = await startTunnel(full(config), { ports });
  await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
  /** The sum of a metric's samples (over databases). */
  const metric = async (name: string): Promise<number> => {
    const text = await (await fetch(`http://${admin}/metrics`)).text();
    const lines = text.split("\n").filter((l) => l.startsWith(`sentinel_tunnel_${name}{`));
    assert.ok(lines.length > 0, `no ${name} in /metrics`);
    return lines.reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
  };
  const reload = async (config: Record<string, unknown>) => {
    await Deno.writeTextFile(tunnel.configPath, JSON.stringify(full(config)));
    tunnel.kill("SIGHUP");
    await tunnel.waitForLog((r) => /reload/i.test(String(r.message)) && r.level !== "DEBUG");
  };
  return { tunnel, metric, reload };
}

Deno.test(
  "preconnect: after a reload lowers maxClients below the pool, a first client is not refused",
  processes,
  async () => {
    await using deployment = await startDeployment({
      masterName: "review-lowered",
      replicas: 0,
      sentinels: 1,
    });
    const port = freePort();
    const entry = { name: deployment.masterName, port, preconnect: 3 };
    const { tunnel, metric, reload } = await tunnelWith(
      deployment,
      { databases: [{ ...entry, maxClients: 10 }] },
      [port],
    );
    await using _tunnel = tunnel;
    await eventually("3 ready", async () => await metric("ready_connections") === 3);
    await reload({ databases: [{ ...entry, maxClients: 2 }] });
    await sleep(300);
    // No client is connected: the first must be served, whatever the pool holds.
    const reply = await oneCommand(port, ["PING"]);
    assert.equal(
      reply instanceof RespErrorReply ? reply.message : reply,
      "PONG",
      "the only client was refused after maxClients was lowered to 2",
    );
  },
);

Deno.test(
  "preconnect: the top-level maxClients refuses no client while another port's ready connections hold its slots",
  processes,
  async () => {
    await using deployment = await startDeployment({
      masterName: "review-total",
      replicas: 0,
      sentinels: 1,
    });
    const pooled = freePort();
    const plain = freePort();
    const config = (preconnect: number) => ({
      maxClients: 2,
      databases: [
        { name: deployment.masterName, port: pooled, preconnect },
        { name: deployment.masterName, port: plain, preconnect: 0 },
      ],
    });
    const { tunnel, metric, reload } = await tunnelWith(deployment, config(1), [pooled, plain]);
    await using _tunnel = tunnel;
    // The startup probes of the ports are clients, which may shed a ready connection; the pool
    // refills only at a take or a change, so the reload (a change of settings) fills it.
    await reload(config(2));
    await eventually("2 ready", async () => await metric("ready_connections") === 2);
    // No client is connected anywhere: a client of the other port must be served.
    const reply = await oneCommand(plain, ["PING"]);
    assert.equal(
      reply instanceof RespErrorReply ? reply.message : reply,
      "PONG",
      "refused by the top-level maxClients that only ready connections fill",
    );
  },
);

// ---------------------------------------------------------------------------------------------
// Properties that hold.
// ---------------------------------------------------------------------------------------------

Deno.test(
  "preconnect (held): a first reply far larger than the small buffer arrives whole through a ready connection",
  processes,
  async () => {
    await using deployment = await startDeployment({
      masterName: "review-big",
      replicas: 0,
      sentinels: 1,
    });
    const port = freePort();
    const { tunnel, metric } = await tunnelWith(deployment, {
      databases: [{ name: deployment.masterName, port, preconnect: 2 }],
    }, [port]);
    await using _tunnel = tunnel;
    const value = Array.from({ length: 300_000 }, (_, i) => String.fromCharCode(97 + i % 26))
      .join("");
    assert.equal(await oneCommand(port, ["SET", "big", value]), "OK");
    await eventually("2 ready", async () => await metric("ready_connections") === 2);
    const before = await metric("ready_connections_used_total");
    for (let i = 0; i < 3; i++) {
      using client = await connectClient(port);
      // The first reply a ready connection's pending read gets is 300 KB, split over many reads.
      assert.equal(await client.call(["GET", "big"]), value);
      assert.equal(await client.call(["STRLEN", "big"]), 300_000);
      await eventually("refilled", async () => await metric("ready_connections") === 2);
    }
    assert.ok(await metric("ready_connections_used_total") - before >= 1, "no ready one taken");
  },
);

Deno.test("ReadyPool (held): no small buffer is given back twice through takes, tunnels, discards and abort", async () => {
  await using master = new FakeMaster();
  const source = new FakeSource(master.address, 2);
  const buffers = new TunnelBuffers();
  const p = startPool(source, { buffers });
  await until("2 ready", () => p.pool.size === 2);
  for (let round = 0; round < 5; round++) {
    const ready = p.pool.take(source.targets!)!;
    assert.ok(ready);
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const [client, accepted] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
      listener.accept(),
    ]);
    listener.close();
    const tunnel = new Tunnel(
      accepted,
      ready.stream as ByteStream,
      ready.master,
      new PortStats(),
    );
    const running = tunnel.run(buffers, { masterRead: ready });
    await client.write(new TextEncoder().encode("PING\r\n"));
    const reply = new Uint8Array(16);
    assert.equal(
      new TextDecoder().decode(reply.subarray(0, (await client.read(reply))!)),
      "+PONG\r\n",
    );
    client.close();
    tunnel.close();
    await running;
    // Discards (their buffers go back when their reads settle) and a new confirmation.
    p.pool.closeTo(master.address);
    source.confirm(master.address);
    await until("2 ready", () => p.pool.size === 2);
  }
  await p[Symbol.asyncDispose]();
  await sleep(50);
  const taken = Array.from({ length: 300 }, () => buffers.small.take());
  assert.equal(new Set(taken).size, taken.length, "a small buffer was handed out twice");
});
