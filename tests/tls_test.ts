/**
 * TLS towards Sentinels and masters, against real TLS-only redis-server and
 * Sentinel processes (`port 0`, `tls-port`, `tls-replication yes`,
 * `tls-auth-clients yes`) with certificates made by openssl: routing through a
 * plaintext and a TLS local port, failovers with the bounds of
 * failover_test.ts, certificate verification failures, `verify: false`, and
 * rotation by SIGHUP.
 *
 * A TLS-only node answers `CONFIG GET port` with 0, so the writers here learn
 * their node from `CONFIG GET tls-port` instead.
 */
import assert from "node:assert/strict";
import { encodeCommand, parseReply, RespErrorReply, type RespValue } from "../src/control/resp.ts";
import { deploymentTls, temporaryCertificates, type TestCertificates } from "./_certs.ts";
import { type Deployment, freePort, type RedisProcess, startDeployment } from "./_deployment.ts";
import { missingKeys } from "./_traffic.ts";
import { masterFrozen, masterKilled } from "./_failover.ts";
import { connectClient, oneCommand, startTunnel, type TunnelProcess } from "./_tunnel.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };

/** How long a client waits for a master in the tests that expect none. */
const CLIENT_WAIT_MS = 2000;

/** What each verification failure must say, in whatever words. */
const UNKNOWN_CA = /unknown (CA|issuer|certificate authority)|UnknownIssuer/i;
const NAME_MISMATCH = /name mismatch|not valid for (the )?name|does not match/i;
const EXPIRED = /expired/i;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function describe(reply: RespValue): string {
  return reply instanceof RespErrorReply ? `-${reply.message}` : JSON.stringify(reply);
}

/** The TLS settings of a tunnel that trusts `caFile` and presents the client certificate. */
function clientTls(certs: TestCertificates, more: Record<string, unknown> = {}) {
  return { caFile: certs.caFile, ...certs.client, ...more };
}

/** A tunnel for the deployment's master on a free port, with `config` merged in. */
async function tunnelFor(
  deployment: Deployment,
  config: Record<string, unknown>,
  options: { clientWaitMs?: number; listenTls?: unknown; waitForMaster?: boolean } = {},
) {
  const port = freePort();
  const tunnel = await startTunnel({
    sentinels: deployment.sentinels.map((s) => s.address),
    timeouts: { clientWaitMs: options.clientWaitMs ?? 10_000 },
    ...config,
    databases: [{
      name: deployment.masterName,
      port,
      ...(options.listenTls === undefined ? {} : { listenTls: options.listenTls }),
    }],
  }, { ports: [port] });
  if (options.waitForMaster ?? true) {
    try {
      await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
    } catch (error) {
      await tunnel[Symbol.asyncDispose]();
      throw error;
    }
  }
  return { port, tunnel };
}

/** `CONFIG GET tls-port` through the tunnel: which node a new client reaches. */
async function servedBy(port: number): Promise<number> {
  const reply = await oneCommand(port, ["CONFIG", "GET", "tls-port"]);
  if (Array.isArray(reply) && reply[0] === "tls-port") return Number(reply[1]);
  throw new Error(`CONFIG GET tls-port answered ${describe(reply)}`);
}

/** Waits until new clients of the tunnel reach `node`. */
async function waitServedBy(port: number, node: number, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = "";
  while (performance.now() < deadline) {
    try {
      const served = await servedBy(port);
      if (served === node) return;
      last = `node ${served}`;
    } catch (error) {
      last = (error as Error).message;
    }
    await sleep(50);
  }
  throw new Error(`New clients did not reach node ${node} within ${timeoutMs} ms: ${last}`);
}

/** One command over a TLS connection, under a 10 s deadline. */
async function tlsCall(conn: Deno.TlsConn, args: readonly string[]): Promise<RespValue> {
  const timer = setTimeout(() => conn.close(), 10_000);
  try {
    const bytes = encodeCommand(args);
    for (let written = 0; written < bytes.length;) {
      written += await conn.write(bytes.subarray(written));
    }
    let buffer = new Uint8Array(0);
    const chunk = new Uint8Array(4096);
    for (;;) {
      const parsed = parseReply(buffer);
      if (parsed) return parsed.value;
      const n = await conn.read(chunk);
      if (n === null) throw new Error(`Connection closed before the reply to ${args[0]}`);
      const next = new Uint8Array(buffer.length + n);
      next.set(buffer);
      next.set(chunk.subarray(0, n), buffer.length);
      buffer = next;
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A new client of the tunnel writes `key`: no master may be verified, so the
 * reply must be the tunnel's error, and it is returned. A reply from Redis
 * fails the test.
 */
async function refusedWrite(port: number, key: string): Promise<string> {
  using client = await connectClient(port, CLIENT_WAIT_MS + 10_000);
  const reply = await client.call(["SET", key, "1"]);
  assert.ok(
    reply instanceof RespErrorReply,
    `SET through the tunnel answered ${describe(reply)}, not the tunnel's error`,
  );
  assert.match(reply.message, /^ERR sentinel-tunnel: /);
  return reply.message;
}

/**
 * A new client's write `key` is refused with an error that names the node,
 * the name checked (in double quotes, apart from the address) and the reason,
 * and a log line says the same.
 */
async function assertRefused(
  tunnel: TunnelProcess,
  port: number,
  node: RedisProcess,
  failure: { name: string; reason: RegExp; key: string },
): Promise<void> {
  const address = `127.0.0.1:${node.port}`;
  const says = (text: string) =>
    text.includes(address) && text.includes(`"${failure.name}"`) && failure.reason.test(text);
  const error = await refusedWrite(port, failure.key);
  assert.ok(
    says(error),
    `The client's error should name ${address}, "${failure.name}" and ${failure.reason}: ${error}`,
  );
  try {
    await tunnel.waitForLog((r) => says(Object.values(r).map(String).join(" ")), 5000);
  } catch (error) {
    const lines = tunnel.logs.filter((r) => JSON.stringify(r).includes(address))
      .map((r) => JSON.stringify(r));
    throw new Error(
      `No log line names ${address}, "${failure.name}" and ${failure.reason}; those naming ${address}:\n${
        lines.join("\n")
      }`,
      { cause: error },
    );
  }
}

/** Had any byte of a refused client reached `node`, its key would be there. */
async function assertNotWritten(deployment: Deployment, node: RedisProcess, key: string) {
  assert.equal(await deployment.cli(node, "EXISTS", key), "0", `"${key}" reached ${node.address}`);
}

Deno.test(
  "over a TLS-only deployment, the tunnel routes verified clients and refuses unverified nodes",
  processes,
  async (t) => {
    await using certs = await temporaryCertificates();
    await using deployment = await startDeployment({
      masterName: "tls-basic",
      replicas: 1,
      sentinels: 1,
      tls: deploymentTls(certs),
    });
    const master = deployment.nodes[0]!;
    // The Sentinels are always checked with the right CA here: only the master is wrong.
    const sentinelTls = clientTls(certs);

    await t.step("a plain client reads and writes through the plaintext port", async () => {
      const { port, tunnel } = await tunnelFor(deployment, { tls: clientTls(certs) });
      await using _tunnel = tunnel;
      using client = await connectClient(port);
      assert.deepEqual(await client.call(["CONFIG", "GET", "tls-port"]), [
        "tls-port",
        String(master.port),
      ]);
      assert.equal(await client.call(["SET", "tls:plain", "through"]), "OK");
      assert.equal(await deployment.cli(master, "GET", "tls:plain"), "through");
      await deployment.cli(master, "SET", "tls:direct", "set directly");
      assert.equal(await client.call(["GET", "tls:direct"]), "set directly");

      // A client that half-closes gets every reply, also one the TLS master sends 300 ms later.
      const raw = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        const slow = "local s = redis.call('TIME') local t = s while (t[1] - s[1]) * 1000000 + " +
          "(t[2] - s[2]) < 300000 do t = redis.call('TIME') end return 1";
        await raw.write(encodeCommand(["EVAL", slow, "0"]));
        await raw.write(encodeCommand(["GET", "tls:direct"]));
        await raw.closeWrite();
        let replies = "";
        const buffer = new Uint8Array(1024);
        for (let n = await raw.read(buffer); n !== null; n = await raw.read(buffer)) {
          replies += new TextDecoder().decode(buffer.subarray(0, n));
        }
        assert.equal(replies, ":1\r\n$12\r\nset directly\r\n");
      } finally {
        raw.close();
      }
    });

    await t.step("a TLS client reaches the master through listenTls", async () => {
      const { port, tunnel } = await tunnelFor(deployment, { tls: clientTls(certs) }, {
        listenTls: { ...certs.server },
      });
      await using _tunnel = tunnel;
      await deployment.cli(master, "SET", "tls:listen", "over TLS");
      const conn = await Deno.connectTls({
        hostname: "127.0.0.1",
        port,
        caCerts: [await Deno.readTextFile(certs.caFile)],
      });
      try {
        assert.equal(await tlsCall(conn, ["PING"]), "PONG");
        assert.equal(await tlsCall(conn, ["GET", "tls:listen"]), "over TLS");
        assert.deepEqual(await tlsCall(conn, ["CONFIG", "GET", "tls-port"]), [
          "tls-port",
          String(master.port),
        ]);
      } finally {
        conn.close();
      }
    });

    await t.step("a master signed by a CA the tunnel does not trust: unknown CA", async () => {
      const { port, tunnel } = await tunnelFor(deployment, {
        sentinelTls,
        tls: { caFile: certs.otherCaFile, ...certs.client },
      }, { clientWaitMs: CLIENT_WAIT_MS, waitForMaster: false });
      await using _tunnel = tunnel;
      const key = "tls:probe:unknown-ca";
      await assertRefused(tunnel, port, master, { name: "127.0.0.1", reason: UNKNOWN_CA, key });
      await assertNotWritten(deployment, master, key);
    });

    await t.step("a serverName the certificate lacks: name mismatch", async () => {
      const { port, tunnel } = await tunnelFor(deployment, {
        sentinelTls,
        tls: clientTls(certs, { serverName: "other.test" }),
      }, { clientWaitMs: CLIENT_WAIT_MS, waitForMaster: false });
      await using _tunnel = tunnel;
      const key = "tls:probe:server-name";
      await assertRefused(tunnel, port, master, { name: "other.test", reason: NAME_MISMATCH, key });
      await assertNotWritten(deployment, master, key);
    });

    await t.step("a master certificate for other.test: name mismatch on 127.0.0.1", async () => {
      const key = "tls:probe:other-name";
      await deployment.setCertificate(master, certs.otherName);
      try {
        const { port, tunnel } = await tunnelFor(deployment, {
          sentinelTls,
          tls: clientTls(certs),
        }, { clientWaitMs: CLIENT_WAIT_MS, waitForMaster: false });
        await using _tunnel = tunnel;
        await assertRefused(tunnel, port, master, {
          name: "127.0.0.1",
          reason: NAME_MISMATCH,
          key,
        });
      } finally {
        await deployment.setCertificate(master, certs.server);
      }
      await assertNotWritten(deployment, master, key);
    });

    await t.step("with serverName other.test, that certificate is accepted", async () => {
      await deployment.setCertificate(master, certs.otherName);
      try {
        const { port, tunnel } = await tunnelFor(deployment, {
          sentinelTls,
          tls: clientTls(certs, { serverName: "other.test" }),
        });
        await using _tunnel = tunnel;
        assert.equal(await oneCommand(port, ["SET", "tls:server-name", "ok"]), "OK");
        assert.equal(await deployment.cli(master, "GET", "tls:server-name"), "ok");
      } finally {
        await deployment.setCertificate(master, certs.server);
      }
    });

    await t.step("an expired master certificate: expired", async () => {
      // Sentinel's and the replica's links to the master were made before: they keep working.
      const key = "tls:probe:expired";
      await deployment.setCertificate(master, certs.expired);
      try {
        const { port, tunnel } = await tunnelFor(deployment, {
          sentinelTls,
          tls: clientTls(certs),
        }, { clientWaitMs: CLIENT_WAIT_MS, waitForMaster: false });
        await using _tunnel = tunnel;
        await assertRefused(tunnel, port, master, { name: "127.0.0.1", reason: EXPIRED, key });
      } finally {
        await deployment.setCertificate(master, certs.server);
      }
      // Checked once the node serves a valid certificate again: redis-cli refuses an expired one.
      await assertNotWritten(deployment, master, key);
    });

    await t.step("verify false: an untrusted master is used, with a warning", async () => {
      // No caFile: neither the Sentinel's nor the master's certificate chains to a trusted root.
      const { port, tunnel } = await tunnelFor(deployment, {
        tls: { ...certs.client, verify: false },
      });
      await using _tunnel = tunnel;
      assert.equal(await oneCommand(port, ["SET", "tls:unverified", "ok"]), "OK");
      assert.equal(await deployment.cli(master, "GET", "tls:unverified"), "ok");
      const isVerifyWarning = (r: Record<string, unknown>) =>
        /^warn/i.test(String(r.level)) && /verify is false/.test(String(r.message));
      await tunnel.waitForLog(isVerifyWarning);
      // Every reload says it again.
      const before = tunnel.logs.filter(isVerifyWarning).length;
      tunnel.kill("SIGHUP");
      await tunnel.waitForLog((r) => /^Reloaded /.test(String(r.message)));
      await tunnel.waitForLog(() => tunnel.logs.filter(isVerifyWarning).length > before);
    });
  },
);

/** The nodes speak TLS only: keys are read back through the tunnel, once it serves `newPort`. */
function missingThroughTunnel(port: number) {
  return async (newPort: number, keys: readonly string[]) => {
    await waitServedBy(port, newPort);
    return await missingKeys(port, keys);
  };
}

Deno.test(
  "over TLS, after SIGKILL of the master, clients reach the new master within 1 s of +switch-master",
  processes,
  async () => {
    await using certs = await temporaryCertificates();
    await using deployment = await startDeployment({
      masterName: "tls-killed",
      tls: deploymentTls(certs),
    });
    const { port, tunnel } = await tunnelFor(deployment, { tls: clientTls(certs) });
    await using _tunnel = tunnel;
    await masterKilled(deployment, {
      port,
      label: "TLS ",
      portParameter: "tls-port",
      missingOnNewMaster: missingThroughTunnel(port),
    });
  },
);

Deno.test(
  "over TLS, after SIGSTOP of the master and SIGCONT after the switch, the old master acknowledges no write",
  processes,
  async () => {
    await using certs = await temporaryCertificates();
    await using deployment = await startDeployment({
      masterName: "tls-frozen",
      tls: deploymentTls(certs),
    });
    const { port, tunnel } = await tunnelFor(deployment, { tls: clientTls(certs) });
    await using _tunnel = tunnel;
    await masterFrozen(deployment, {
      port,
      label: "TLS ",
      portParameter: "tls-port",
      missingOnNewMaster: missingThroughTunnel(port),
    });
  },
);

Deno.test(
  "SIGHUP re-reads rotated certificate files: open tunnels stay, new clients use the new files",
  processes,
  async () => {
    await using certs = await temporaryCertificates();
    // The nodes and the Sentinel trust both CAs; the nodes serve CA-1 certificates to begin with.
    await using deployment = await startDeployment({
      masterName: "tls-rotated",
      replicas: 1,
      sentinels: 1,
      tls: deploymentTls(certs, certs.bothCaFile),
    });
    const master = deployment.nodes[0]!;
    // The files the tunnel reads for the master; the Sentinel keeps its CA-1 certificate.
    const files = {
      caFile: `${certs.dir}/tunnel-ca.crt`,
      certFile: `${certs.dir}/tunnel-client.crt`,
      keyFile: `${certs.dir}/tunnel-client.key`,
    };
    const install = async (ca: string, client: { certFile: string; keyFile: string }) => {
      await Deno.copyFile(ca, files.caFile);
      await Deno.copyFile(client.certFile, files.certFile);
      await Deno.copyFile(client.keyFile, files.keyFile);
    };
    await install(certs.caFile, certs.client);
    const { port, tunnel } = await tunnelFor(deployment, {
      sentinelTls: clientTls(certs),
      tls: files,
      // Each new client dials here: a ready connection made before the rotation would still work.
      preconnect: 0,
    }, { clientWaitMs: CLIENT_WAIT_MS });
    await using _tunnel = tunnel;

    using before = await connectClient(port);
    assert.equal(await before.call(["SET", "rotation:before", "1"]), "OK");

    // Every node now serves a rotation-CA certificate and trusts rotation-CA clients only.
    // The links already made (Sentinel, replication, the tunnel's) keep their sessions.
    for (const node of deployment.nodes) {
      await deployment.setCertificate(node, {
        ...certs.rotationServer,
        caFile: certs.rotationCaFile,
      });
    }
    const error = await refusedWrite(port, "rotation:refused");
    assert.match(error, UNKNOWN_CA);
    assert.ok(error.includes(`127.0.0.1:${master.port}`), error);
    assert.equal(await before.call(["GET", "rotation:before"]), "1");

    await install(certs.rotationCaFile, certs.rotationClient);
    tunnel.kill("SIGHUP");
    // A new client connects once the files are read again: its certificate is the new one too,
    // since the nodes no longer accept the old one.
    const deadline = performance.now() + 15_000;
    let got = "nothing yet";
    while (got !== "1" && performance.now() < deadline) {
      try {
        const reply = await oneCommand(port, ["GET", "rotation:before"], CLIENT_WAIT_MS + 5000);
        got = typeof reply === "string" ? reply : describe(reply);
      } catch (error) {
        got = (error as Error).message;
      }
      if (got !== "1") await sleep(100);
    }
    assert.equal(got, "1", "a new client after SIGHUP");
    assert.deepEqual(await oneCommand(port, ["CONFIG", "GET", "tls-port"]), [
      "tls-port",
      String(master.port),
    ]);
    // The tunnel made before the rotation is still open and still served.
    assert.equal(await before.call(["SET", "rotation:after", "2"]), "OK");
    assert.equal(await oneCommand(port, ["GET", "rotation:after"]), "2");
    assert.equal(await oneCommand(port, ["EXISTS", "rotation:refused"]), 0);
  },
);
