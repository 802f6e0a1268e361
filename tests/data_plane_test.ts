/**
 * The data plane's edges against real redis-server and Sentinel processes:
 * clients that reset before they are accepted, half-closed clients, the
 * maxClients caps, idle tunnels, and a flood of rejected clients in the log.
 */
import assert from "node:assert/strict";
import { RespErrorReply } from "../src/control/resp.ts";
import { freePort, startDeployment } from "./_deployment.ts";
import {
  connectClient,
  type LogRecord,
  oneCommand,
  startTunnel,
  type TunnelProcess,
} from "./_tunnel.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One master and one Sentinel: enough where no failover happens. */
function startMinimalDeployment(masterName: string) {
  return startDeployment({ masterName, replicas: 0, sentinels: 1 });
}

/** Reads the tunnel's metrics and returns one series' value. */
async function metric(adminPort: number, series: string): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
  const body = await response.text();
  const line = body.split("\n").find((l) => l.startsWith(`${series} `));
  assert.ok(line, `no series ${series} in:\n${body}`);
  return Number(line.slice(series.length + 1));
}

/**
 * Waits until the tunnel serves its databases, without connecting to their
 * ports: the readiness probe of `startTunnel({ ports })` would be a client,
 * taking a slot or counted in a metric.
 */
async function untilServing(tunnel: TunnelProcess): Promise<void> {
  await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
}

/** Reads until the peer ends the stream; fails the test past `timeoutMs`. */
async function readToEnd(conn: Deno.Conn, timeoutMs = 15_000): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    const buffer = new Uint8Array(64 * 1024);
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      chunks.push(buffer.slice(0, n));
    }
  } catch (error) {
    throw new Error(`no end of stream within ${timeoutMs} ms`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
  const all = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  return all;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) {
    written += await conn.write(bytes.subarray(written));
  }
}

/**
 * Opens `total` connections that reset (SO_LINGER 0) before the tunnel
 * accepts them: the tunnel is stopped (SIGSTOP) while a batch connects and
 * resets, then continued, and the next batch waits until the kernel's accept
 * queue is empty again. Deno cannot set SO_LINGER, so Python does it.
 */
async function resetBeforeAccept(port: number, pid: number, total: number): Promise<void> {
  const script = `
import os, signal, socket, struct, sys, time
port, pid, total, batch = map(int, sys.argv[1:5])
where = ":%04X" % port
def queued():
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        f = line.split()
        if f[1].endswith(where) and f[3] == "0A":
            return int(f[4].split(":")[1], 16)
    return 0
linger = struct.pack("ii", 1, 0)
done = 0
deadline = time.monotonic() + 30
while done < total:
    os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(min(batch, total - done)):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.settimeout(5)
            s.connect(("127.0.0.1", port))
            s.close()
            done += 1
    finally:
        os.kill(pid, signal.SIGCONT)
    while queued() > 0:
        if time.monotonic() > deadline:
            sys.exit("the tunnel did not accept the %d connections queued after %d resets" % (queued(), done))
        time.sleep(0.01)
`;
  const output = await new Deno.Command("sh", {
    args: [
      "-c",
      'exec python3 -c "$0" "$@"',
      script,
      String(port),
      String(pid),
      String(total),
      "400",
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  assert.ok(output.success, `python3: ${decoder.decode(output.stderr)}`);
}

Deno.test(
  "tunnel skips clients that reset before accept and answers the next PING at once",
  processes,
  async () => {
    await using deployment = await startMinimalDeployment("resets");
    const port = freePort();
    const adminPort = freePort();
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      databases: [{ name: "resets", port }],
    }, { ports: [port], args: ["--admin", `127.0.0.1:${adminPort}`] });
    await tunnel.waitForLog((r) => /master is/.test(String(r.message)));

    await resetBeforeAccept(port, tunnel.pid, 2000);
    const started = performance.now();
    const reply = await oneCommand(port, ["PING"], 10_000).catch((error) => String(error));
    const elapsed = performance.now() - started;
    console.log(`PING answered in ${elapsed.toFixed(1)} ms after 2,000 resets before accept`);
    assert.equal(reply, "PONG");
    // Every reset failed the accept that met it, and none was logged as an accept failure.
    const aborted =
      `sentinel_tunnel_connections_aborted_before_accept_total{database="resets",port="${port}",role="master"}`;
    assert.ok(await metric(adminPort, aborted) >= 1000, "the resets did not reach accept");
    assert.ok(!tunnel.logs.some((r) => /accept failed/.test(String(r.message))));
  },
);

Deno.test(
  "tunnel logs running out of file descriptors once per episode, and when it accepts again",
  processes,
  async () => {
    await using deployment = await startMinimalDeployment("fds");
    const port = freePort();
    const adminPort = freePort();
    // About 40 descriptors: Deno's own, the listeners, Sentinel connections, and a few tunnels.
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      databases: [{ name: "fds", port }],
    }, { ports: [port], fdLimit: 40, args: ["--admin", `127.0.0.1:${adminPort}`] });
    await untilServing(tunnel);

    const crowd: Deno.TcpConn[] = [];
    for (let i = 0; i < 60; i++) crowd.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    await tunnel.waitForLog((r) => /accept failed/.test(String(r.message)));
    // Backing off through several retries (5, 10, 20 ... ms) before the crowd leaves.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    for (const conn of crowd) conn.close();
    // Served again; the end of the episode is logged once accept has not failed for 5 s.
    const recovered = () => tunnel.logs.some((r) => /accepting again/.test(String(r.message)));
    const deadline = Date.now() + 20_000;
    while (!recovered() && Date.now() < deadline) {
      await oneCommand(port, ["PING"], 2000).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.ok(recovered(), "no line says that accepting works again");
    assert.equal(await oneCommand(port, ["PING"]), "PONG");
    const failures = tunnel.logs.filter((r) => /accept failed/.test(String(r.message)));
    assert.equal(failures.length, 1, JSON.stringify(failures));
    assert.match(String(failures[0]!.message), /raise the file descriptor limit/);
    // The episode is counted where an alert can see it.
    const episodes =
      `sentinel_tunnel_accepts_out_of_descriptors_total{database="fds",port="${port}",role="master"}`;
    assert.equal(await metric(adminPort, episodes), 1);
  },
);

Deno.test(
  "tunnel forwards a half-close: PING then shutdown of the write side gets +PONG",
  processes,
  async () => {
    await using deployment = await startMinimalDeployment("halfping");
    const port = freePort();
    await using _tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      databases: [{ name: "halfping", port }],
    }, { ports: [port] });
    // Wait until clients are tunnelled, so that this one is not left waiting for a master.
    assert.equal(await oneCommand(port, ["PING"]), "PONG");

    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, encoder.encode("*1\r\n$4\r\nPING\r\n"));
    await conn.closeWrite();
    assert.equal(decoder.decode(await readToEnd(conn)), "+PONG\r\n");
  },
);

Deno.test(
  "tunnel forwards a half-close: 200,000 pipelined SETs then a half-close write every key",
  processes,
  async () => {
    await using deployment = await startMinimalDeployment("bulk");
    const port = freePort();
    await using _tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      databases: [{ name: "bulk", port }],
    }, { ports: [port] });
    assert.equal(await oneCommand(port, ["PING"]), "PONG");

    const count = 200_000;
    let commands = "";
    for (let i = 0; i < count; i++) {
      const key = `bulk:${i}`;
      commands += `*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$1\r\n1\r\n`;
    }
    // As `cat commands | nc` does: write everything, half-close, read every reply to the end.
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const replies = readToEnd(conn, 60_000);
    await writeAll(conn, encoder.encode(commands));
    await conn.closeWrite();
    const received = await replies;
    const keys = Number(await deployment.cli(deployment.nodes[0]!, "DBSIZE"));
    console.log(`half-closed bulk load: ${keys} of ${count} keys written`);
    assert.equal(keys, count);
    assert.equal(received.length, count * "+OK\r\n".length);
  },
);

Deno.test(
  "tunnel caps the clients of a database: the one over maxClients gets an error and is counted",
  processes,
  async () => {
    await using deployment = await startMinimalDeployment("capped");
    const port = freePort();
    const adminPort = freePort();
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      databases: [{ name: "capped", port, maxClients: 2 }],
    }, { args: ["--admin", `127.0.0.1:${adminPort}`] });
    await untilServing(tunnel);

    const first = await connectClient(port);
    using second = await connectClient(port);
    assert.equal(await first.call(["PING"]), "PONG");
    assert.equal(await second.call(["PING"]), "PONG");
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, encoder.encode("*1\r\n$4\r\nPING\r\n"));
    const refused = decoder.decode(await readToEnd(conn));
    assert.match(
      refused,
      /^-ERR sentinel-tunnel: database "capped": too many clients \(2\): this database's maxClients/,
    );
    const over =
      `sentinel_tunnel_connections_over_limit_total{limit="database",database="capped",port="${port}",role="master"}`;
    assert.equal(await metric(adminPort, over), 1);

    // A client that leaves frees its slot.
    first.close();
    let reply: unknown;
    for (let attempt = 0; attempt < 50 && reply !== "PONG"; attempt++) {
      reply = await oneCommand(port, ["PING"]).catch((error) => String(error));
      if (reply !== "PONG") await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(reply, "PONG");
  },
);

Deno.test(
  "tunnel caps the clients of every database together: the one over the total gets an error",
  processes,
  async () => {
    await using deployment = await startMinimalDeployment("total");
    // A second name the Sentinel knows, whose master is down: its clients wait for a master.
    await deployment.cli(
      deployment.sentinels[0]!,
      ...["SENTINEL", "MONITOR", "waiting", "127.0.0.1", String(freePort()), "1"],
    );
    const port = freePort();
    const otherPort = freePort();
    const adminPort = freePort();
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      maxClients: 3,
      timeouts: { clientWaitMs: 60_000 },
      databases: [{ name: "total", port }, { name: "waiting", port: otherPort }],
    }, { args: ["--admin", `127.0.0.1:${adminPort}`] });
    await untilServing(tunnel);

    using a = await connectClient(port);
    using b = await connectClient(port);
    assert.equal(await a.call(["PING"]), "PONG");
    assert.equal(await b.call(["PING"]), "PONG");
    // The other database's client takes the third slot while it waits for a master.
    using waiting = await Deno.connect({ hostname: "127.0.0.1", port: otherPort });
    await writeAll(waiting, encoder.encode("*1\r\n$4\r\nPING\r\n"));
    const series =
      `sentinel_tunnel_connections_total{database="waiting",port="${otherPort}",role="master"}`;
    for (let i = 0; i < 100 && await metric(adminPort, series) < 1; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }

    const reply = await oneCommand(port, ["PING"]);
    assert.ok(reply instanceof RespErrorReply, `expected an error, got ${JSON.stringify(reply)}`);
    assert.match(
      reply.message,
      /^ERR sentinel-tunnel: database "total": too many clients \(3\): maxClients of all databases together/,
    );
    const over =
      `sentinel_tunnel_connections_over_limit_total{limit="total",database="total",port="${port}",role="master"}`;
    assert.equal(await metric(adminPort, over), 1);
  },
);

Deno.test(
  "tunnel closes a tunnel idle for clientIdleMs and counts it; with 0 an idle client stays",
  processes,
  async () => {
    await using deployment = await startMinimalDeployment("idle");
    const sentinels = deployment.sentinels.map((s) => s.address);
    const port = freePort();
    const keptPort = freePort();
    const adminPort = freePort();
    await using tunnel = await startTunnel({
      sentinels,
      timeouts: { clientIdleMs: 1000 },
      databases: [{ name: "idle", port }],
    }, { args: ["--admin", `127.0.0.1:${adminPort}`] });
    await untilServing(tunnel);
    await using _kept = await startTunnel({
      sentinels,
      databases: [{ name: "idle", port: keptPort }],
    }, { ports: [keptPort] });

    // Traffic keeps a tunnel open past clientIdleMs...
    const busy = await connectClient(port);
    for (let i = 0; i < 25; i++) {
      assert.equal(await busy.call(["PING"]), "PONG");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    busy.close();
    // ...and one that carries nothing is closed.
    using idle = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(idle, encoder.encode("*1\r\n$4\r\nPING\r\n"));
    assert.equal(decoder.decode(await readToEnd(idle, 10_000)), "+PONG\r\n");
    const closed =
      `sentinel_tunnel_connections_idle_closed_total{database="idle",port="${port}",role="master"}`;
    assert.equal(await metric(adminPort, closed), 1);

    // Off by default: idle for 3 s, then still served.
    using kept = await connectClient(keptPort);
    assert.equal(await kept.call(["PING"]), "PONG");
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.equal(await kept.call(["PING"]), "PONG");
  },
);

/** How many rejections a log line accounts for: 1 for a line per client, the count for a summary. */
function rejectionsIn(record: LogRecord): number {
  const message = String(record.message);
  if (/rejected client/.test(message)) return 1;
  if (/rejected \d+ more clients/.test(message)) return Number(record.count);
  return 0;
}

Deno.test(
  "tunnel logs a flood of rejected clients in a few lines a second, with a count",
  processes,
  async () => {
    await using deployment = await startMinimalDeployment("known");
    const port = freePort();
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      databases: [{ name: "nosuchmaster", port }],
    });
    await tunnel.waitForLog((r) => /listening on/.test(String(r.message)));
    const first = await oneCommand(port, ["PING"]);
    assert.ok(first instanceof RespErrorReply, JSON.stringify(first));

    const rejected = 600;
    const started = performance.now();
    for (let i = 1; i < rejected; i += 50) {
      const batch = Array.from(
        { length: Math.min(50, rejected - i) },
        () => oneCommand(port, ["PING"]),
      );
      for (const reply of await Promise.all(batch)) {
        assert.ok(reply instanceof RespErrorReply, JSON.stringify(reply));
      }
    }
    const seconds = (performance.now() - started) / 1000;
    const lines = () => tunnel.logs.filter((r) => rejectionsIn(r) > 0);
    const accounted = () => lines().reduce((sum, r) => sum + rejectionsIn(r), 0);
    // The last summary comes within a second of the last rejection.
    await tunnel.waitForLog(() => accounted() >= rejected, 10_000);
    assert.equal(accounted(), rejected);
    assert.ok(
      lines().length <= 3 + Math.ceil(seconds),
      `${lines().length} lines for ${rejected} rejections in ${seconds.toFixed(1)} s`,
    );
  },
);
