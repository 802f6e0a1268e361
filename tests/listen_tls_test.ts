/**
 * `listenTls`: the tunnel's own port speaking TLS, against a real deployment.
 * A client that never finishes its handshake is closed at `clientWaitMs`, and
 * a reload with new certificate files serves them to new clients while open
 * tunnels go on.
 */
import assert from "node:assert/strict";
import { freePort, startDeployment } from "./_deployment.ts";
import { makeCertificates } from "./_certs.ts";
import { startTunnel } from "./_tunnel.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };
const encoder = new TextEncoder();
/** A command Redis answers 300 ms later without blocking the client (a blocked one is dropped at EOF). */
const SLOW_SCRIPT = [
  "EVAL",
  "local s = redis.call('TIME') local t = s " +
  "while (t[1] - s[1]) * 1000000 + (t[2] - s[2]) < 300000 do t = redis.call('TIME') end return 1",
  "0",
].map((arg) => `$${encoder.encode(arg).length}\r\n${arg}\r\n`).reduce(
  (command, arg) => command + arg,
  "*3\r\n",
);
const decoder = new TextDecoder();

async function command(conn: Deno.Conn, line: string): Promise<string> {
  await conn.write(encoder.encode(`${line}\r\n`));
  const buffer = new Uint8Array(256);
  const n = await conn.read(buffer);
  return n === null ? "EOF" : decoder.decode(buffer.subarray(0, n));
}

async function tlsClient(port: number, caFile: string): Promise<Deno.TlsConn> {
  const conn = await Deno.connectTls({
    hostname: "127.0.0.1",
    port,
    caCerts: [await Deno.readTextFile(caFile)],
  });
  await conn.handshake();
  return conn;
}

Deno.test(
  "listenTls: TLS clients, the handshake deadline, and new files on SIGHUP",
  processes,
  async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "listen-tls-test-" });
    try {
      const certs = await makeCertificates(dir);
      // The files the tunnel serves: copies, so that the test can rotate them in place.
      const certFile = `${dir}/listen.crt`;
      const keyFile = `${dir}/listen.key`;
      await Deno.copyFile(certs.server.certFile, certFile);
      await Deno.copyFile(certs.server.keyFile, keyFile);
      await using deployment = await startDeployment({ replicas: 0, sentinels: 1 });
      const port = freePort();
      await using tunnel = await startTunnel({
        sentinels: deployment.sentinels.map((s) => s.address),
        listenTls: { certFile, keyFile },
        timeouts: { clientWaitMs: 1000 },
        databases: [{ name: deployment.masterName, port }],
      }, { ports: [port] });
      await tunnel.waitForLog((r) => /master is/.test(String(r.message)));

      const first = await tlsClient(port, certs.caFile);
      await t.step("a TLS client reaches the master", async () => {
        assert.equal(await command(first, "SET listen-tls yes"), "+OK\r\n");
        assert.equal(await command(first, "GET listen-tls"), "$3\r\nyes\r\n");
        assert.equal(
          await deployment.cli(deployment.nodes[0]!, "GET", "listen-tls"),
          "yes",
          "the write reached the master",
        );
      });

      await t.step("a TLS client that half-closes still gets every reply", async () => {
        const client = await tlsClient(port, certs.caFile);
        try {
          const commands = Array.from({ length: 200 }, (_, i) => `SET half:${i} ${i}\r\n`).join("");
          await client.write(encoder.encode(`${commands}${SLOW_SCRIPT}GET half:199\r\n`));
          await client.closeWrite();
          let replies = "";
          const buffer = new Uint8Array(4096);
          for (let n = await client.read(buffer); n !== null; n = await client.read(buffer)) {
            replies += decoder.decode(buffer.subarray(0, n));
          }
          // The script answers well after the half-close arrived: its reply and the next still come back.
          assert.equal(replies, `${"+OK\r\n".repeat(200)}:1\r\n$3\r\n199\r\n`);
        } finally {
          client.close();
        }
      });

      await t.step("a client that never starts TLS is closed at clientWaitMs", async () => {
        const silent = await Deno.connect({ hostname: "127.0.0.1", port });
        try {
          const started = performance.now();
          let timer: ReturnType<typeof setTimeout> | undefined;
          const n = await Promise.race([
            silent.read(new Uint8Array(16)).catch(() => null),
            new Promise<string>((resolve) => timer = setTimeout(() => resolve("open"), 10_000)),
          ]);
          clearTimeout(timer);
          assert.equal(n, null, "the port closed the connection");
          assert.ok(performance.now() - started >= 900, "not before the deadline");
          await tunnel.waitForLog((r) => /no TLS handshake within 1000 ms/.test(String(r.message)));
        } finally {
          silent.close();
        }
      });

      await t.step("a plaintext client on the TLS port is refused, not tunnelled", async () => {
        const plain = await Deno.connect({ hostname: "127.0.0.1", port });
        try {
          await plain.write(encoder.encode("SET plain-on-tls yes\r\n"));
          const buffer = new Uint8Array(256);
          const n = await plain.read(buffer).catch(() => null);
          assert.ok(n === null || !decoder.decode(buffer.subarray(0, n)).includes("+OK"));
          await tunnel.waitForLog((r) => /TLS handshake/.test(String(r.message)));
          assert.equal(await deployment.cli(deployment.nodes[0]!, "EXISTS", "plain-on-tls"), "0");
        } finally {
          plain.close();
        }
      });

      await t.step(
        "SIGHUP with new files: new clients get them, the open tunnel goes on",
        async () => {
          await Deno.copyFile(certs.rotationServer.certFile, certFile);
          await Deno.copyFile(certs.rotationServer.keyFile, keyFile);
          tunnel.kill("SIGHUP");
          await tunnel.waitForLog((r) => /^Reloaded /.test(String(r.message)));
          const rotated = await tlsClient(port, certs.rotationCaFile);
          assert.equal(await command(rotated, "PING"), "+PONG\r\n");
          rotated.close();
          await assert.rejects(
            tlsClient(port, certs.caFile),
            /UnknownIssuer|invalid peer certificate/,
          );
          assert.equal(await command(first, "GET listen-tls"), "$3\r\nyes\r\n", "kept");
        },
      );
      await t.step("SIGHUP with a key that does not fit is refused, the port goes on", async () => {
        await Deno.copyFile(certs.client.keyFile, keyFile);
        tunnel.kill("SIGHUP");
        await tunnel.waitForLog((r) =>
          /Reload refused/.test(String(r.message)) && String(r.error).includes(keyFile)
        );
        const rotated = await tlsClient(port, certs.rotationCaFile);
        assert.equal(await command(rotated, "PING"), "+PONG\r\n");
        rotated.close();
      });
      first.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
