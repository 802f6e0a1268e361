/**
 * Logs never block the data path: LogTape's non-blocking stream sink, a
 * bounded queue that drops (and counts) lines for a stuck reader, escaped
 * control characters in text, folded repeats, and the log file. Unit tests
 * write to an output of their own; the integration tests run the tunnel with
 * a stderr pipe nobody reads. And what an operator reads: a planned failover
 * as one line per step, in JSON and in text, and an unreachable Sentinel
 * folded to a line every 30 s.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { getLogger } from "@logtape/logtape";
import { flushLogs, logLinesDropped, type LogOutput, setupLogging } from "../src/ops/log.ts";
import type { RedisConnection } from "../src/control/redis_connection.ts";
import { freePort, startDeployment, waitForPort } from "./_deployment.ts";
import { connectClient, startTunnel, tunnelCommand, writeConfig } from "./_tunnel.ts";

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
    const command = tunnelCommand(["--log-format", "json", configPath, file]);
    const child = new Deno.Command(command.program, {
      args: command.args,
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

/** A line of either format as what it says and at which level, its timestamp left out. */
interface Said {
  level: string;
  text: string;
}

function saidInJson(record: Record<string, unknown>): Said {
  return { level: String(record.level).toLowerCase(), text: String(record.message) };
}

/** `2026-12-07T02:36:12.311Z info    Database story: ...` */
function saidInText(line: string): Said {
  const match = /^\S+Z (\w+) +(.*)$/.exec(line);
  assert.ok(match, `not a text log line: ${JSON.stringify(line)}`);
  return { level: match[1]!, text: match[2]! };
}

/**
 * What an operator reads of a planned failover of a name with a master port
 * and a read port: each step once, at info, counts only when not zero, the
 * ports named; the same story in JSON and in text.
 */
function assertFailoverStory(
  format: string,
  said: readonly Said[],
  nodes: { old: string; promoted: string; other: string },
  ports: { master: number; read: number },
): void {
  const all = JSON.stringify(said.map((s) => `${s.level} ${s.text}`), null, 1);
  const texts = said.map((s) => s.text);
  assert.deepEqual(
    said.filter((s) => s.level !== "info"),
    [],
    `${format}: a planned failover is routine, logged at info: ${all}`,
  );
  assert.deepEqual(
    texts.filter((t, i) => texts.indexOf(t) !== i),
    [],
    `${format}: a line repeated: ${all}`,
  );
  assert.deepEqual(texts.filter((t) => /\b0 client|closed 0|\b1 \w+s\b/.test(t)), [], all);
  const once = (pattern: RegExp) =>
    assert.equal(texts.filter((t) => pattern.test(t)).length, 1, `${format}: ${pattern}: ${all}`);
  const q = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  once(
    new RegExp(
      `failover of ${
        q(nodes.old)
      } under way .*: new clients wait for the new master; closed 1 client connection to the old master \\(port ${ports.master}\\)$`,
    ),
  );
  once(
    new RegExp(
      `replica ${
        q(nodes.promoted)
      }: .*being promoted; closed 1 client connection to it \\(port ${ports.read}\\)$`,
    ),
  );
  once(
    new RegExp(
      `master is ${q(nodes.promoted)} \\(was ${
        q(nodes.old)
      }; [\\d.]+ s without a confirmed master\\)`,
    ),
  );
  once(
    new RegExp(
      `replica ${q(nodes.other)} is usable \\(port ${ports.read}; \\d+ bytes behind master ${
        q(nodes.promoted)
      }\\)`,
    ),
  );
  once(
    new RegExp(
      `replica ${q(nodes.old)} is usable \\(port ${ports.read}; \\d+ bytes behind master ${
        q(nodes.promoted)
      }\\)`,
    ),
  );
  assert.equal(texts.filter((t) => /master is .*\(the first master\)/.test(t)).length, 1, all);
  assert.ok(!texts.some((t) => /was none/.test(t)), all);
}

Deno.test(
  "a planned failover of a master port and a read port reads as a story, in JSON and in text: each step once, at info, no count of nothing",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "story", replicas: 2 });
    const [old, promotedOrOther, otherOrPromoted] = deployment.nodes.map((n) => n.address);
    const sentinels = deployment.sentinels.map((s) => s.address);
    const tunnels = [];
    for (const format of ["json", "text"]) {
      const ports = { master: freePort(), read: freePort() };
      const tunnel = await startTunnel({
        sentinels,
        databases: [
          { name: "story", port: ports.master },
          { name: "story", port: ports.read, role: "replica" },
        ],
      }, {
        ports: [ports.master, ports.read],
        args: ["--log-format", format, "--log-level", "info"],
      });
      tunnels.push({ format, ports, tunnel });
    }
    try {
      const clients = [];
      for (const { ports, tunnel } of tunnels) {
        for (const replica of [promotedOrOther, otherOrPromoted]) {
          await tunnel.waitForLog((r) =>
            String(r.message).includes(`replica ${replica} is usable`)
          );
        }
        const writer = await connectClient(ports.master);
        assert.equal(await writer.call(["SET", "story", "1"]), "OK");
        clients.push(writer);
        // A reader on each replica (each new client goes to the one with fewest): whichever
        // Sentinel promotes, one reader is on it.
        for (let i = 0; i < 2; i++) {
          const reader = await connectClient(ports.read);
          assert.equal(await reader.call(["GET", "story"]), "1");
          clients.push(reader);
        }
      }
      await deployment.waitReady();
      await using watch = await deployment.watchSwitch();
      await deployment.forceFailover();
      const promoted = (await watch.next).address;
      const other = promoted === promotedOrOther ? otherOrPromoted! : promotedOrOther!;
      // The story ends when the demoted master serves reads (Sentinel reconfigures it in ~10 s).
      for (const { tunnel } of tunnels) {
        await tunnel.waitForLog(
          (r) =>
            new RegExp(`replica ${old} is usable .* master ${promoted}\\)`).test(String(r.message)),
          30_000,
        );
      }
      for (const client of clients) client.close();

      const [json, text] = tunnels;
      const records = json!.tunnel.logs as Record<string, unknown>[];
      assertFailoverStory(
        "json",
        records.map(saidInJson),
        { old: old!, promoted, other },
        json!.ports,
      );
      const lines = text!.tunnel.logs.map((r) => String(r.message));
      assertFailoverStory(
        "text",
        lines.map(saidInText),
        { old: old!, promoted, other },
        text!.ports,
      );

      // JSON fields a query can use: the port as a number, role master or replica, counts as numbers.
      const listening = records.filter((r) => /listening on/.test(String(r.message)));
      assert.deepEqual(
        listening.map((r) => [r.port, r.role]),
        [[json!.ports.master, "master"], [json!.ports.read, "replica"]],
      );
      for (const record of records) {
        if ("role" in record) assert.match(String(record.role), /^(master|replica)$/);
        if ("port" in record) assert.equal(typeof record.port, "number", JSON.stringify(record));
        if ("clientsClosed" in record) {
          assert.equal(typeof record.clientsClosed, "number", JSON.stringify(record));
        }
      }
      // Every line that closed clients says how many on which port.
      for (const cut of records.filter((r) => Number(r.clientsClosed) > 0)) {
        assert.match(
          String(cut.message),
          new RegExp(
            `closed ${cut.clientsClosed} (read )?client connections? .*\\(port (${
              json!.ports.master
            }|${json!.ports.read})\\)$`,
          ),
        );
      }
    } finally {
      for (const { tunnel } of tunnels) await tunnel[Symbol.asyncDispose]();
    }
  },
);

Deno.test(
  "a Sentinel unreachable for 65 s gives at most 4 lines: the first at once, then one with a count every 30 s",
  processes,
  async () => {
    await using deployment = await startDeployment({ masterName: "quiet", replicas: 0 });
    const unreachable = `127.0.0.1:${freePort()}`;
    const alonePort = freePort();
    const amongPort = freePort();
    // The only Sentinel: every check fails. One of four: checks succeed without it.
    await using alone = await startTunnel({
      sentinels: [unreachable],
      databases: [{ name: "quiet", port: alonePort }],
    }, { ports: [alonePort], args: ["--log-level", "info"] });
    await using among = await startTunnel({
      sentinels: [...deployment.sentinels.map((s) => s.address), unreachable],
      databases: [{ name: "quiet", port: amongPort }],
    }, { ports: [amongPort], args: ["--log-level", "info"] });
    await delay(65_000);

    const naming = (tunnel: typeof alone) =>
      tunnel.logs.filter((r) => JSON.stringify(r).includes(unreachable));
    const aloneLines = naming(alone);
    const messages = JSON.stringify(aloneLines.map((r) => r.message), null, 1);
    assert.ok(aloneLines.length <= 4, messages);
    // Folding keeps its promise: repeats come back, with a count, not never.
    const checks = aloneLines.filter((r) => /check failed/.test(String(r.message)));
    assert.ok(checks.length >= 2, messages);
    for (const later of checks.slice(1)) {
      assert.match(String(later.message), /\(failed \d+ times since the last report\)$/);
    }
    const amongLines = naming(among);
    assert.ok(amongLines.length <= 4, JSON.stringify(amongLines.map((r) => r.message), null, 1));
    assert.ok(among.logs.some((r) => /master is .*\(the first master\)/.test(String(r.message))));
  },
);
