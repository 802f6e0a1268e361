/**
 * connectTo() against real TLS Redis processes: what is verified, what each
 * failure says, and how a host name's addresses are tried.
 */
import assert from "node:assert/strict";
import { ConnectError, connectTo } from "../src/shared/connect.ts";
import type { TlsClientSettings } from "../src/shared/settings.ts";
import { makeCertificates, type TestCertificates } from "./_certs.ts";

const text = (path: string) => Deno.readTextFileSync(path);

function tlsSettings(
  certs: TestCertificates,
  overrides: Partial<TlsClientSettings> = {},
): TlsClientSettings {
  return {
    caFile: certs.caFile,
    ca: text(certs.caFile),
    certFile: certs.client.certFile,
    cert: text(certs.client.certFile),
    keyFile: certs.client.keyFile,
    key: text(certs.client.keyFile),
    verify: true,
    ...overrides,
  };
}

async function freePort(): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return await Promise.resolve(port);
}

/** A TLS-only redis-server on 127.0.0.1 serving `server`; killed on dispose. */
async function startTlsRedis(
  certs: TestCertificates,
  server: { certFile: string; keyFile: string },
  authClients: boolean,
): Promise<{ port: number } & AsyncDisposable> {
  const port = await freePort();
  const child = new Deno.Command("redis-server", {
    args: [
      "--port",
      "0",
      "--tls-port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--tls-cert-file",
      server.certFile,
      "--tls-key-file",
      server.keyFile,
      "--tls-ca-cert-file",
      certs.caFile,
      "--tls-auth-clients",
      authClients ? "yes" : "no",
      "--save",
      "",
      "--appendonly",
      "no",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const stopped = child.status;
  for (let i = 0;; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch (error) {
      if (i === 100) {
        child.kill("SIGKILL");
        await stopped;
        throw error;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    port,
    async [Symbol.asyncDispose]() {
      child.kill("SIGKILL");
      await stopped;
    },
  };
}

async function ping(stream: Awaited<ReturnType<typeof connectTo>>): Promise<string> {
  await stream.write(new TextEncoder().encode("PING\r\n"));
  const buffer = new Uint8Array(64);
  const n = await stream.read(buffer);
  return n === null ? "EOF" : new TextDecoder().decode(buffer.subarray(0, n));
}

async function failure(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    const stream = await promise;
    (stream as { close(): void }).close();
  } catch (error) {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${error}`);
    return error;
  }
  assert.fail("the connect succeeded");
}

Deno.test("connectTo: TLS verification and what each failure says", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "connect-test-" });
  try {
    const certs = await makeCertificates(dir);
    await using good = await startTlsRedis(certs, certs.server, true);
    await using otherName = await startTlsRedis(certs, certs.otherName, false);
    await using expired = await startTlsRedis(certs, certs.expired, false);
    const at = (port: number, hostname = "127.0.0.1") => ({ hostname, port });

    await t.step("a verified node with a client certificate answers", async () => {
      const stream = await connectTo(at(good.port), { timeoutMs: 2000, tls: tlsSettings(certs) });
      assert.equal(await ping(stream), "+PONG\r\n");
      stream.close();
    });

    await t.step("serverName is checked instead of the IP dialled", async () => {
      const stream = await connectTo(at(good.port), {
        timeoutMs: 2000,
        tls: tlsSettings(certs, { serverName: "redis.test" }),
      });
      assert.equal(await ping(stream), "+PONG\r\n");
      stream.close();
      const error = await failure(connectTo(at(good.port), {
        timeoutMs: 2000,
        tls: tlsSettings(certs, { serverName: "wrong.test" }),
      }));
      assert.equal(error.kind, "tls");
      assert.match(error.message, /TLS verification of name "wrong\.test" failed: name mismatch/);
      assert.match(error.message, /DNS:redis\.test/);
    });

    await t.step("a certificate for another name is refused", async () => {
      const error = await failure(
        connectTo(at(otherName.port), { timeoutMs: 2000, tls: tlsSettings(certs) }),
      );
      assert.equal(error.kind, "tls");
      assert.match(error.message, /name "127\.0\.0\.1" failed: name mismatch: .*DNS:other\.test/);
    });

    await t.step("a certificate from an untrusted CA is refused", async () => {
      const error = await failure(connectTo(at(good.port), {
        timeoutMs: 2000,
        tls: tlsSettings(certs, { caFile: certs.otherCaFile, ca: text(certs.otherCaFile) }),
      }));
      assert.equal(error.kind, "tls");
      assert.match(error.message, /unknown CA/);
      assert.ok(error.message.includes(certs.otherCaFile), error.message);
    });

    await t.step("an expired certificate is refused, saying so", async () => {
      const error = await failure(
        connectTo(at(expired.port), { timeoutMs: 2000, tls: tlsSettings(certs) }),
      );
      assert.equal(error.kind, "tls");
      assert.match(error.message, /certificate expired on 2020-01-02/);
    });

    await t.step("a server that wants a client certificate says so", async () => {
      const { cert: _c, certFile: _cf, key: _k, keyFile: _kf, ...noClient } = tlsSettings(certs);
      // TLS 1.3: the handshake ends before the server refuses, so the first read says why.
      const stream = await connectTo(at(good.port), { timeoutMs: 2000, tls: noClient }).catch(
        (error: ConnectError) => error,
      );
      if (stream instanceof ConnectError) {
        assert.equal(stream.kind, "tls");
        assert.match(stream.message, /requires a client certificate/);
      } else {
        await assert.rejects(ping(stream), /requires a client certificate; set tls\.certFile/);
        stream.close();
      }
    });

    await t.step("verify: false connects to an untrusted node", async () => {
      const stream = await connectTo(at(otherName.port), {
        timeoutMs: 2000,
        tls: tlsSettings(certs, {
          caFile: certs.otherCaFile,
          ca: text(certs.otherCaFile),
          verify: false,
        }),
      });
      assert.equal(await ping(stream), "+PONG\r\n");
      stream.close();
    });

    await t.step(
      "a host name is checked as the name, and its dead first address skipped",
      async () => {
        // ::1 refuses (Redis listens on 127.0.0.1 only), as when localhost resolves to ::1 first.
        const tried: string[] = [];
        const stream = await connectTo(at(good.port, "localhost"), {
          timeoutMs: 2000,
          tls: tlsSettings(certs),
          resolve: (name) => {
            tried.push(name);
            return Promise.resolve(["::1", "127.0.0.1"]);
          },
        });
        assert.deepEqual(tried, ["localhost"]);
        assert.equal(await ping(stream), "+PONG\r\n");
        stream.close();
      },
    );

    await t.step("a silent first address leaves the next its share of the deadline", async () => {
      // Something on [::1] accepts the connection and never answers the TLS handshake.
      const silent = Deno.listen({ hostname: "::1", port: good.port });
      const held: Deno.Conn[] = [];
      const accepting = (async () => {
        for await (const conn of silent) held.push(conn);
      })();
      try {
        const stream = await connectTo(at(good.port, "localhost"), {
          timeoutMs: 3000,
          tls: tlsSettings(certs),
          resolve: () => Promise.resolve(["::1", "127.0.0.1"]),
        });
        assert.equal(held.length, 1, "the silent address was tried first");
        assert.equal(await ping(stream), "+PONG\r\n");
        stream.close();
      } finally {
        silent.close();
        await accepting;
        for (const conn of held) conn.close();
      }
    });

    await t.step("a handshake that never comes ends at the deadline", async () => {
      const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const held: Deno.Conn[] = [];
      const accepting = (async () => {
        for await (const conn of silent) held.push(conn);
      })();
      try {
        const error = await failure(
          connectTo(at(silent.addr.port), { timeoutMs: 300, tls: tlsSettings(certs) }),
        );
        // The node took the TCP connection: alive, not a silent link. The kind and words say so.
        assert.equal(error.kind, "handshake-timeout");
        assert.match(error.message, /connected, but no TLS handshake within 300 ms/);
      } finally {
        silent.close();
        await accepting;
        for (const conn of held) conn.close();
      }
    });

    await t.step("a resolver that hangs ends at the deadline", async () => {
      const error = await failure(connectTo(at(good.port, "redis.test"), {
        timeoutMs: 200,
        tls: tlsSettings(certs),
        resolve: () => new Promise(() => {}),
      }));
      assert.equal(error.kind, "connect-timeout");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
