/**
 * ReadyPool (`preconnect`) against a fake master on loopback: a TCP server
 * that records every connection, what it received and when it was closed.
 * The source is a fake master watcher whose targets the test replaces.
 */
import assert from "node:assert/strict";
import type { Address } from "../src/shared/address.ts";
import { type ByteStream, connectTo } from "../src/shared/connect.ts";
import { ClientSlots } from "../src/data/client_slots.ts";
import type { Dialer } from "../src/data/ready_pool.ts";
import { Tunnel, type TunnelBuffers } from "../src/data/tunnel.ts";
import { PortStats } from "../src/shared/stats.ts";
import { FakeMaster, FakeSource, startPool, until } from "./_ready_pool_harness.ts";

Deno.test("ReadyPool keeps preconnect connections open, untouched, and refills after a take", async () => {
  await using master = new FakeMaster();
  const source = new FakeSource(master.address);
  await using p = startPool(source);
  await until("3 ready connections", () => p.pool.size === 3 && master.open === 3);
  assert.equal(p.slots.taken, 3, "each ready connection holds a slot");
  const ready = p.pool.take(source.targets!);
  assert.ok(ready, "a ready connection is handed out");
  // A taken one gives its slot back at once (the client holds its own); its replacement's dial
  // starts in the next turn, once the client's first bytes are on their way.
  assert.equal(p.pool.size, 2);
  assert.equal(p.slots.taken, 2);
  await until("refilled to 3", () => p.pool.size === 3 && master.conns.length === 4);
  assert.equal(p.slots.taken, 3);
  // Nothing was ever sent on a ready connection: the client's first bytes are the first.
  assert.deepEqual(master.conns.map((c) => c.received), [0, 0, 0, 0]);
  // The taken connection works, and its pending read is the tunnel's first read of the master.
  const client = await tunnelThrough(ready, p.buffers);
  assert.equal(await client.ask("PING\r\n"), "+PONG\r\n");
  client.close();
  assert.equal(p.stats.readyConnectionsUsed, 1);
});

Deno.test("ReadyPool hands out nothing for another confirmation, even of the same address", async () => {
  await using master = new FakeMaster();
  const source = new FakeSource(master.address);
  const old = source.targets!;
  await using p = startPool(source);
  await until("3 ready connections", () => p.pool.size === 3);
  // The same address confirmed anew (lost, then confirmed again): the old connections are void.
  const renewed = source.confirm(master.address)!;
  assert.equal(p.pool.take(old), undefined, "nothing for the old confirmation");
  await until("the old ones closed", () => master.conns.slice(0, 3).every((c) => c.closed));
  await until("3 new ones for the new confirmation", () => p.pool.size === 3);
  const ready = p.pool.take(renewed);
  assert.ok(ready);
  assert.ok(master.conns.indexOf(master.conns.find((c) => !c.closed)!) >= 3);
  ready.close();
});

Deno.test("ReadyPool: a take finds nothing while the targets it was given are no longer current", async () => {
  await using master = new FakeMaster();
  const source = new FakeSource(master.address);
  await using p = startPool(source);
  await until("3 ready connections", () => p.pool.size === 3);
  const before = source.targets!;
  // The watcher lost the master; the pool has not heard yet (its reaction runs later).
  source.targets = undefined;
  assert.equal(p.pool.take(before), undefined);
  assert.equal(p.stats.readyConnectionsUsed, 0);
});

Deno.test("ReadyPool.closeTo() (the watcher's cut-off) closes the ready connections at once", async () => {
  await using master = new FakeMaster();
  const source = new FakeSource(master.address);
  await using p = startPool(source);
  await until("3 ready connections", () => p.pool.size === 3 && master.open === 3);
  assert.equal(p.pool.closeTo(master.address), 3);
  assert.equal(p.pool.size, 0);
  assert.equal(p.slots.taken, 0, "their slots are given back");
  await until("the master sees them closed", () => master.open === 0);
  // Cut off, then lost: no dial to it while no master is confirmed.
  source.confirm(undefined);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(master.conns.length, 3);
  assert.equal(p.pool.size, 0);
});

Deno.test("ReadyPool empties at once when the master is lost, and fills for the next one", async () => {
  await using first = new FakeMaster();
  await using second = new FakeMaster();
  const source = new FakeSource(first.address);
  await using p = startPool(source);
  await until("3 ready to the first", () => p.pool.size === 3 && first.open === 3);
  source.confirm(undefined);
  await until("the first's closed", () => first.open === 0 && p.pool.size === 0);
  const next = source.confirm(second.address)!;
  await until("3 ready to the second", () => p.pool.size === 3 && second.open === 3);
  const ready = p.pool.take(next);
  assert.equal(ready?.master.port, second.address.port);
  ready?.close();
});

Deno.test("ReadyPool: a dial under way when the master changes never joins the pool", async () => {
  await using master = new FakeMaster();
  const source = new FakeSource(master.address);
  const held: PromiseWithResolvers<void>[] = [];
  // Each dial connects for real, then waits for the test to let it finish.
  const connect: Dialer = async (address, options) => {
    const stream = await connectTo(address, options);
    const gate = Promise.withResolvers<void>();
    held.push(gate);
    await gate.promise;
    return stream;
  };
  await using p = startPool(source, { connect });
  await until("3 dials under way", () => held.length === 3 && master.conns.length === 3);
  const old = source.targets!;
  const next = source.confirm(master.address)!;
  for (const gate of held.splice(0)) gate.resolve();
  await until("the stale dials closed", () => master.conns.slice(0, 3).every((c) => c.closed));
  assert.equal(p.pool.take(old), undefined);
  // The dials for the new confirmation, let through, are the ones handed out.
  await until("new dials", () => held.length === 3);
  for (const gate of held.splice(0)) gate.resolve();
  await until("3 ready", () => p.pool.size === 3);
  const ready = p.pool.take(next);
  assert.ok(ready && ready.targets === next);
  ready.close();
});

Deno.test("ReadyPool: a dial under way at a reload never joins: it was made with the old settings", async () => {
  await using master = new FakeMaster();
  const source = new FakeSource(master.address);
  const held: PromiseWithResolvers<void>[] = [];
  // The first three dials (made before the reload) wait for the test; later ones go through.
  const connect: Dialer = async (address, options) => {
    const stream = await connectTo(address, options);
    if (held.length < 3) {
      const gate = Promise.withResolvers<void>();
      held.push(gate);
      await gate.promise;
    }
    return stream;
  };
  await using p = startPool(source, { connect });
  await until("3 dials under way", () => held.length === 3 && master.conns.length === 3);
  // New TLS files, say: the same master, other settings.
  p.pool.settingsChanged();
  await until("3 ready, dialled after the reload", () => p.pool.size === 3);
  for (const gate of held) gate.resolve();
  await until("the old dials closed", () => master.conns.slice(0, 3).every((c) => c.closed));
  assert.equal(p.pool.size, 3);
  assert.equal(p.slots.taken, 3, "the old dials' slots were given back at the reload");
});

Deno.test("ReadyPool replaces a ready connection the master closes, and drops one that speaks unasked", async () => {
  await using master = new FakeMaster();
  const source = new FakeSource(master.address);
  await using p = startPool(source);
  await until("3 ready", () => p.pool.size === 3 && master.conns.length === 3);
  master.conns[0]!.conn.close(); // the master's `timeout`
  await master.conns[1]!.conn.write(new TextEncoder().encode("-ERR max number of clients\r\n"));
  await until("both replaced", () => master.conns.length === 5 && p.pool.size === 3);
  assert.equal(p.stats.readyConnectionsDiscarded, 2);
  await until("the one that spoke is closed", () => master.conns[1]!.closed);
  // What is handed out now is alive.
  const ready = p.pool.take(source.targets!)!;
  const client = await tunnelThrough(ready, p.buffers);
  assert.equal(await client.ask("PING\r\n"), "+PONG\r\n");
  client.close();
});

Deno.test("ReadyPool backs off when the master drops every ready connection at once", async () => {
  await using master = new FakeMaster();
  const source = new FakeSource(master.address);
  let dials = 0;
  const connect: Dialer = async (address, options) => {
    dials++;
    const stream = await connectTo(address, options);
    return stream;
  };
  await using _pool = startPool(source, { connect });
  // A master at maxclients: it accepts, says so, and closes.
  const dropper = setInterval(() => {
    for (const c of master.conns) if (!c.closed) c.conn.close();
  }, 1);
  try {
    await new Promise((resolve) => setTimeout(resolve, 1500));
  } finally {
    clearInterval(dropper);
  }
  // Without backoff this is thousands; with 100 ms doubling it is a few dozen at most.
  assert.ok(dials < 60, `${dials} dials in 1.5 s`);
  assert.ok(dials >= 3);
});

Deno.test("ReadyPool: ready connections hold slots; shedOne() frees one for a client; none past the cap", async () => {
  await using master = new FakeMaster();
  const source = new FakeSource(master.address);
  const slots = new ClientSlots(4);
  const total = new ClientSlots(100);
  await using p = startPool(source, { slots, total });
  await until("3 ready", () => p.pool.size === 3);
  assert.deepEqual([slots.taken, total.taken], [3, 3]);
  // Two clients come: one slot is free, the second takes a ready connection's.
  assert.ok(slots.tryTake());
  assert.ok(!slots.tryTake());
  assert.ok(p.pool.shedOne());
  assert.ok(slots.tryTake());
  assert.deepEqual([slots.taken, total.taken, p.pool.size], [4, 2, 2]);
  // Full: the pool does not refill past the cap.
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(p.pool.size, 2);
  // The two clients leave; the next change refills to preconnect.
  slots.give();
  slots.give();
  source.confirm(master.address);
  await until("refilled", () => p.pool.size === 3 && slots.taken === 3);
});

Deno.test("ReadyPool: a smaller preconnect after a reload trims, 0 empties, and abort closes all", async () => {
  await using master = new FakeMaster();
  const source = new FakeSource(master.address);
  const p = startPool(source);
  await until("3 ready", () => p.pool.size === 3);
  source.database = { ...source.database, preconnect: 1 };
  p.pool.settingsChanged();
  await until("1 ready", () => p.pool.size === 1 && master.open === 1);
  source.database = { ...source.database, preconnect: 0 };
  p.pool.settingsChanged();
  await until("none", () => p.pool.size === 0 && master.open === 0);
  source.database = { ...source.database, preconnect: 2 };
  p.pool.settingsChanged();
  await until("2 ready", () => p.pool.size === 2 && master.open === 2);
  await p[Symbol.asyncDispose]();
  assert.equal(p.pool.size, 0);
  await until("closed on abort", () => master.open === 0);
  assert.equal(p.slots.taken, 0);
});

/** A client joined by a real Tunnel to a ready connection, as the listener does it. */
async function tunnelThrough(
  ready: { stream: ByteStream; master: Address; read: Promise<number | null>; bytes: Uint8Array },
  buffers: TunnelBuffers,
) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, accepted] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  listener.close();
  const tunnel = new Tunnel(accepted, ready.stream, ready.master, new PortStats());
  const running = tunnel.run(buffers, { masterRead: ready });
  return {
    async ask(text: string): Promise<string> {
      await client.write(new TextEncoder().encode(text));
      const buffer = new Uint8Array(64);
      const n = await client.read(buffer);
      return new TextDecoder().decode(buffer.subarray(0, n ?? 0));
    },
    close() {
      client.close();
      tunnel.close();
      void running;
    },
  };
}
