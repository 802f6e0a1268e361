/**
 * The admin API's HTTP server: every edge bounded, and nothing a client does
 * ends the process.
 */
import assert from "node:assert/strict";
import { serveHttp } from "../src/ops/http_server.ts";
import { freePort, startDeployment } from "./_deployment.ts";
import { startTunnel } from "./_tunnel.ts";

const sockets = { sanitizeOps: false, sanitizeResources: false };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Sends raw bytes and reads until the server closes; `undefined` if it resets first. */
async function exchange(port: number, request: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(encoder.encode(request));
    const chunks: string[] = [];
    const buffer = new Uint8Array(4096);
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      chunks.push(decoder.decode(buffer.subarray(0, n)));
    }
    return chunks.join("");
  } finally {
    conn.close();
  }
}

/** Resolves when the server closes `conn` (a read ends or resets); rejects after `ms`. */
async function closedByServer(conn: Deno.TcpConn, ms: number): Promise<void> {
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    conn.close();
  }, ms);
  try {
    const buffer = new Uint8Array(512);
    // A 503 before the close is fine: read on to the end.
    while (await conn.read(buffer) !== null) { /* drain */ }
  } catch {
    // A reset by the server counts as a close; our own deadline does not.
  } finally {
    clearTimeout(timer);
  }
  if (expired) throw new Error(`the server did not close the connection within ${ms} ms`);
}

function server(extra: { headerTimeoutMs?: number; maxConnections?: number } = {}) {
  const controller = new AbortController();
  const http = serveHttp({
    address: { hostname: "127.0.0.1", port: 0 },
    signal: controller.signal,
    handler: (request) =>
      new URL(request.url).pathname === "/healthz"
        ? new Response("ok\n", { headers: { "content-type": "text/plain" } })
        : Response.json({ error: "not found" }, { status: 404 }),
    ...extra,
  });
  return {
    http,
    port: http.address.port,
    async [Symbol.asyncDispose]() {
      controller.abort();
      await http.finished;
    },
  };
}

Deno.test(
  "serveHttp() answers GET and HEAD, and refuses other methods and bodies",
  sockets,
  async () => {
    await using s = server();
    const get = await exchange(s.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.match(get, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(get, /content-length: 3\r\n/);
    assert.ok(get.endsWith("\r\n\r\nok\n"));
    const head = await exchange(s.port, "HEAD /healthz HTTP/1.1\r\n\r\n");
    assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(head.endsWith("\r\n\r\n"), "HEAD carried a body");
    assert.match(await exchange(s.port, "POST /healthz HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 405 /);
    assert.match(
      await exchange(s.port, "GET /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
      /^HTTP\/1\.1 400 /,
    );
    assert.match(await exchange(s.port, "GARBAGE\r\n\r\n"), /^HTTP\/1\.1 400 /);
    assert.match(await exchange(s.port, "GET /nope HTTP/1.0\r\n\r\n"), /^HTTP\/1\.1 404 /);
    const huge = `GET / HTTP/1.1\r\nX: ${"a".repeat(9000)}\r\n\r\n`;
    assert.match(await exchange(s.port, huge), /^HTTP\/1\.1 431 /);
  },
);

Deno.test("serveHttp() closes connections that send no request head in time", sockets, async () => {
  await using s = server({ headerTimeoutMs: 200, maxConnections: 500 });
  const slow: Deno.TcpConn[] = [];
  for (let i = 0; i < 200; i++) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
    // Half a request line, then silence: the slowloris way.
    await conn.write(encoder.encode("GET /heal"));
    slow.push(conn);
  }
  await Promise.all(slow.map((conn) => closedByServer(conn, 5000)));
  assert.match(await exchange(s.port, "GET /healthz HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 200 /);
});

Deno.test(
  "serveHttp() serves at most maxConnections at once and refuses the rest with 503",
  sockets,
  async () => {
    await using s = server({ headerTimeoutMs: 10_000, maxConnections: 5 });
    const held: Deno.TcpConn[] = [];
    for (let i = 0; i < 5; i++) {
      held.push(
        await Deno.connect({ hostname: "127.0.0.1", port: s.port }),
      );
    }
    // The accept loop sees the five before the sixth: wait until it serves them.
    for (let i = 0; i < 100 && s.http.active < 5; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(s.http.active, 5);
    assert.match(await exchange(s.port, "GET /healthz HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 503 /);
    for (const conn of held) conn.close();
    let reply = "";
    for (let i = 0; i < 100 && !reply.startsWith("HTTP/1.1 200"); i++) {
      reply = await exchange(s.port, "GET /healthz HTTP/1.1\r\n\r\n");
    }
    assert.match(reply, /^HTTP\/1\.1 200 /);
  },
);

Deno.test(
  "the tunnel survives running out of file descriptors on the admin port",
  sockets,
  async () => {
    await using deployment = await startDeployment({
      masterName: "adminfd",
      replicas: 0,
      sentinels: 1,
    });
    const port = freePort();
    const admin = freePort();
    await using tunnel = await startTunnel({
      sentinels: deployment.sentinels.map((s) => s.address),
      databases: [{ name: "adminfd", port }],
    }, { ports: [port, admin], fdLimit: 40, args: ["--admin", `127.0.0.1:${admin}`] });
    await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
    const crowd: Deno.TcpConn[] = [];
    for (let i = 0; i < 60; i++) {
      crowd.push(await Deno.connect({ hostname: "127.0.0.1", port: admin }));
    }
    const failure = await tunnel.waitForLog((r) =>
      /Admin API: accept failed/.test(String(r.message))
    );
    assert.match(String(failure.error), /open files|descriptor/i);
    for (const conn of crowd) conn.close();
    let reply = "";
    for (let i = 0; i < 50 && !reply.startsWith("HTTP/1.1 200"); i++) {
      reply = await exchange(admin, "GET /healthz HTTP/1.1\r\n\r\n").catch(String);
      if (!reply.startsWith("HTTP/1.1 200")) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    assert.match(reply, /^HTTP\/1\.1 200 /);
    assert.equal((await tunnel.stop()).code, 0, "the tunnel did not survive");
  },
);
