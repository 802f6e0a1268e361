/**
 * Bounds of the TLS paths, from a hostile review of the first TLS version
 * (Deno 2.9.6's node:tls on its own socket), each of which failed then:
 *
 * 1. A reader that falls behind holds the peer back by TCP, and still sees
 *    the peer's end: no unbounded buffering, no tunnel that never ends.
 * 2. The same end to end: a slow client of a tunnel with TLS to its master,
 *    and a client of a listenTls port that sends while it waits for a master.
 * 3. A client key that does not fit its certificate is refused at start and
 *    on reload, naming the files, instead of failing every connect.
 * 4. Key text given where a key path belongs is never quoted.
 * 5. QUIT after a large reply through a TLS master closes the client.
 */
import assert from "node:assert/strict";
import { connectTo } from "../src/shared/connect.ts";
import { acceptTls } from "../src/shared/tls_stream.ts";
import { deploymentTls, temporaryCertificates } from "./_certs.ts";
import { freePort, startDeployment } from "./_deployment.ts";
import { oneCommand, runCli, startTunnel, writeConfig } from "./_tunnel.ts";
import { configFromEnvironment } from "../src/config/mod.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };
const MiB = 2 ** 20;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs `sh -c script` (the tests may read /proc only through a subprocess). */
function sh(script: string): string {
  const output = new Deno.Command("sh", { args: ["-c", script], stdout: "piped" }).outputSync();
  return new TextDecoder().decode(output.stdout).trim();
}

/** Resident memory of a process, in MiB. */
function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(sh(`cat /proc/${pid}/status`))![1]) / 1024;
}

Deno.test(
  "TlsStream sees the peer's EOF after a pause (both sides)",
  processes,
  async (t) => {
    await using certs = await temporaryCertificates();
    const serverTls = {
      certFile: certs.server.certFile,
      keyFile: certs.server.keyFile,
      cert: await Deno.readTextFile(certs.server.certFile),
      key: await Deno.readTextFile(certs.server.keyFile),
    };
    const ca = await Deno.readTextFile(certs.caFile);
    for (const direction of ["server to client", "client to server"] as const) {
      await t.step(`${direction}: 1 MiB, a half-close, the reader 1 s late`, async () => {
        using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
        const stop = new AbortController();
        const [client, server] = await Promise.all([
          connectTo({ hostname: "127.0.0.1", port: listener.addr.port }, {
            timeoutMs: 2000,
            tls: { ca, verify: true },
          }),
          listener.accept().then((conn) => acceptTls(conn, serverTls, 5000, stop.signal)),
        ]);
        const [writer, reader] = direction === "server to client"
          ? [server, client]
          : [client, server];
        try {
          const chunk = new Uint8Array(64 * 1024);
          for (let i = 0; i < 16; i++) await writer.write(chunk);
          await writer.closeWrite();
          // The reader is busy elsewhere (its tunnel's other side is slow): the stream pauses.
          await sleep(1000);
          const buffer = new Uint8Array(16 * 1024);
          let total = 0;
          const eof = (async () => {
            for (let n = await reader.read(buffer); n !== null; n = await reader.read(buffer)) {
              total += n;
            }
            return "EOF";
          })();
          const outcome = await Promise.race([eof, sleep(5000).then(() => "no EOF")]);
          assert.equal(
            outcome,
            "EOF",
            `read ${total} of ${
              16 * 64 * 1024
            } bytes, then read() waited for good although the peer half-closed`,
          );
        } finally {
          client.close();
          server.close();
        }
      });
    }
  },
);

/** Memory a tunnel gains while one client asks for 16 x 32 MiB and reads nothing. */
async function slowClientGrowth(tls: boolean): Promise<number> {
  await using certs = await temporaryCertificates();
  await using deployment = await startDeployment({
    replicas: 0,
    sentinels: 1,
    ...(tls ? { tls: deploymentTls(certs) } : {}),
  });
  await deployment.cli(deployment.nodes[0]!, "SETRANGE", "big", String(32 * MiB - 1), "x");
  const port = freePort();
  await using tunnel = await startTunnel({
    sentinels: deployment.sentinels.map((s) => s.address),
    ...(tls ? { tls: { caFile: certs.caFile, ...certs.client } } : {}),
    databases: [{ name: deployment.masterName, port }],
  }, { ports: [port] });
  await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
  const before = rssMiB(tunnel.pid);
  // A slow consumer, or a stalled one.
  using client = await Deno.connect({ hostname: "127.0.0.1", port });
  await client.write(new TextEncoder().encode("GET big\r\n".repeat(16)));
  await sleep(6000);
  return rssMiB(tunnel.pid) - before;
}

Deno.test(
  "(control) plain TCP to the master stays bounded",
  processes,
  async () => {
    const grown = await slowClientGrowth(false);
    assert.ok(grown < 128, `grew by ${grown.toFixed(0)} MiB`);
  },
);

Deno.test(
  "a slow client of a TLS master keeps the tunnel's memory bounded",
  processes,
  async () => {
    const grown = await slowClientGrowth(true);
    assert.ok(
      grown < 128,
      `the tunnel's resident memory grew by ${
        grown.toFixed(0)
      } MiB for one client that reads nothing`,
    );
  },
);

Deno.test(
  "a client on a listenTls port cannot make the tunnel buffer without bound",
  processes,
  async () => {
    await using certs = await temporaryCertificates();
    const port = freePort();
    // No Sentinel answers: every client waits clientWaitMs for a master, as during an outage.
    await using tunnel = await startTunnel({
      sentinels: [`127.0.0.1:${freePort()}`],
      listenTls: certs.server,
      timeouts: { clientWaitMs: 20_000 },
      databases: [{ name: "mymaster", port }],
    }, { ports: [port] });
    const before = rssMiB(tunnel.pid);
    // The tunnel's own TLS client: its writes wait for the peer (Deno.TlsConn's do not).
    const client = await connectTo({ hostname: "127.0.0.1", port }, {
      timeoutMs: 2000,
      tls: { ca: await Deno.readTextFile(certs.caFile), verify: true },
    });
    try {
      const chunk = new Uint8Array(MiB);
      const deadline = performance.now() + 6000;
      let sent = 0;
      while (performance.now() < deadline && sent < 1024) {
        const wrote = await Promise.race([client.write(chunk), sleep(1000).then(() => -1)]);
        if (wrote === -1) break; // the tunnel pushes back, as it should
        sent++;
      }
      await sleep(500);
      const grown = rssMiB(tunnel.pid) - before;
      assert.ok(
        grown < 128,
        `the tunnel took ${sent} MiB from an unauthenticated client it had no master for; its memory grew by ${
          grown.toFixed(0)
        } MiB`,
      );
    } finally {
      client.close();
    }
  },
);

Deno.test(
  "a client key that does not fit its certificate stops the start, naming the files",
  processes,
  async () => {
    await using certs = await temporaryCertificates();
    // An operator's slip during a rotation: the new certificate with the old key.
    const configPath = await writeConfig({
      sentinels: ["127.0.0.1:1"],
      tls: { caFile: certs.caFile, certFile: certs.client.certFile, keyFile: certs.server.keyFile },
      databases: [{ name: "mymaster", port: freePort() }],
    });
    const { code, stderr } = await runCli([configPath]);
    assert.equal(code, 1, stderr);
    assert.match(stderr, /TLS client certificate for the Sentinels cannot be used/);
    assert.ok(
      stderr.includes(certs.client.certFile) && stderr.includes(certs.server.keyFile),
      stderr,
    );
    const key = await Deno.readTextFile(certs.server.keyFile);
    assert.ok(!stderr.includes(key.split("\n")[1]!), "no key text");
  },
);

/** A client sends GET of 32 MiB and QUIT, reads nothing for 1.5 s, then everything: EOF or not. */
async function quitAfterLargeReply(tls: boolean): Promise<void> {
  await using certs = await temporaryCertificates();
  await using deployment = await startDeployment({
    replicas: 0,
    sentinels: 1,
    ...(tls ? { tls: deploymentTls(certs) } : {}),
  });
  await deployment.cli(deployment.nodes[0]!, "SETRANGE", "big", String(32 * MiB - 1), "x");
  const port = freePort();
  await using tunnel = await startTunnel({
    sentinels: deployment.sentinels.map((s) => s.address),
    ...(tls ? { tls: { caFile: certs.caFile, ...certs.client } } : {}),
    databases: [{ name: deployment.masterName, port }],
  }, { ports: [port] });
  await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
  using client = await Deno.connect({ hostname: "127.0.0.1", port });
  // Redis answers both, then closes the connection.
  await client.write(new TextEncoder().encode("GET big\r\nQUIT\r\n"));
  // The client is slow for a moment: the tunnel's upstream stream pauses, and Redis's FIN
  // arrives meanwhile.
  await sleep(1500);
  const buffer = new Uint8Array(64 * 1024);
  const expected = 32 * MiB + 13 + 5; // $33554432\r\n...\r\n then +OK\r\n
  let total = 0;
  const deadline = sleep(10_000).then(() => -1);
  while (total < expected) {
    const n = await Promise.race([client.read(buffer), deadline]);
    assert.ok(n !== -1, `only ${total} of ${expected} bytes in 10 s`);
    total += n ?? Infinity;
  }
  assert.equal(total, expected);
  const outcome = await Promise.race([
    client.read(buffer).then((n) => n === null ? "EOF" : `${n} more bytes`, () => "reset"),
    sleep(5000).then(() => "nothing"),
  ]);
  assert.equal(
    outcome,
    "EOF",
    "Redis closed the connection after +OK, but 5 s later the tunnel still holds the client open (and its maxClients slot, for good with clientIdleMs 0)",
  );
}

Deno.test(
  "(control) QUIT after a large reply over plain TCP",
  processes,
  () => quitAfterLargeReply(false),
);

Deno.test(
  "QUIT after a large reply through a TLS master closes the client",
  processes,
  () => quitAfterLargeReply(true),
);

Deno.test("key text given where a key path belongs is not echoed", async () => {
  await using certs = await temporaryCertificates();
  const key = await Deno.readTextFile(certs.client.keyFile);
  const body = key.split("\n")[1]!; // a line of the secret itself
  let message = "";
  try {
    // A container whose secret holds the key itself, mapped to the variable for its path.
    configFromEnvironment({
      SENTINEL_TUNNEL_SENTINELS: "127.0.0.1:26379",
      SENTINEL_TUNNEL_DATABASES: "mymaster:6380",
      SENTINEL_TUNNEL_TLS_CERT_FILE: certs.client.certFile,
      SENTINEL_TUNNEL_TLS_KEY_FILE: key,
    });
  } catch (error) {
    message = (error as Error).message;
  }
  assert.ok(message !== "", "the config was accepted");
  assert.ok(!message.includes(body), `the error quotes the private key:\n${message}`);
});

Deno.test(
  "SIGHUP with a client key that does not fit its certificate is refused",
  processes,
  async () => {
    await using certs = await temporaryCertificates();
    await using deployment = await startDeployment({
      replicas: 0,
      sentinels: 1,
      tls: deploymentTls(certs),
    });
    const port = freePort();
    const config = {
      sentinels: deployment.sentinels.map((s) => s.address),
      tls: { caFile: certs.caFile, ...certs.client },
      timeouts: { clientWaitMs: 2000 },
      databases: [{ name: deployment.masterName, port }],
    };
    await using tunnel = await startTunnel(config, { ports: [port] });
    await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
    // A rotation slip: the new certificate is in place, the key is still the old one.
    await Deno.writeTextFile(
      tunnel.configPath,
      JSON.stringify({ ...config, tls: { ...config.tls, keyFile: certs.server.keyFile } }),
    );
    tunnel.kill("SIGHUP");
    const outcome = await tunnel.waitForLog((r) => /^Reload/.test(String(r.message)));
    await sleep(3000);
    let reply: unknown;
    try {
      reply = await oneCommand(port, ["PING"]);
    } catch (error) {
      reply = (error as Error).message;
    }
    assert.match(
      String(outcome.message),
      /refused/,
      `the reload was taken (${outcome.message}); a new client then gets: ${
        reply instanceof Error ? reply.message : JSON.stringify(reply)
      }`,
    );
  },
);
