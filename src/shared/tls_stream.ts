/**
 * TLS for both planes, with `node:tls` running over the tunnel's own
 * `Deno.TcpConn`: {@linkcode startTls} on a connection the tunnel dialled,
 * {@linkcode acceptTls} on one it accepted. Either gives a
 * {@linkcode TlsStream}, read and written like a `Deno.Conn`.
 *
 * Why over our own connection, through a `Duplex` we feed: in Deno 2.9.6,
 * `node:tls` on its own socket reads everything the peer sends whatever the
 * reader does (`pause()` stops nothing, so a slow client would make the
 * tunnel hold a master's whole reply) and misses the peer's end after a
 * pause; `Deno.listenTls` connections closed during a pending handshake keep
 * their socket open; and neither takes TCP keepalive. Here the TCP reads
 * stop while {@linkcode TlsStream.MAX_QUEUED_BYTES} of plaintext wait for the
 * reader, so the peer is held back by TCP itself; keepalive is set on the TCP
 * connection; and closing closes it.
 *
 * @module
 */
import { Duplex } from "node:stream";
import { connect, type SecureContext, TLSSocket } from "node:tls";
import { closeQuietly } from "./io.ts";
import { describeNetworkError } from "./errors.ts";
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

/** Options for {@linkcode startTls}. */
export interface StartTlsOptions {
  /** The SNI name; absent for an IP address, which SNI cannot carry. */
  readonly servername?: string | undefined;
  readonly secureContext: SecureContext;
}

/**
 * Starts TLS as a client on `conn`. Resolves with the stream and its socket
 * (for the caller's verification) once the handshake is done; on failure, or
 * when `signal` aborts, `conn` is closed and the promise rejects.
 */
export function startTls(
  conn: Deno.TcpConn,
  options: StartTlsOptions,
  signal: AbortSignal,
): Promise<{ stream: TlsStream; socket: TLSSocket }> {
  const stream = new TlsStream(conn, (duplex) =>
    connect({
      socket: duplex,
      ...(options.servername === undefined ? {} : { servername: options.servername }),
      secureContext: options.secureContext,
      // The caller decides from the peer's certificate, so that a failure can say why.
      rejectUnauthorized: false,
    }));
  return stream.handshake("secureConnect", signal).then(() => ({
    stream,
    socket: stream.socket,
  }));
}

/**
 * Serves TLS on an accepted connection: resolves once the client's handshake
 * is done, within `timeoutMs`. On failure, or when `signal` aborts, `conn` is
 * closed and the promise rejects with why.
 */
export async function acceptTls(
  conn: Deno.TcpConn,
  settings: TlsServerSettings,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<ByteStream> {
  const stream = new TlsStream(conn, (duplex) =>
    new TLSSocket(
      duplex,
      {
        isServer: true,
        cert: settings.cert,
        key: settings.key,
      } as ConstructorParameters<typeof TLSSocket>[1],
    ));
  const deadline = AbortSignal.timeout(timeoutMs);
  try {
    await stream.handshake("secure", AbortSignal.any([signal, deadline]));
  } catch (error) {
    if (deadline.aborted) throw new Error(`no TLS handshake within ${timeoutMs} ms`);
    if (signal.aborted) throw new Error("stopped");
    throw new Error(`TLS handshake failed: ${describeNetworkError(error)}`, { cause: error });
  }
  return stream;
}

/**
 * Checks that a certificate and key belong together and can be used, by what
 * Deno makes of them (a listener on an ephemeral loopback port, closed at once).
 *
 * @throws {Error} saying why they cannot
 */
export function checkKeyPair(cert: string, key: string): void {
  Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key }).close();
}

/** The most each TCP read under TLS takes: a TLS record is at most 16 KiB. */
const TCP_READ_BYTES = 16 * 1024;

/**
 * A TLS socket over a TCP connection, seen as a `Deno.Conn`. Reads take from
 * the plaintext the socket has delivered; past the cap, no more TCP is read
 * until the reader catches up. A write resolves once the socket has taken the
 * bytes, so the caller may reuse its buffer. The TCP connection is closed
 * exactly once, by {@linkcode TlsStream.close} or a failed handshake.
 */
export class TlsStream implements ByteStream {
  /** Plaintext held for a reader that is behind, at most (plus one TLS record). */
  static readonly MAX_QUEUED_BYTES = 256 * 1024;
  readonly socket: TLSSocket;
  readonly #conn: Deno.TcpConn;
  readonly #duplex: Duplex;
  readonly #chunks: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #error: Error | undefined;
  #closed = false;
  #connClosed = false;
  #wake: (() => void) | undefined;
  readonly #readBuffer = new Uint8Array(TCP_READ_BYTES);
  /** A TCP read the TLS socket asked for, held back while the queue is full. */
  #heldRead: (() => void) | undefined;

  constructor(conn: Deno.TcpConn, makeSocket: (duplex: Duplex) => TLSSocket) {
    this.#conn = conn;
    this.#duplex = this.#duplexOver(conn);
    // The TLS socket reports what fails underneath; an unheard 'error' would end the process.
    this.#duplex.on("error", () => {});
    this.socket = makeSocket(this.#duplex);
    // A half-close is forwarded, not answered by closing our side too.
    this.socket.allowHalfOpen = true;
    this.socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#queued += chunk.length;
      this.#wakeReader();
    });
    this.socket.on("end", () => {
      this.#ended = true;
      this.#wakeReader();
    });
    this.socket.on("error", (error: Error) => {
      // TLS 1.3 finishes the client's handshake before the server refuses a missing certificate.
      this.#error ??= isCertificateRequired(error)
        ? new Error(CERTIFICATE_REQUIRED, { cause: error })
        : error;
      this.#wakeReader();
    });
    this.socket.on("close", () => {
      this.#ended = true;
      this.#wakeReader();
    });
  }

  /** Settles when the handshake is done (`event`), or rejects on failure; closes on failure. */
  handshake(event: "secure" | "secureConnect", signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const fail = (error: unknown) => {
        cleanup();
        this.#closeQuietly();
        reject(error);
      };
      const onAbort = () => fail(signal.reason);
      const onError = (error: Error) => fail(error);
      const onClose = () => fail(new Error("the peer closed the connection during the handshake"));
      const cleanup = () => {
        signal.removeEventListener("abort", onAbort);
        this.socket.off("error", onError);
        this.socket.off("close", onClose);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      this.socket.once("error", onError);
      this.socket.once("close", onClose);
      this.socket.once(event, () => {
        cleanup();
        resolve();
      });
    });
  }

  #duplexOver(conn: Deno.TcpConn): Duplex {
    // deno-lint-ignore no-this-alias
    const stream = this;
    return new Duplex({
      read() {
        const readNow = () => {
          // One read at a time per connection, into its own buffer; the TLS layer gets a copy of
          // what came, so a small reply costs a small allocation.
          const buffer = stream.#readBuffer;
          conn.read(buffer).then(
            (n) => this.push(n === null ? null : buffer.slice(0, n)),
            (error) => this.destroy(error),
          );
        };
        if (stream.#queued > TlsStream.MAX_QUEUED_BYTES) stream.#heldRead = readNow;
        else readNow();
      },
      write(chunk: Uint8Array, _encoding, callback) {
        writeAll(conn, chunk).then(() => callback(), callback);
      },
      final(callback) {
        conn.closeWrite().then(() => callback(), callback);
      },
      destroy(error, callback) {
        stream.#closeConn();
        callback(error);
      },
    });
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #closeConn(): void {
    if (this.#connClosed) return;
    this.#connClosed = true;
    closeQuietly(this.#conn);
  }

  #closeQuietly(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.socket.destroy();
    this.#duplex.destroy();
    this.#closeConn();
    this.#wakeReader();
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
    if (this.#heldRead && this.#queued <= TlsStream.MAX_QUEUED_BYTES / 2) {
      const readNow = this.#heldRead;
      this.#heldRead = undefined;
      readNow();
    }
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("connection closed"));
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.socket.write(p, (error) => error ? reject(error) : resolve(p.length));
    });
  }

  closeWrite(): Promise<void> {
    if (this.#closed || this.socket.destroyed) {
      return Promise.reject(new Deno.errors.BadResource("connection closed"));
    }
    return new Promise((resolve) => this.socket.end(resolve));
  }

  close(): void {
    if (this.#closed) throw new Deno.errors.BadResource("connection closed");
    this.#closeQuietly();
  }
}

async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}
