/**
 * The data plane in process, over loopback sockets: a tunnel's half-close and
 * idle close, the listener's dial deadline and shutdown, TCP keepalive, and
 * the client caps. Sanitizers on: every socket, timer and connect must end.
 */
import assert from "node:assert/strict";
import type { Address } from "../src/shared/address.ts";
import { DEFAULT_MAX_LAG_BYTES, DEFAULT_TIMEOUTS, type Timeouts } from "../src/shared/settings.ts";
import { PortStats } from "../src/shared/stats.ts";
import { sleep } from "../src/shared/io.ts";
import { ClientSlots } from "../src/data/client_slots.ts";
import { ConnectionRegistry } from "../src/data/connection_registry.ts";
import { DatabaseListener } from "../src/data/database_listener.ts";
import type { RouteSource, Targets } from "../src/shared/route.ts";
import { Tunnel, TunnelBuffers } from "../src/data/tunnel.ts";

const HOST = "127.0.0.1";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Settles with `promise`, or rejects naming `what` after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const timeout = new AbortController();
  const expired = sleep(ms, timeout.signal).then(() => {
    if (!timeout.signal.aborted) throw new Error(`${what}: not within ${ms} ms`);
    return undefined as never;
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    timeout.abort();
  }
}

/** Polls `condition` every 20 ms until it holds, for at most `ms`. */
async function until(
  condition: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!await condition()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Reads until the peer ends the stream. */
async function readToEnd(conn: Deno.Conn): Promise<string> {
  let text = "";
  const buffer = new Uint8Array(4096);
  for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
    text += decoder.decode(buffer.subarray(0, n));
  }
  return text;
}

/** Two ends of one loopback TCP connection. */
async function socketPair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const [near, far] = await Promise.all([
    Deno.connect({ hostname: HOST, port: listener.addr.port }),
    listener.accept(),
  ]);
  return [near, far];
}

/** `host:port` as /proc/net/tcp writes the port: four upper-case hex digits. */
function hexPort(port: number): string {
  return port.toString(16).toUpperCase().padStart(4, "0");
}

/**
 * The sockets of /proc/net/tcp: local and remote port, state and timer kind.
 * Deno reads /proc only with --allow-all, so `cat` reads it.
 */
async function tcpSockets(): Promise<
  { local: number; remote: number; state: string; timer: string }[]
> {
  const { stdout } = await new Deno.Command("sh", {
    args: ["-c", "cat /proc/net/tcp"],
    stdout: "piped",
    stderr: "null",
  }).output();
  return decoder.decode(stdout).split("\n").slice(1).flatMap((line) => {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 6) return [];
    return [{
      local: parseInt(fields[1]!.split(":")[1]!, 16),
      remote: parseInt(fields[2]!.split(":")[1]!, 16),
      state: fields[3]!,
      timer: fields[5]!.split(":")[0]!,
    }];
  });
}

/** Connects still trying to reach `port` (SYN_SENT). */
async function connectsInFlight(port: number): Promise<number> {
  return (await tcpSockets()).filter((s) => s.remote === port && s.state === "02").length;
}

/**
 * A loopback address that never answers a connect: a listener whose accept
 * queue is full, so that the kernel drops further SYNs, as a firewall that
 * blackholes them would.
 */
async function blackhole(): Promise<Address & Disposable> {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const { port } = listener.addr;
  const queued: Deno.TcpConn[] = [];
  for (;;) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 300);
    try {
      queued.push(await Deno.connect({ hostname: HOST, port, signal: controller.signal }));
    } catch {
      break; // the queue is full
    } finally {
      clearTimeout(timer);
    }
  }
  assert.equal(await connectsInFlight(port), 0, `a connect to ${hexPort(port)} was left running`);
  return {
    hostname: HOST,
    port,
    [Symbol.dispose]() {
      for (const conn of queued) conn.close();
      listener.close();
    },
  };
}

/** A control plane that admits whatever master the test sets. */
class FakeMasterSource implements RouteSource {
  database: {
    name: string;
    timeouts: Timeouts;
    maxClients: number;
    tcpKeepAlive: boolean;
  };
  readonly stats = new PortStats();
  targets: Targets | undefined;
  readonly problem = undefined;
  readonly nextChange = new Promise<void>(() => {});

  constructor(
    master: Address | undefined,
    settings: { timeouts?: Partial<Timeouts>; maxClients?: number; tcpKeepAlive?: boolean } = {},
  ) {
    this.targets = master && { kind: "master", addresses: [master] };
    this.database = {
      name: "unit",
      timeouts: { ...DEFAULT_TIMEOUTS, ...settings.timeouts },
      maxClients: settings.maxClients ?? 100,
      tcpKeepAlive: settings.tcpKeepAlive ?? true,
    };
  }

  async waitForTargets(timeoutMs: number, signal: AbortSignal) {
    await sleep(timeoutMs, signal);
    return this.targets;
  }

  reportUnreachable(): void {}

  nextResolution(timeoutMs: number, signal: AbortSignal): Promise<void> {
    return sleep(Math.min(timeoutMs, 10), signal);
  }
}

/** A listener serving `source` on a free port, stopped (tunnels closed) on dispose. */
function serve(
  source: FakeMasterSource,
  slots?: ClientSlots,
): { port: number; stop(): Promise<void>; served: Promise<void> } & AsyncDisposable {
  const listener = DatabaseListener.open({
    name: source.database.name,
    bind: HOST,
    port: 0,
    timeouts: source.database.timeouts,
    maxClients: source.database.maxClients,
    tcpKeepAlive: source.database.tcpKeepAlive,
    role: "master",
    maxLagBytes: DEFAULT_MAX_LAG_BYTES,
    whenNoReplica: "reject",
    preconnect: 0,
  });
  const registry = new ConnectionRegistry<Tunnel>();
  const controller = new AbortController();
  const served = listener.serve({
    settings: () => listener.database,
    route: source,
    stats: source.stats,
    registry,
    buffers: new TunnelBuffers(),
    ...(slots ? { slots } : {}),
  }, controller.signal);
  const stop = async () => {
    controller.abort();
    registry.closeAll();
    await served;
  };
  return { port: listener.address.port, served, stop, [Symbol.asyncDispose]: stop };
}

Deno.test("ClientSlots.tryTake() takes up to the limit, give() frees one, the limit can change", () => {
  const slots = new ClientSlots(2);
  assert.equal(slots.tryTake(), true);
  assert.equal(slots.tryTake(), true);
  assert.equal(slots.tryTake(), false);
  assert.equal(slots.taken, 2);
  slots.give();
  assert.equal(slots.tryTake(), true);
  slots.limit = 3;
  assert.equal(slots.tryTake(), true);
  slots.limit = 1;
  assert.equal(slots.tryTake(), false);
  for (let i = 0; i < 5; i++) slots.give();
  assert.equal(slots.taken, 0);
  assert.throws(() => new ClientSlots(0), RangeError);
  assert.throws(() => slots.limit = 1.5, /Invalid client limit "1.5"/);
});

Deno.test("Tunnel forwards a half-close each way and ends when both directions have", async () => {
  const [client, clientSide] = await socketPair();
  const [upstreamSide, master] = await socketPair();
  const counters = { bytesClientToMaster: 0, bytesMasterToClient: 0, connectionsIdleClosed: 0 };
  const tunnel = new Tunnel(clientSide, upstreamSide, { hostname: HOST, port: 6379 }, counters);
  const running = tunnel.run(new TunnelBuffers());

  // The client sends its command and half-closes: the master reads it, then the end.
  await client.write(encoder.encode("PING"));
  await client.closeWrite();
  assert.equal(await within(readToEnd(master), 5000, "the client's half-close"), "PING");
  assert.equal(tunnel.closed, false);
  // The master still answers, and the client reads the answer, then the end.
  await master.write(encoder.encode("+PONG"));
  await master.closeWrite();
  assert.equal(await within(readToEnd(client), 5000, "the master's half-close"), "+PONG");
  await within(running, 5000, "the end of the tunnel");
  assert.equal(tunnel.closed, true);
  assert.deepEqual(counters, {
    bytesClientToMaster: 4,
    bytesMasterToClient: 5,
    connectionsIdleClosed: 0,
  });
  client.close();
  master.close();
});

Deno.test("Tunnel forwards the master's half-close while the client still sends", async () => {
  const [client, clientSide] = await socketPair();
  const [upstreamSide, master] = await socketPair();
  const counters = { bytesClientToMaster: 0, bytesMasterToClient: 0, connectionsIdleClosed: 0 };
  const tunnel = new Tunnel(clientSide, upstreamSide, { hostname: HOST, port: 6379 }, counters);
  const running = tunnel.run(new TunnelBuffers());

  await master.write(encoder.encode("bye"));
  await master.closeWrite();
  assert.equal(await within(readToEnd(client), 5000, "the master's half-close"), "bye");
  await client.write(encoder.encode("late"));
  await client.closeWrite();
  assert.equal(await within(readToEnd(master), 5000, "the client's half-close"), "late");
  await within(running, 5000, "the end of the tunnel");
  client.close();
  master.close();
});

Deno.test("Tunnel.close() ends a half-closed tunnel at once and closes both sides", async () => {
  const [client, clientSide] = await socketPair();
  const [upstreamSide, master] = await socketPair();
  const counters = { bytesClientToMaster: 0, bytesMasterToClient: 0, connectionsIdleClosed: 0 };
  const tunnel = new Tunnel(clientSide, upstreamSide, { hostname: HOST, port: 6379 }, counters);
  const running = tunnel.run(new TunnelBuffers());
  await client.closeWrite();
  assert.equal(await within(readToEnd(master), 5000, "the client's half-close"), "");
  tunnel.close();
  await within(running, 5000, "the end of the tunnel");
  assert.equal(await within(readToEnd(client), 5000, "the close"), "");
  client.close();
  master.close();
});

Deno.test("Tunnel.run() with idleMs closes a tunnel that carries nothing, and counts it", async () => {
  const [client, clientSide] = await socketPair();
  const [upstreamSide, master] = await socketPair();
  const counters = { bytesClientToMaster: 0, bytesMasterToClient: 0, connectionsIdleClosed: 0 };
  const tunnel = new Tunnel(clientSide, upstreamSide, { hostname: HOST, port: 6379 }, counters);
  const running = tunnel.run(new TunnelBuffers(), { idleMs: 200 });
  await client.write(encoder.encode("PING"));
  await within(running, 5000, "the idle close");
  assert.equal(counters.connectionsIdleClosed, 1);
  assert.equal(await readToEnd(master), "PING");
  assert.equal(await readToEnd(client), "");
  client.close();
  master.close();
});

Deno.test("DatabaseListener aborts a dial at masterConnectMs and leaves no connect running", async () => {
  using hole = await blackhole();
  const source = new FakeMasterSource(hole, {
    timeouts: { masterConnectMs: 200, clientWaitMs: 300 },
  });
  await using listener = serve(source);
  using client = await Deno.connect({ hostname: HOST, port: listener.port });
  await client.write(encoder.encode("*1\r\n$4\r\nPING\r\n"));
  const reply = await within(readToEnd(client), 10_000, "the error reply");
  assert.match(
    reply,
    /^-ERR sentinel-tunnel: database "unit": no confirmed master after waiting 300 ms: cannot connect to master 127\.0\.0\.1:\d+: no connection within 200 ms\r\n$/,
  );
  // The connect was aborted, not left to the kernel's SYN retries.
  assert.equal(await connectsInFlight(hole.port), 0);
});

Deno.test("DatabaseListener.serve() ends at once on shutdown, aborting a dial in flight", async () => {
  using hole = await blackhole();
  const source = new FakeMasterSource(hole, {
    timeouts: { masterConnectMs: 60_000, clientWaitMs: 60_000 },
  });
  const listener = serve(source);
  using client = await Deno.connect({ hostname: HOST, port: listener.port });
  await client.write(encoder.encode("*1\r\n$4\r\nPING\r\n"));
  await until(async () => await connectsInFlight(hole.port) === 1, 5000, "the dial");

  await within(listener.stop(), 5000, "shutdown with a dial in flight");
  assert.equal(await connectsInFlight(hole.port), 0);
  assert.match(
    await within(readToEnd(client), 5000, "the error reply"),
    /^-ERR sentinel-tunnel: database "unit": sentinel-tunnel is shutting down\r\n$/,
  );
});

for (const tcpKeepAlive of [true, false]) {
  Deno.test(`DatabaseListener ${tcpKeepAlive ? "turns on" : "leaves off"} TCP keepalive on both sockets with tcpKeepAlive ${tcpKeepAlive}`, async () => {
    using master = Deno.listen({ hostname: HOST, port: 0 });
    const source = new FakeMasterSource(master.addr, { tcpKeepAlive });
    await using listener = serve(source);
    using client = await Deno.connect({ hostname: HOST, port: listener.port });
    using upstream = await master.accept();
    // Once bytes cross, the tunnel runs: both sockets are set up.
    await client.write(encoder.encode("x"));
    assert.equal(await upstream.read(new Uint8Array(1)), 1);

    // /proc/net/tcp names the timer pending on a socket: 2 is keepalive, 0 none.
    const timer = tcpKeepAlive ? "02" : "00";
    const timerOf = async (local: number, remote: number) =>
      (await tcpSockets()).find((s) => s.local === local && s.remote === remote)?.timer;
    await until(
      async () => await timerOf(listener.port, client.localAddr.port) === timer,
      5000,
      `timer ${timer} on the client's socket`,
    );
    await until(
      async () => await timerOf(upstream.remoteAddr.port, master.addr.port) === timer,
      5000,
      `timer ${timer} on the master's socket`,
    );
  });
}

Deno.test("DatabaseListener refuses the client over maxClients, of the database or of all", async () => {
  using master = Deno.listen({ hostname: HOST, port: 0 });
  const slots = new ClientSlots(1);
  const first = new FakeMasterSource(master.addr, { maxClients: 1 });
  const second = new FakeMasterSource(master.addr);
  await using one = serve(first, slots);
  await using two = serve(second, slots);

  const served = await Deno.connect({ hostname: HOST, port: one.port });
  const upstream = await master.accept();
  // Over the database's own cap.
  using overDatabase = await Deno.connect({ hostname: HOST, port: one.port });
  assert.match(
    await within(readToEnd(overDatabase), 5000, "the database's refusal"),
    /^-ERR sentinel-tunnel: database "unit": too many clients \(1\): this database's maxClients is reached; retry later, or raise the database's maxClients\r\n$/,
  );
  // Over the cap of every database together, which the first database's client holds.
  using overTotal = await Deno.connect({ hostname: HOST, port: two.port });
  assert.match(
    await within(readToEnd(overTotal), 5000, "the total's refusal"),
    /^-ERR sentinel-tunnel: database "unit": too many clients \(1\): maxClients of all databases together is reached; retry later, or raise the top-level maxClients\r\n$/,
  );
  assert.equal(first.stats.connectionsOverDatabaseLimit, 1);
  assert.equal(second.stats.connectionsOverTotalLimit, 1);
  assert.equal(slots.taken, 1);

  // The client leaves (and the master with it): its slot is free again.
  served.close();
  assert.equal(await within(readToEnd(upstream), 5000, "the client's end"), "");
  upstream.close();
  await until(() => slots.taken === 0, 5000, "the slot given back");
  const next = await Deno.connect({ hostname: HOST, port: two.port });
  const nextUpstream = await within(master.accept(), 5000, "a tunnel for the next client");
  next.close();
  nextUpstream.close();
});

Deno.test("A master's close ends an idle client's tunnel and frees its slot after a grace", async () => {
  using master = Deno.listen({ hostname: HOST, port: 0 });
  const slots = new ClientSlots(1);
  const source = new FakeMasterSource(master.addr, { maxClients: 1 });
  await using s = serve(source, slots);
  const client = await Deno.connect({ hostname: HOST, port: s.port });
  const upstream = await master.accept();
  // A full close, as Redis does at its timeout or on CLIENT KILL; the pooled client does not notice.
  upstream.close();
  assert.equal(await within(readToEnd(client), 5000, "the tunnel to close"), "");
  await until(() => slots.taken === 0, 5000, "the slot to come back");
  client.close();
});

Deno.test("A client that leaves while waiting for a master gives back its slot at once", async () => {
  const slots = new ClientSlots(1);
  const source = new FakeMasterSource(undefined, {
    maxClients: 5,
    timeouts: { clientWaitMs: 30_000 },
  });
  await using s = serve(source, slots);
  const client = await Deno.connect({ hostname: HOST, port: s.port });
  await until(() => slots.taken === 1, 5000, "the client to wait");
  client.close();
  // Well before clientWaitMs (30 s): the wait ends when the client goes.
  await until(() => slots.taken === 0, 5000, "the slot to come back");
});

Deno.test("What a client sends while it waits for a master reaches the master first", async () => {
  using master = Deno.listen({ hostname: HOST, port: 0 });
  const source = new FakeMasterSource(undefined, { timeouts: { clientWaitMs: 300 } });
  await using s = serve(source, new ClientSlots(5));
  const client = await Deno.connect({ hostname: HOST, port: s.port });
  await client.write(encoder.encode("PING\r\n"));
  // The master appears while the client waits; the fake answers at the end of the wait.
  source.targets = { kind: "master", addresses: [master.addr] };
  const upstream = await within(master.accept(), 5000, "the dial to the master");
  await client.write(encoder.encode("ECHO x\r\n"));
  await client.closeWrite();
  assert.equal(await within(readToEnd(upstream), 5000, "the client's bytes"), "PING\r\nECHO x\r\n");
  upstream.close();
  client.close();
});

Deno.test("Refused clients that linger are capped, so a flood over maxClients holds few sockets", async () => {
  using master = Deno.listen({ hostname: HOST, port: 0 });
  const source = new FakeMasterSource(master.addr, { maxClients: 1 });
  await using s = serve(source, new ClientSlots(10));
  const first = await Deno.connect({ hostname: HOST, port: s.port });
  const upstream = await master.accept();
  const before = await openDescriptors();
  const flood: Deno.TcpConn[] = [];
  const refused: Promise<string>[] = [];
  for (let i = 0; i < 600; i++) {
    const conn = await Deno.connect({ hostname: HOST, port: s.port });
    flood.push(conn);
    // Each reads its error; none closes, so a refusal without a cap would linger for 1 s.
    const buffer = new Uint8Array(256);
    refused.push(conn.read(buffer).then((n) => decoder.decode(buffer.subarray(0, n ?? 0))));
  }
  for (const reply of await within(Promise.all(refused), 10_000, "every refusal")) {
    assert.match(reply, /too many clients \(1\)/);
  }
  // This process holds the 600 client ends; the listener may hold at most 256 lingering ones.
  const added = await openDescriptors() - before;
  assert.ok(added < 600 + 256 + 20, `${added} descriptors for 600 refused clients`);
  for (const conn of flood) conn.close();
  upstream.close();
  first.close();
});

/** Open descriptors of this process, counted by ls (the tests may not read /proc). */
async function openDescriptors(): Promise<number> {
  const { stdout } = await new Deno.Command("sh", {
    args: ["-c", `ls /proc/${Deno.pid}/fd | wc -l`],
    stdout: "piped",
  }).output();
  return Number(decoder.decode(stdout).trim());
}
