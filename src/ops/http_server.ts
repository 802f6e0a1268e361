/**
 * A small HTTP/1.1 server for the read-only admin API, bounded at every edge:
 * a request head must arrive within a deadline and a size, at most so many
 * connections are served at once (the one over gets 503 and is closed), every
 * response is written under a deadline, and one connection per request. The
 * accept loop skips an error that belongs to one client and backs off on
 * exhaustion (out of file descriptors), so that nothing a client does ends
 * the process.
 *
 * It serves GET and HEAD only; bodies, keep-alive and chunked requests are
 * not needed by the admin API and are refused.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { type Address, formatAddress } from "../shared/address.ts";
import { closeQuietly } from "../shared/io.ts";
import { describeNetworkError, ListenError } from "../shared/errors.ts";
import { acceptLoop } from "../shared/accept_loop.ts";

const log = getLogger(["sentinel-tunnel", "admin"]);

/** Options for {@linkcode serveHttp}. */
export interface HttpServerOptions {
  /** Where to listen. */
  address: Address;
  /** Answers one request; a throw becomes a 500. */
  handler: (request: Request) => Response | Promise<Response>;
  /** Deadline for the request head, from the accept. @default {5000} */
  headerTimeoutMs?: number;
  /** Deadline for writing the response. @default {5000} */
  writeTimeoutMs?: number;
  /** The most connections served at once. @default {64} */
  maxConnections?: number;
  /** Stops accepting and closes every connection. */
  signal: AbortSignal;
}

/** A running server. */
export interface HttpServer {
  readonly address: Address;
  /** Settles when the accept loop has ended and every connection is closed. Never rejects. */
  readonly finished: Promise<void>;
  /** Connections being served now. */
  readonly active: number;
}

/** The largest request head accepted, request line and headers. */
const MAX_HEAD_BYTES = 8192;
const encoder = new TextEncoder();

/**
 * Listens on `options.address` and serves until the signal aborts.
 *
 * @throws {ListenError} when the address cannot be opened
 */
export function serveHttp(options: HttpServerOptions): HttpServer {
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: options.address.hostname, port: options.address.port });
  } catch (error) {
    const cause = error instanceof Deno.errors.AddrInUse
      ? `port ${options.address.port} is already in use; choose another admin port`
      : describeNetworkError(error);
    throw new ListenError(
      `Cannot listen on ${formatAddress(options.address)} for the admin API: ${cause}`,
      { cause: error },
    );
  }
  const connections = new Set<Deno.TcpConn>();
  const stats = { active: 0 };
  const onAbort = () => {
    closeQuietly(listener);
    for (const conn of connections) closeQuietly(conn);
  };
  options.signal.addEventListener("abort", onAbort, { once: true });
  const finished = serveConnections(listener, options, connections, stats).catch((error) => {
    log.error("Admin API stopped unexpectedly: {error}", { error: String(error) });
  }).finally(() => {
    options.signal.removeEventListener("abort", onAbort);
    onAbort();
  });
  const addr = listener.addr;
  return {
    address: { hostname: addr.hostname, port: addr.port },
    finished,
    get active() {
      return stats.active;
    },
  };
}

async function serveConnections(
  listener: Deno.TcpListener,
  options: HttpServerOptions,
  connections: Set<Deno.TcpConn>,
  stats: { active: number },
): Promise<void> {
  const maxConnections = options.maxConnections ?? 64;
  const serving = new Set<Promise<void>>();
  try {
    await acceptLoop(listener, {
      onConnection: (conn) => {
        if (stats.active >= maxConnections) {
          void refuse(conn, maxConnections);
          return;
        }
        stats.active++;
        connections.add(conn);
        const done = serveConnection(conn, options).finally(() => {
          connections.delete(conn);
          stats.active--;
          serving.delete(done);
        });
        serving.add(done);
      },
      onExhausted: (error) =>
        log.error("Admin API: accept failed: {error}; backing off up to 1 s until it recovers", {
          error: describeNetworkError(error),
        }),
      onRecovered: (failures) =>
        log.info("Admin API: accepting again, after {failures} failed accepts", { failures }),
      closed: () => options.signal.aborted,
    }, options.signal);
  } finally {
    await Promise.all(serving);
  }
}

/** The connection over the cap: a short 503, then closed. */
async function refuse(conn: Deno.TcpConn, maxConnections: number): Promise<void> {
  const timer = setTimeout(() => closeQuietly(conn), 1000);
  try {
    await conn.write(encoder.encode(
      `HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: 0\r\nretry-after: 1\r\nx-reason: more than ${maxConnections} admin connections\r\n\r\n`,
    ));
  } catch { /* gone already */ }
  clearTimeout(timer);
  closeQuietly(conn);
}

async function serveConnection(conn: Deno.TcpConn, options: HttpServerOptions): Promise<void> {
  const headerTimer = setTimeout(() => closeQuietly(conn), options.headerTimeoutMs ?? 5000);
  try {
    const head = await readHead(conn);
    clearTimeout(headerTimer);
    if (head === undefined) return;
    const response = await respond(head, options.handler);
    const writeTimer = setTimeout(() => closeQuietly(conn), options.writeTimeoutMs ?? 5000);
    try {
      const bytes = await serialize(response, head.method === "HEAD");
      for (let written = 0; written < bytes.length;) {
        written += await conn.write(bytes.subarray(written));
      }
    } finally {
      clearTimeout(writeTimer);
    }
  } catch {
    // The client went away, or a deadline closed the connection.
  } finally {
    clearTimeout(headerTimer);
    closeQuietly(conn);
  }
}

interface RequestHead {
  readonly method: string;
  readonly target: string;
  readonly version: string;
  readonly host: string;
  readonly error?: { status: number; message: string };
}

/** Reads up to the blank line that ends the head; `undefined` if the client leaves first. */
async function readHead(conn: Deno.TcpConn): Promise<RequestHead | undefined> {
  const buffer = new Uint8Array(MAX_HEAD_BYTES);
  let length = 0;
  let scanned = 0;
  for (;;) {
    // Only the new bytes (and the three before them) can complete the blank line.
    const end = findHeadEnd(buffer, Math.max(0, scanned - 3), length);
    scanned = length;
    if (end !== -1) return parseHead(new TextDecoder().decode(buffer.subarray(0, end)));
    if (length === buffer.length) {
      return {
        method: "GET",
        target: "/",
        version: "HTTP/1.1",
        host: "",
        error: { status: 431, message: `request head over ${MAX_HEAD_BYTES} bytes` },
      };
    }
    const n = await conn.read(buffer.subarray(length));
    if (n === null) return undefined;
    length += n;
  }
}

function findHeadEnd(buffer: Uint8Array, from: number, length: number): number {
  for (let i = Math.max(3, from); i < length; i++) {
    if (buffer[i] === 10 && buffer[i - 1] === 13 && buffer[i - 2] === 10 && buffer[i - 3] === 13) {
      return i - 3;
    }
  }
  return -1;
}

function parseHead(text: string): RequestHead {
  const [requestLine = "", ...headerLines] = text.split("\r\n");
  const [method = "", target = "", version = "", ...rest] = requestLine.split(" ");
  const headers = new Map<string, string>();
  for (const line of headerLines) {
    const colon = line.indexOf(":");
    if (colon > 0) {
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
  }
  const head = { method, target, version, host: headers.get("host") ?? "" };
  if (rest.length > 0 || !/^HTTP\/1\.[01]$/.test(version) || !target.startsWith("/")) {
    return { ...head, error: { status: 400, message: "malformed request line" } };
  }
  if (method !== "GET" && method !== "HEAD") {
    return { ...head, error: { status: 405, message: "only GET and HEAD are served" } };
  }
  if (headers.has("content-length") || headers.has("transfer-encoding")) {
    return { ...head, error: { status: 400, message: "a request body is not accepted" } };
  }
  return head;
}

async function respond(
  head: RequestHead,
  handler: HttpServerOptions["handler"],
): Promise<Response> {
  if (head.error) {
    return Response.json({ error: head.error.message }, { status: head.error.status });
  }
  try {
    return await handler(
      new Request(new URL(head.target, "http://admin.invalid"), { method: head.method }),
    );
  } catch (error) {
    log.error("Admin API request failed: {error}", { error: String(error) });
    return Response.json({ error: "internal error; see the tunnel's log" }, { status: 500 });
  }
}

async function serialize(response: Response, headOnly: boolean): Promise<Uint8Array> {
  const body = new Uint8Array(await response.arrayBuffer());
  let head = `HTTP/1.1 ${response.status} ${response.statusText || reason(response.status)}\r\n`;
  response.headers.forEach((value, name) => {
    if (name !== "content-length" && name !== "connection") head += `${name}: ${value}\r\n`;
  });
  head += `content-length: ${body.length}\r\nconnection: close\r\n\r\n`;
  const headBytes = encoder.encode(head);
  if (headOnly) return headBytes;
  const bytes = new Uint8Array(headBytes.length + body.length);
  bytes.set(headBytes);
  bytes.set(body, headBytes.length);
  return bytes;
}

function reason(status: number): string {
  return {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
  }[status] ?? "Status";
}
