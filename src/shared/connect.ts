/**
 * Connections to Redis nodes and Sentinels, for both planes: TCP, or TLS over
 * TCP, under one deadline that covers name resolution, the connect and the TLS
 * handshake. A node whose certificate fails verification is never returned:
 * the error names the node, the name checked and the reason.
 *
 * TLS goes through `node:tls`, the one TLS client in Deno that can check a
 * certificate against a name other than the host dialled (`serverName`, for
 * nodes that Sentinel reports by IP) while sending a client certificate
 * (`tls-auth-clients yes`); `Deno.connectTls` cannot do the first and
 * `Deno.startTls` ignores the second.
 *
 * @module
 */
import { isIP } from "node:net";
import {
  checkServerIdentity,
  createSecureContext,
  type SecureContext,
  type TLSSocket,
} from "node:tls";
import { CERTIFICATE_REQUIRED, isCertificateRequired, startTls } from "./tls_stream.ts";
import { lookup } from "node:dns/promises";
import type { Address } from "./address.ts";
import { describeNetworkError } from "./errors.ts";
import type { TlsClientSettings } from "./settings.ts";

import type { ByteStream } from "./tls_stream.ts";
export type { ByteStream } from "./tls_stream.ts";

/** Options for {@linkcode connectTo}. */
export interface ConnectOptions {
  /** Deadline for all of it: resolving the name, connecting, and the TLS handshake. */
  readonly timeoutMs: number;
  /** Aborts the connect. */
  readonly signal?: AbortSignal | undefined;
  /** TLS settings; plain TCP when absent. */
  readonly tls?: TlsClientSettings | undefined;
  /** TCP keepalive on the socket, with the system's timers. @default {false} */
  readonly keepAlive?: boolean | undefined;
  /** Resolves a host name for TLS, in the order to try. @default {the system resolver} */
  readonly resolve?: ((hostname: string) => Promise<string[]>) | undefined;
}

/**
 * Why a connect failed: no TCP connection in time (a silent link), a TCP
 * connection but no TLS handshake in time (a node alive but frozen or busy),
 * refused or unroutable, or a certificate that failed verification.
 */
export type ConnectFailure = "connect-timeout" | "handshake-timeout" | "unreachable" | "tls";

/** A connect that failed; `message` says why, `address` names the node. */
export class ConnectError extends Error {
  override name = "ConnectError";
  readonly address: Address;
  readonly kind: ConnectFailure;
  constructor(address: Address, kind: ConnectFailure, detail: string, options?: ErrorOptions) {
    super(detail, options);
    this.address = address;
    this.kind = kind;
  }
}

/**
 * Connects to `address` within `timeoutMs`. A host name is resolved, and each
 * address it resolves to is tried in turn (Deno's Happy Eyeballs for TCP; in
 * order, each with its share of the time left, for TLS), so that a name whose
 * first address is dead still connects.
 *
 * @throws {ConnectError} when no connection is made in time, or TLS verification fails
 * @throws the signal's reason when `signal` aborts
 */
export async function connectTo(address: Address, options: ConnectOptions): Promise<ByteStream> {
  options.signal?.throwIfAborted();
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(TIMED_OUT), options.timeoutMs);
  const onAbort = () => controller.abort(options.signal!.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const progress = { tcpConnected: false };
  try {
    if (!options.tls) {
      const conn = await Deno.connect({
        hostname: address.hostname,
        port: address.port,
        signal: controller.signal,
      });
      conn.setNoDelay(true);
      if (options.keepAlive) conn.setKeepAlive(true);
      return conn;
    }
    return await connectTlsTo(address, options.tls, {
      signal: controller.signal,
      deadline: performance.now() + options.timeoutMs,
      keepAlive: options.keepAlive ?? false,
      resolve: options.resolve ?? resolveHost,
      progress,
    });
  } catch (error) {
    // The last address's share of the deadline may end a moment before the deadline itself.
    const timedOut = controller.signal.reason === TIMED_OUT ||
      (error instanceof DOMException && error.name === "TimeoutError");
    if (timedOut) {
      // A node that took the TCP connection but not the handshake is alive (frozen, busy): say so.
      throw progress.tcpConnected
        ? new ConnectError(
          address,
          "handshake-timeout",
          `connected, but no TLS handshake within ${options.timeoutMs} ms`,
          { cause: error },
        )
        : new ConnectError(
          address,
          "connect-timeout",
          `no connection within ${options.timeoutMs} ms`,
          { cause: error },
        );
    }
    if (options.signal?.aborted) throw options.signal.reason;
    if (error instanceof ConnectError) throw error;
    throw new ConnectError(address, "unreachable", describeNetworkError(error), { cause: error });
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
  }
}

const TIMED_OUT = Symbol("timed out");

async function connectTlsTo(
  address: Address,
  tls: TlsClientSettings,
  { signal, deadline, keepAlive, resolve, progress }: {
    signal: AbortSignal;
    deadline: number;
    keepAlive: boolean;
    resolve: (hostname: string) => Promise<string[]>;
    /** Set when a TCP connection is made, so that a timeout can say where it stopped. */
    progress: { tcpConnected: boolean };
  },
): Promise<ByteStream> {
  // A resolver cannot be aborted: the deadline stops the wait for it.
  const ips = isIP(address.hostname) !== 0
    ? [address.hostname]
    : await orAbort(resolve(address.hostname), signal);
  let lastError: unknown = new Error(`${address.hostname} resolved to no address`);
  for (const [i, ip] of ips.entries()) {
    // Each address gets its share of the time left, so that a silent one leaves time for the next.
    const share = (deadline - performance.now()) / (ips.length - i);
    try {
      return await handshake(
        address,
        ip,
        tls,
        keepAlive,
        progress,
        AbortSignal.any([
          signal,
          AbortSignal.timeout(Math.max(1, share)),
        ]),
      );
    } catch (error) {
      // A certificate that fails is an answer, not an unreachable address: stop there.
      if (error instanceof ConnectError || signal.aborted) throw error;
      lastError = error;
    }
  }
  throw lastError;
}

/** `promise`, or a rejection with the signal's reason once `signal` aborts. */
function orAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Every address of `hostname`, as the system resolver orders them (`/etc/hosts` included). */
async function resolveHost(hostname: string): Promise<string[]> {
  return (await lookup(hostname, { all: true, verbatim: true })).map((a) => a.address);
}

/**
 * One context per settings object, which a reload replaces: parsing the key and
 * CAs once, not on every dial, saves a fifth of a TLS dial's CPU.
 */
const secureContexts = new WeakMap<TlsClientSettings, SecureContext>();

function secureContextOf(tls: TlsClientSettings): SecureContext {
  let context = secureContexts.get(tls);
  if (context === undefined) {
    context = createSecureContext({
      ...(tls.ca === undefined ? {} : { ca: tls.ca }),
      ...(tls.cert === undefined ? {} : { cert: tls.cert }),
      ...(tls.key === undefined ? {} : { key: tls.key }),
    });
    secureContexts.set(tls, context);
  }
  return context;
}

/** One TLS connect to `ip`, verified against `serverName` or the host name dialled. */
async function handshake(
  address: Address,
  ip: string,
  tls: TlsClientSettings,
  keepAlive: boolean,
  progress: { tcpConnected: boolean },
  signal: AbortSignal,
): Promise<ByteStream> {
  const checkedName = tls.serverName ?? address.hostname;
  const secureContext = secureContextOf(tls);
  const conn = await Deno.connect({ hostname: ip, port: address.port, signal });
  progress.tcpConnected = true;
  conn.setNoDelay(true);
  if (keepAlive) conn.setKeepAlive(true);
  let started;
  try {
    started = await startTls(conn, {
      // SNI carries names only; an IP address is checked against the certificate's IP entries.
      servername: isIP(checkedName) === 0 ? checkedName : undefined,
      secureContext,
    }, signal);
  } catch (error) {
    // startTls closed the connection.
    if (signal.aborted) throw signal.reason;
    throw tlsHandshakeError(address, checkedName, error as Error);
  }
  if (tls.verify) {
    const problem = verificationProblem(started.socket, checkedName, tls);
    if (problem !== undefined) {
      started.stream.close();
      throw new ConnectError(
        address,
        "tls",
        `TLS verification of name ${JSON.stringify(checkedName)} failed: ${problem}`,
      );
    }
  }
  return started.stream;
}

/** Why the peer's certificate is not to be trusted, or `undefined` when it is. */
function verificationProblem(
  socket: TLSSocket,
  checkedName: string,
  tls: TlsClientSettings,
): string | undefined {
  const certificate = socket.getPeerCertificate();
  const now = Date.now();
  if (certificate?.valid_to && Date.parse(certificate.valid_to) < now) {
    return `certificate expired on ${
      new Date(certificate.valid_to).toISOString()
    }; renew the node's certificate`;
  }
  if (certificate?.valid_from && Date.parse(certificate.valid_from) > now) {
    return `certificate not valid before ${
      new Date(certificate.valid_from).toISOString()
    }; check the clocks`;
  }
  // The chain first: a name from a certificate nobody vouches for is no advice to follow.
  const code = String(socket.authorizationError ?? "unknown");
  if (!socket.authorized && code !== "ERR_TLS_CERT_ALTNAME_INVALID") {
    return `unknown CA: the certificate is not signed by a trusted CA (${code}); ${
      tls.caFile === undefined
        ? "give the CA that signed it in tls.caFile"
        : `check that ${tls.caFile} holds the CA that signed it`
    }`;
  }
  // Checked here as well as by the handshake, so that a mismatch is never let through.
  const nameError = certificate?.subjectaltname !== undefined || certificate?.subject
    ? checkServerIdentity(checkedName, certificate)
    : new Error("no certificate");
  if (nameError !== undefined) {
    return `name mismatch: the certificate is for ${
      certificate?.subjectaltname || `CN=${certificate?.subject?.CN ?? "?"}`
    }; set tls.serverName to a name in the certificate`;
  }
  // Whatever else the handshake found wrong, it is not used.
  if (!socket.authorized) return `the certificate was not verified (${code})`;
  return undefined;
}

function tlsHandshakeError(address: Address, checkedName: string, error: Error): Error {
  const code = (error as { code?: string }).code ?? "";
  if (isCertificateRequired(error)) {
    return new ConnectError(address, "tls", `TLS handshake failed: ${CERTIFICATE_REQUIRED}`, {
      cause: error,
    });
  }
  // A TLS alert or certificate problem is the node's answer; a close or reset during the
  // handshake is not, and the next address is tried.
  if (
    /alert|certificate|CERT_|unsupported protocol|wrong version/i.test(`${code} ${error.message}`)
  ) {
    return new ConnectError(
      address,
      "tls",
      `TLS handshake failed (name ${JSON.stringify(checkedName)}): ${error.message}`,
      { cause: error },
    );
  }
  return error;
}
