/**
 * Logs never block the data path: LogTape's non-blocking stream sink, a
 * bounded queue that drops (and counts) lines for a stuck reader, escaped
 * control characters in text, folded repeats, and the log file. Unit tests
 * write to an output of their own; the integration tests run the tunnel with
 * a stderr pipe nobody reads.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { getLogger } from "@logtape/logtape";
import { flushLogs, logLinesDropped, type LogOutput, setupLogging } from "../src/ops/log.ts";
import type { RedisConnection } from "../src/control/redis_connection.ts";
import { freePort, startDeployment, waitForPort } from "./_deployment.ts";
import { connectClient, ENTRY, startTunnel, writeConfig } from "./_tunnel.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };
const ROOT = fileURLToPath(new URL("../", import.meta.url));
const log = getLogger(["sentinel-tunnel", "test"]);

/** An output that collects lines, and can be stuck or fail on demand. */
class Collector implements LogOutput {
  text = "";
  /** Writes fail while this is above 0, one per write. */
  failures = 0;
  #stuck: PromiseWithResolvers<void> | undefined;

  stick(): void {
    this.#stuck = Promise.withResolvers();
  }

  release(): void {
    this.#stuck?.resolve();
    this.#stuck = undefined;
  }

  async write(bytes: Uint8Array): Promise<number> {
    await this.#stuck?.promise;
    if (this.failures > 0) {
      this.failures--;
      throw new Deno.errors.BrokenPipe("the reader went away");
    }
    this.text += new TextDecoder().decode(bytes);
    return bytes.length;
  }

  lines(): string[] {
    return this.text.split("\n").filter((line) => line !== "");
  }

  records(): Record<string, unknown>[] {
    return this.lines().map((line) => JSON.parse(line));
  }
}

/** Resolves with `undefined` after `ms`. */
function delay(ms: number): Promise<undefined> {
  return new Promise((resolve) => setTimeout(() => resolve(undefined), ms));
}

/** Polls `probe` every 10 ms until it returns something; throws after `timeoutMs`. */
async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const FORGED = "evil\r\n2026-01-01T00:00:00.000Z error forged\x1b[2J\x07\u0085\u009b\t\x7f";

Deno.test("setupLogging() escapes control characters in text values, so no value forges a line", async () => {
  const out = new Collector();
  await setupLogging({ format: "text", output: out });
  log.warning("Sentinel named master host {host} at {where}", {
    host: FORGED,
    where: { host: FORGED },
  });
  await flushLogs();
  const lines = out.lines();
  assert.equal(lines.length, 1, out.text);
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(lines[0]!, /[\x00-\x1f\x7f-\x9f]/);
  assert.match(
    lines[0]!,
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z warning Sentinel named master host evil\\r\\n2026-01-01T00:00:00\.000Z error forged\\x1b\[2J\\x07\\x85\\x9b\\t\\x7f at \{"host":"evil\\r\\n/,
  );
});

Deno.test("setupLogging() writes JSON lines with the message's values as fields", async () => {
  const out = new Collector();
  await setupLogging({ format: "json", output: out });
  log.warning("Database {database}: {count} clients; {host}", {
    database: "mymaster",
    count: 3,
    host: FORGED,
  });
  await flushLogs();
  assert.equal(out.lines().length, 1, out.text);
  const [record] = out.records();
  assert.match(String(record!["@timestamp"]), /^\d{4}-\d\d-\d\dT[\d:.]+Z$/);
  assert.deepEqual({ ...record, "@timestamp": "" }, {
    "@timestamp": "",
    level: "WARN",
    logger: "sentinel-tunnel.test",
    message: `Database mymaster: 3 clients; ${FORGED}`,
    database: "mymaster",
    count: 3,
    host: FORGED,
  });
});

Deno.test("setupLogging() drops the oldest lines for a stuck reader, counts them, and reports them once it reads again", async () => {
  const out = new Collector();
  out.stick();
  const before = logLinesDropped();
  await setupLogging({ format: "json", output: out, bufferBytes: 1000, flushIntervalMs: 10 });
  for (let i = 0; i < 100; i++) log.info("Line {i}", { i });
  await until("drops counted", () => logLinesDropped() > before || undefined);
  const dropped = logLinesDropped() - before;
  out.release();
  await until("the report", () => out.records().find((r) => /^Dropped/.test(String(r.message))));
  await flushLogs();

  const written = out.records().filter((r) => /^Line \d+$/.test(String(r.message)));
  const reports = out.records().filter((r) => /^Dropped/.test(String(r.message)));
  assert.equal(written.length + dropped, 100, "every line is written or counted");
  // The queue is bounded: the line being written, and 1000 bytes of lines waiting.
  const shortest = Math.min(...out.lines().map((line) => line.length + 1));
  assert.ok(
    (written.length - 1) * shortest <= 1000,
    `${written.length} lines of ${shortest} bytes or more kept for a stuck reader`,
  );
  // The newest lines survive: a reader that comes back sees the present.
  assert.equal(written.at(-1)!.i, 99);
  assert.deepEqual(reports.map((r) => [r.message, r.dropped, r.level]), [[
    `Dropped ${dropped} log lines while the log reader was stuck, too slow, or failing`,
    dropped,
    "WARN",
  ]]);
});

Deno.test("setupLogging() loses only the line whose write failed, and counts it", async () => {
  const out = new Collector();
  const before = logLinesDropped();
  await setupLogging({ format: "json", output: out, flushIntervalMs: 10 });
  out.failures = 1;
  log.info("First");
  await until("the failed write", () => logLinesDropped() > before || undefined);
  log.info("Second");
  await until("the second line", () => out.records().find((r) => r.message === "Second"));
  await until("the report", () => out.records().find((r) => /^Dropped 1 /.test(String(r.message))));
  await flushLogs();
  assert.equal(logLinesDropped() - before, 1);
  assert.deepEqual(out.records().map((r) => r.message).filter((m) => !/^Dropped/.test(String(m))), [
    "Second",
  ]);
});

Deno.test("setupLogging() folds identical lines after 10 repeats, but not lines that differ", async () => {
  const out = new Collector();
  await setupLogging({ format: "json", output: out });
  for (let i = 0; i < 15; i++) log.warning("Sentinel {sentinel} unreachable", { sentinel: "a:1" });
  for (let i = 0; i < 15; i++) log.warning("Rejected client {client}", { client: `c:${i}` });
  await flushLogs();
  const messages = out.records().map((r) => String(r.message));
  assert.equal(messages.filter((m) => m === "Sentinel a:1 unreachable").length, 10);
  assert.equal(messages.filter((m) => m.startsWith("Rejected client")).length, 15);
});

Deno.test("setupLogging() appends to the log file", async () => {
  const file = await Deno.makeTempFile({ prefix: "st-log-" });
  try {
    await Deno.writeTextFile(file, "earlier\n");
    await setupLogging({ format: "text", file });
    log.info("Into the file");
    await flushLogs();
    const lines = (await Deno.readTextFile(file)).split("\n");
    assert.equal(lines[0], "earlier");
    assert.match(lines[1]!, /Z info {4}Into the file$/);
    assert.equal(lines.length, 3);
  } finally {
    await Deno.remove(file);
  }
});

/** The value of an unlabelled metric at `/metrics`; fails after 5 s, as a frozen tunnel would. */
async function metric(admin: string, name: string): Promise<number> {
  const response = await fetch(`${admin}/metrics`, { signal: AbortSignal.timeout(5000) });
  const text = await response.text();
  const match = new RegExp(`^sentinel_tunnel_${name} (\\d+)$`, "m").exec(text);
  assert.ok(match, `no ${name} in /metrics:\n${text}`);
  return Number(match[1]);
}

/**
 * Connects `count` clients to `port`, each sending a PING and leaving without
 * waiting for a reply. A connect that takes over 2 s is given up: a frozen
 * tunnel accepts nobody once its backlog is full. Returns how many connected.
 */
async function flood(port: number, count: number): Promise<number> {
  let connected = 0;
  await Promise.all(Array.from({ length: count }, async () => {
    const connecting = Deno.connect({ hostname: "127.0.0.1", port });
    const conn = await Promise.race([connecting, delay(2000)]);
    if (conn === undefined) {
      connecting.then((late) => late.close(), () => {});
      return;
    }
    using _closed = conn;
    await conn.write(new TextEncoder().encode("PING\r\n"));
    connected++;
  }));
  return connected;
}

/**
 * Databases with unknown names of 8 KB: their lines are long, so the pipe and
 * the queue fill even though floods of rejected clients are logged sparingly.
 */
function longNamedDatabases(): { name: string; port: number }[] {
  return Array.from({ length: 16 }, (_, i) => ({
    name: `no-such-master-${i}-${"x".repeat(8000)}`,
    port: freePort(),
  }));
}

/** Runs a PING on `client`, which fails after its reply timeout; returns the milliseconds taken. */
async function timedPing(client: RedisConnection): Promise<number> {
  const started = performance.now();
  assert.equal(await client.call(["PING"]), "PONG");
  return performance.now() - started;
}

Deno.test(
  "a tunnel whose log reader is stuck drops log lines, counts them, and reports them when it reads again",
  processes,
  async () => {
    await using deployment = await startDeployment({
      masterName: "healthy",
      replicas: 0,
      sentinels: 1,
    });
    const port = freePort();
    const adminPort = freePort();
    const admin = `http://127.0.0.1:${adminPort}`;
    const unknown = longNamedDatabases();
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      databases: [{ name: "healthy", port }, ...unknown],
    }, {
      ports: [port],
      args: ["--admin", `127.0.0.1:${adminPort}`],
      readLogs: false,
    });
    // The lines of the startup alone overfill the pipe.
    using client = await connectClient(port, 5000);
    assert.equal(await client.call(["PING"]), "PONG");
    await waitForPort(adminPort);

    const deadline = Date.now() + 30_000;
    let rejected = 0;
    let pingMs = 0;
    while (await metric(admin, "log_lines_dropped_total") === 0) {
      assert.ok(Date.now() < deadline, `no log line dropped in 30 s, ${rejected} clients rejected`);
      const counts = await Promise.all(unknown.map((d) => flood(d.port, 20)));
      rejected += counts.reduce((a, b) => a + b, 0);
      pingMs = await timedPing(client);
      await delay(100);
    }
    // Once the flood is served, with the pipe still full.
    await delay(200);
    const idleMs = await timedPing(client);
    console.log(
      `PING with a stuck log reader dropping lines: ${
        pingMs.toFixed(1)
      } ms right after ${rejected} rejected clients, ${idleMs.toFixed(1)} ms 200 ms later`,
    );

    tunnel.resumeLogs();
    const report = await tunnel.waitForLog(
      (r) => /^Dropped \d+ log lines while the log reader was stuck/.test(String(r.message)),
      15_000,
    );
    assert.ok(Number(report.dropped) > 0);
    assert.ok(await metric(admin, "log_lines_dropped_total") >= Number(report.dropped));
    assert.equal(await client.call(["PING"]), "PONG");

    // Lines queued at exit are written before it: the last one is there.
    await tunnel.stop();
    assert.ok(tunnel.logs.some((r) => r.message === "Stopped"), "no Stopped line at exit");
  },
);

Deno.test(
  "a tunnel whose log reader is stuck still exits on SIGTERM",
  processes,
  async () => {
    // No Sentinel answers; the lines of the startup fill the pipe and queue more behind it.
    const databases = longNamedDatabases();
    await using tunnel = await startTunnel({
      sentinels: [`127.0.0.1:${freePort()}`],
      databases,
    }, { ports: databases.map((d) => d.port), readLogs: false });
    tunnel.kill("SIGTERM");
    const status = await Promise.race([tunnel.status, delay(10_000)]);
    assert.equal(status?.code, 0, "no exit within 10 s of SIGTERM");
  },
);

Deno.test(
  "sentinel-tunnel <config> <log-file> writes its lines to the file, the last one included",
  processes,
  async () => {
    const file = await Deno.makeTempFile({ prefix: "st-log-" });
    const configPath = await writeConfig({
      sentinels: [`127.0.0.1:${freePort()}`],
      databases: [{ name: "filed", port: freePort() }],
    });
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "-A", ENTRY, "--log-format", "json", configPath, file],
      cwd: ROOT,
      env: { RUST_BACKTRACE: "0", NO_COLOR: "1" },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      await until(
        "the listening line in the log file",
        () => /listening on/.test(Deno.readTextFileSync(file)) || undefined,
        15_000,
      );
      child.kill("SIGTERM");
      const status = await Promise.race([child.status, delay(10_000)]);
      assert.equal(status?.code, 0);
      const messages = (await Deno.readTextFile(file)).trim().split("\n")
        .map((line) => JSON.parse(line).message);
      assert.equal(messages.at(-1), "Stopped");
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await child.status;
      await Deno.remove(file);
      await Deno.remove(configPath);
    }
  },
);
