/**
 * `make demo`: the tunnel's main job on a throwaway local deployment.
 *
 * It starts one master, two replicas and three Sentinels on loopback (the
 * Sentinel ports come from config/demo.jsonc), runs sentinel-tunnel on
 * config/demo.jsonc, sends writes and reads through it with a plain client,
 * freezes the master with SIGSTOP so that Sentinel fails over, and shows the
 * traffic moving to the new master. It ends with a summary and stops every
 * process it started.
 *
 * Flags: `--keep-running` leaves everything up until Ctrl-C;
 * `--failover=stop|kill|sentinel` picks how the failover is forced; `--tls`
 * runs the same show over a TLS-only deployment (`make demo DEMO_ARGS=--tls`):
 * certificates made with openssl in a temp directory, every node and Sentinel
 * on `tls-port` only and asking for client certificates, and the tunnel on
 * config/demo.jsonc plus a `tls` section, its local port still plaintext.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { parse as parseJsonc } from "jsonc-parser";
import { formatAddress } from "../src/shared/address.ts";
import { loadConfig } from "../src/config/mod.ts";
import { RedisConnection } from "../src/control/redis_connection.ts";
import { deploymentTls, temporaryCertificates, type TestCertificates } from "./_certs.ts";
import { startDeployment } from "./_deployment.ts";
import { type Ack, missingKeys, runWriters } from "./_traffic.ts";
import { TUNNEL_UNDER_TEST, tunnelCommand } from "./_tunnel.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const CONFIG = "config/demo.jsonc";

const bold = (text: string) => Deno.stdout.isTerminal() ? `\x1b[1m${text}\x1b[0m` : text;
const elapsed = (since: number) =>
  `${((performance.now() - since) / 1000).toFixed(1).padStart(5)}s`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function portIsFree(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return false;
  } catch {
    return true;
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "keep-running": { type: "boolean", default: false },
      failover: { type: "string", default: "stop" },
      tls: { type: "boolean", default: false },
    },
  });
  const mode = values.failover;
  if (mode !== "stop" && mode !== "kill" && mode !== "sentinel") {
    console.error(`demo: invalid --failover ${JSON.stringify(mode)}: use stop, kill or sentinel`);
    return 2;
  }
  Deno.chdir(ROOT);
  const config = await loadConfig(CONFIG);
  const database = config.databases.find((d) => d.role === "master")!;
  const readPort = config.databases.find((d) => d.role === "replica");
  const sentinelPorts = config.sentinels.map((s) => s.port);
  for (const port of [...sentinelPorts, database.port, ...(readPort ? [readPort.port] : [])]) {
    if (!await portIsFree(port)) {
      console.error(
        `demo: port ${port} (from ${CONFIG}) is already in use; stop whatever holds it (another demo?) and retry`,
      );
      return 1;
    }
  }

  const started = performance.now();
  await using certs = values.tls ? await temporaryCertificates() : undefined;
  console.log(
    bold(
      `Starting a throwaway ${
        certs ? "TLS-only " : ""
      }deployment: 1 master, 2 replicas, 3 Sentinels`,
    ),
  );
  await using deployment = await startDeployment({
    masterName: database.name,
    sentinelPorts,
    downAfterMs: 1000,
    ...(certs ? { tls: deploymentTls(certs) } : {}),
  });
  const master = deployment.nodes[0]!;
  const tlsPort = certs ? " (tls-port)" : "";
  console.log(`  master   ${master.address}${tlsPort}`);
  for (const replica of deployment.nodes.slice(1)) {
    console.log(`  replica  ${replica.address}${tlsPort}`);
  }
  for (const sentinel of deployment.sentinels) {
    console.log(`  sentinel ${sentinel.address}${tlsPort}`);
  }
  console.log(`  files in ${deployment.dir}`);
  const configPath = certs ? await writeTlsConfig(certs) : CONFIG;
  if (certs) console.log(`  certificates in ${certs.dir}`);

  console.log(bold(`\nStarting sentinel-tunnel ${TUNNEL_UNDER_TEST} ${configPath}`));
  const command = tunnelCommand(["--log-format", "text", configPath]);
  const tunnel = new Deno.Command(command.program, {
    args: command.args,
    env: { RUST_BACKTRACE: "0" },
    stdin: "null",
    stdout: "inherit",
    stderr: "piped",
  }).spawn();
  let tunnelExit: Deno.CommandStatus | undefined;
  const tunnelExited = tunnel.status.then((status) => tunnelExit = status);
  /** Throws if the tunnel has exited: the demo fails at once instead of waiting on it. */
  const assertTunnelRuns = (waitingFor: string) => {
    if (tunnelExit !== undefined) {
      throw new Error(
        `sentinel-tunnel exited with code ${tunnelExit.code} while the demo waited for ${waitingFor}`,
      );
    }
  };
  const tunnelLog = (async () => {
    for await (const chunk of tunnel.stderr.pipeThrough(new TextDecoderStream())) {
      for (const line of chunk.split("\n")) if (line.trim()) console.log(`  [tunnel] ${line}`);
    }
  })();
  try {
    const local = formatAddress({ hostname: database.bind, port: database.port });
    for (let i = 0; await portIsFree(database.port); i++) {
      assertTunnelRuns(`it to listen on ${local}`);
      if (i === 300) throw new Error(`sentinel-tunnel did not listen on ${local} within 30 s`);
      await sleep(100);
    }

    console.log(bold(`\nA plain Redis client writes and reads through ${local}`));
    const stopTraffic = new AbortController();
    const acks: Ack[] = [];
    let lastReport = 0;
    const writers = runWriters({
      // A TLS-only node's `port` is 0: its writers ask for `tls-port` instead.
      portParameter: certs ? "tls-port" : "port",
      port: database.port,
      clients: 2,
      pauseMs: 2,
      prefix: "demo",
      signal: stopTraffic.signal,
      onAck: (ack) => acks.push(ack),
      onError: (message) => console.log(`  ${elapsed(started)} client saw: ${message}`),
    });
    // Reads go through the read port when the config has one: they are served by replicas.
    const readEntry = readPort ?? database;
    if (readPort) {
      console.log(bold(`and reads from the replicas through 127.0.0.1:${readPort.port}`));
    }
    let reads = 0;
    let readCuts = 0;
    const readsByNode = new Map<number, number>();
    const reader = (async () => {
      while (!stopTraffic.signal.aborted) {
        try {
          using client = await RedisConnection.open(
            { hostname: "127.0.0.1", port: readEntry.port },
            {
              connectTimeoutMs: 2000,
              replyTimeoutMs: 15_000,
            },
          );
          const parameter = certs ? "tls-port" : "port";
          const node = Number((await client.call(["CONFIG", "GET", parameter]) as string[])[1]);
          while (!stopTraffic.signal.aborted) {
            const last = acks.at(-1);
            if (last) {
              await client.call(["GET", last.key]);
              reads++;
              readsByNode.set(node, (readsByNode.get(node) ?? 0) + 1);
            }
            await sleep(5);
          }
        } catch {
          readCuts++;
          await sleep(10);
        }
      }
    })();
    const report = () => {
      const last = acks.at(-1);
      const rate = acks.length - lastReport;
      lastReport = acks.length;
      console.log(
        `  ${elapsed(started)} writes ${String(acks.length).padStart(6)} (+${rate}), reads ${
          String(reads).padStart(6)
        }, served by ${last ? `127.0.0.1:${last.node}` : "-"}`,
      );
    };
    const ticker = setInterval(report, 1000);

    await sleep(3000);
    await using watch = await deployment.watchSwitch();
    const how = mode === "stop"
      ? "SIGSTOP (frozen: it keeps its connections but answers nothing)"
      : mode === "kill"
      ? "SIGKILL"
      : "SENTINEL FAILOVER";
    console.log(bold(`\nForcing a failover: master ${master.address} gets ${how}`));
    const failoverAt = performance.now();
    if (mode === "stop") master.stop();
    else if (mode === "kill") master.kill("SIGKILL");
    else await deployment.forceFailover();
    const acksBefore = acks.length;
    const { address: newMaster, seenAt } = await watch.next;
    const newPort = Number(newMaster.split(":").pop());
    console.log(bold(
      `\n+switch-master: the new master is ${newMaster} (${
        ((seenAt - failoverAt) / 1000).toFixed(1)
      } s after the ${mode === "sentinel" ? "command" : "signal"})`,
    ));
    const writeDeadline = performance.now() + 30_000;
    while (!acks.some((a) => a.node === newPort && a.at >= seenAt)) {
      assertTunnelRuns(`a write on the new master ${newMaster}`);
      if (performance.now() > writeDeadline) {
        throw new Error(`no write reached the new master ${newMaster} within 30 s of the switch`);
      }
      await sleep(1);
    }
    const firstOnNew = acks.find((a) => a.node === newPort && a.at >= seenAt)!;
    const recoveryMs = Math.max(0, firstOnNew.at - seenAt);
    console.log(
      bold(
        `First write acknowledged by ${newMaster} ${recoveryMs.toFixed(1)} ms after +switch-master`,
      ),
    );
    if (mode === "stop") {
      console.log(bold(`Resuming the old master with SIGCONT: it still believes it is master`));
      master.cont();
    }
    await sleep(3000);
    clearInterval(ticker);
    report();
    stopTraffic.abort();
    await Promise.all([writers, reader]);

    const stale = acks.filter((a) => a.node === master.port && a.at >= seenAt);
    // TLS-only nodes are read through the tunnel, which serves the new master by now.
    const readFrom = certs ? database.port : newPort;
    const lost = await missingKeys(
      readFrom,
      acks.filter((a) => a.at >= seenAt || a.node === newPort).map((a) => a.key),
    );
    const lostBefore = await missingKeys(readFrom, acks.slice(0, acksBefore).map((a) => a.key));
    console.log(bold("\nSummary"));
    console.log(`  writes acknowledged                      ${acks.length}`);
    console.log(
      `  reads answered                           ${reads}${
        readPort
          ? `, by ${
            [...readsByNode].map(([node, count]) =>
              `127.0.0.1:${node}${
                node === master.port || node === newPort ? " (a master)" : ""
              } ${count}`
            ).join(", ")
          }; read connections cut ${readCuts}`
          : ""
      }`,
    );
    console.log(
      `  failover detected by Sentinel after      ${((seenAt - failoverAt) / 1000).toFixed(2)} s`,
    );
    console.log(`  recovery after +switch-master            ${recoveryMs.toFixed(1)} ms`);
    console.log(`  writes acknowledged by the old master    ${stale.length} after the switch`);
    console.log(`  acknowledged writes lost                 ${lost.length + lostBefore.length}`);

    if (values["keep-running"]) {
      console.log(
        bold(`\nStill running: redis-cli -p ${database.port}. Press Ctrl-C to stop everything.`),
      );
      const interrupted = Promise.withResolvers<void>();
      Deno.addSignalListener("SIGINT", interrupted.resolve);
      await interrupted.promise;
    }
    // Writes acknowledged before the failover may be lost by Redis itself (its replication is
    // asynchronous: a SIGKILL takes what no replica had yet); they are counted above, but the demo
    // fails only on what the tunnel answers for: the old master after the switch, and the new one.
    return stale.length === 0 && lost.length === 0 ? 0 : 1;
  } finally {
    try {
      tunnel.kill("SIGTERM");
    } catch { /* already gone */ }
    const status = await tunnelExited;
    await tunnelLog;
    console.log(
      `\nStopped the tunnel (exit ${status.code}) and every Redis process the demo started.`,
    );
  }
}

/** config/demo.jsonc plus TLS to the Sentinels and masters with the test certificates. */
async function writeTlsConfig(certs: TestCertificates): Promise<string> {
  const { $schema: _, ...config } = parseJsonc(await Deno.readTextFile(CONFIG));
  const path = `${certs.dir}/demo-tls.jsonc`;
  const tls = { caFile: certs.caFile, ...certs.client };
  await Deno.writeTextFile(path, JSON.stringify({ ...config, tls }, null, 2) + "\n");
  return path;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (error) {
    console.error(`\ndemo failed: ${error instanceof Error ? error.message : String(error)}`);
    Deno.exit(1);
  }
}
