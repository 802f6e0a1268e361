/**
 * TLS streams for both planes, on `node:tls`: {@linkcode TlsStream} turns a
 * TLS socket into the read/write stream the copy loops and the control plane
 * use, and {@linkcode acceptTls} serves TLS on an accepted TCP connection.
 *
 * The server side runs TLS over the tunnel's own `Deno.TcpConn` rather than
 * `Deno.listenTls`: a Deno TLS connection closed while its handshake is
 * pending keeps its socket open (seen in Deno 2.9.6), so a client that never
 * speaks TLS would hold a descriptor for good, and it offers no TCP keepalive.
 *
 * @module
 */
import { Duplex } from "node:stream";
import { TLSSocket } from "node:tls";
import { closeQuietly, describeNetworkError } from "./io.ts";
import type { TlsServerSettings } from "./settings.ts";

/** What both planes read and write: a TCP connection, or TLS over one. */
export type ByteStream = Pick<Deno.Conn, "read" | "write" | "closeWrite" | "close">;

/** What a server that wants a client certificate means by its alert. */
export const CERTIFICATE_REQUIRED =
  "the server requires a client certificate; set tls.certFile and tls.keyFile";

/** Whether `error` is a server's refusal of a missing client certificate. */
export function isCertificateRequired(error: Error): boolean {
  return /CERTIFICATE_REQUIRED/i.test((error as { code?: string }).code ?? "") ||
    /CertificateRequired/.test(error.message);
}

/**
 * Serves TLS on an accepted connection: resolves once the client's handshake
 * is done, within `timeoutMs`. On failure, or when `signal` aborts, `conn` is
 * closed and the promise rejects with why.
 */
export function acceptTls(
  conn: Deno.TcpConn,
  settings: TlsServerSettings,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<ByteStream> {
  const duplex = duplexOf(conn);
  // allowHalfOpen: a client that half-closes still gets every reply (as on a TCP port).
  const socket = new TLSSocket(duplex, {
    isServer: true,
    cert: settings.cert,
    key: settings.key,
    allowHalfOpen: true,
  } as ConstructorParameters<typeof TLSSocket>[1]);
  const closeAll = () => {
    socket.destroy();
    duplex.destroy();
  };
  return new Promise((resolve, reject) => {
    const fail = (why: string) => {
      cleanup();
      closeAll();
      reject(new Error(why));
    };
    const timer = setTimeout(() => fail(`no TLS handshake within ${timeoutMs} ms`), timeoutMs);
    const onAbort = () => fail("stopped");
    const onError = (error: Error) => fail(`TLS handshake failed: ${describeNetworkError(error)}`);
    const onClose = () => fail("the client left during the TLS handshake");
    const cleanup = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      socket.off("error", onError);
      socket.off("close", onClose);
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("error", onError);
    socket.once("close", onClose);
    socket.once("secure", () => {
      cleanup();
      resolve(new TlsStream(socket, () => duplex.destroy()));
    });
  });
}

/**
 * Checks that a certificate and key can serve TLS, by what Deno makes of them.
 *
 * @throws {Error} saying why they cannot
 */
export function checkServerTls(settings: TlsServerSettings): void {
  Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: settings.cert, key: settings.key })
    .close();
}

/** A Node stream over a Deno TCP connection, which it closes exactly once when destroyed. */
function duplexOf(conn: Deno.TcpConn): Duplex {
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    closeQuietly(conn);
  };
  return new Duplex({
    read(size) {
      const buffer = new Uint8Array(Math.max(size, 16 * 1024));
      conn.read(buffer).then(
        (n) => this.push(n === null ? null : buffer.subarray(0, n)),
        (error) => this.destroy(error),
      );
    },
    write(chunk: Uint8Array, _encoding, callback) {
      writeAll(conn, chunk).then(() => callback(), callback);
    },
    final(callback) {
      conn.closeWrite().then(() => callback(), callback);
    },
    destroy(error, callback) {
      close();
      callback(error);
    },
  });
}

async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

/**
 * A `node:tls` socket seen as a {@linkcode ByteStream}. Reads take from the
 * chunks the socket has delivered, pausing it past a cap so that a fast peer
 * cannot fill memory; a write resolves once the socket has taken the bytes,
 * so the caller may reuse its buffer.
 */
export class TlsStream implements ByteStream {
  static readonly MAX_QUEUED_BYTES = 256 * 1024;
  readonly #socket: TLSSocket;
  readonly #chunks: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #error: Error | undefined;
  #closed = false;
  #wake: (() => void) | undefined;

  readonly #onClose: (() => void) | undefined;

  /** `onClose` closes what the socket runs over, when that is not the socket's own. */
  constructor(socket: TLSSocket, onClose?: () => void) {
    this.#socket = socket;
    this.#onClose = onClose;
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#queued += chunk.length;
      if (this.#queued > TlsStream.MAX_QUEUED_BYTES) socket.pause();
      this.#wakeReader();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#wakeReader();
    });
    socket.on("error", (error: Error) => {
      // TLS 1.3 finishes the client's handshake before the server refuses a missing certificate.
      this.#error ??= isCertificateRequired(error)
        ? new Error(CERTIFICATE_REQUIRED, { cause: error })
        : error;
      this.#wakeReader();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#wakeReader();
    });
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#closed) throw new Deno.errors.BadResource("connection closed");
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const head = this.#chunks[0]!;
    const n = Math.min(head.length, p.length);
    p.set(n === head.length ? head : head.subarray(0, n));
    if (n === head.length) this.#chunks.shift();
    else this.#chunks[0] = head.subarray(n);
    this.#queued -= n;
    if (this.#queued <= TlsStream.MAX_QUEUED_BYTES / 2 && this.#socket.isPaused()) {
      this.#socket.resume();
    }
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("connection closed"));
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#socket.write(p, (error) => error ? reject(error) : resolve(p.length));
    });
  }

  closeWrite(): Promise<void> {
    if (this.#closed || this.#socket.destroyed) {
      return Promise.reject(new Deno.errors.BadResource("connection closed"));
    }
    return new Promise((resolve) => this.#socket.end(resolve));
  }

  close(): void {
    if (this.#closed) throw new Deno.errors.BadResource("connection closed");
    this.#closed = true;
    this.#socket.destroy();
    this.#onClose?.();
    this.#wakeReader();
  }
}
