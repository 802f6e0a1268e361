/**
 * The listener of one database: accepts clients on the local port, joins each
 * to the confirmed master, and gives a client that cannot be served a RESP
 * error naming the database and the cause, never a silent close.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { type Address, formatAddress, sameAddress } from "../shared/address.ts";
import type { DatabaseConfig } from "../shared/settings.ts";
import type { ConnectionRegistry } from "./connection_registry.ts";
import type { MasterSource } from "./master_source.ts";
import { closeQuietly, ListenError } from "../shared/io.ts";
import { Tunnel, type TunnelBuffers } from "./tunnel.ts";
import { describeNetworkError } from "../shared/io.ts";
import { encodeError } from "./resp_error.ts";
import { sleep } from "../shared/io.ts";

const log = getLogger(["sentinel-tunnel", "listener"]);

/** Options for {@linkcode DatabaseListener.serve}. */
export interface DatabaseListenerOptions {
  watcher: MasterSource;
  registry: ConnectionRegistry<Tunnel>;
  /** Where tunnels take their buffers. */
  buffers: TunnelBuffers;
}

/** How long a rejected client gets to read its error before the connection closes. */
const REJECT_LINGER_MS = 1000;

/** Listens on one database's port and tunnels each client to its master. */
export class DatabaseListener {
  readonly database: DatabaseConfig;
  readonly #listener: Deno.TcpListener;
  /** Client handlers still running, and who waits for them to end. */
  #handlers = 0;
  readonly #acceptEnded = Promise.withResolvers<void>();
  #handlersEnded: PromiseWithResolvers<void> | undefined;
  #closed = false;

  private constructor(database: DatabaseConfig, listener: Deno.TcpListener) {
    this.database = database;
    this.#listener = listener;
  }

  /**
   * Opens the database's port.
   *
   * @throws {ListenError} naming the port and the cause when it cannot be opened
   */
  static open(database: DatabaseConfig): DatabaseListener {
    let listener: Deno.TcpListener;
    const where = formatAddress({
      hostname: database.bind,
      port: database.port,
    });
    try {
      listener = Deno.listen({ hostname: database.bind, port: database.port });
    } catch (error) {
      const cause = error instanceof Deno.errors.AddrInUse
        ? `port ${database.port} is already in use; stop the process that holds it or give the database another port`
        : error instanceof Deno.errors.PermissionDenied
        ? `permission denied; ports below 1024 need root or CAP_NET_BIND_SERVICE`
        : error instanceof Deno.errors.AddrNotAvailable
        ? `${database.bind} is not an address of this machine; use "127.0.0.1", "::1" or "0.0.0.0"`
        : describeNetworkError(error);
      throw new ListenError(
        `Cannot listen on ${where} for database "${database.name}": ${cause}`,
        {
          cause: error,
        },
      );
    }
    return new DatabaseListener(database, listener);
  }

  /** Settles when the accept loop has ended: only then is the port free to open again. */
  get acceptEnded(): Promise<void> {
    return this.#acceptEnded.promise;
  }

  /** The address the listener is bound to. */
  get address(): Deno.NetAddr {
    return this.#listener.addr;
  }

  /**
   * Accepts clients until `signal` aborts, then waits for every client handler
   * to end. Accept errors (such as running out of file descriptors) are logged
   * and retried with backoff from 5 ms up to 1 s.
   */
  async serve(options: DatabaseListenerOptions, signal: AbortSignal): Promise<void> {
    const onAbort = () => this.close();
    signal.addEventListener("abort", onAbort, { once: true });
    let backoff = 0;
    try {
      while (!signal.aborted) {
        let conn: Deno.TcpConn;
        try {
          conn = await this.#listener.accept();
        } catch (error) {
          if (this.#closed || signal.aborted) break;
          backoff = backoff === 0 ? 5 : Math.min(backoff * 2, 1000);
          log.error(
            "Database {database}: accept failed on port {port}: {error}; retrying in {backoff} ms",
            {
              database: this.database.name,
              port: this.database.port,
              error: describeNetworkError(error),
              backoff,
            },
          );
          await sleep(backoff, signal);
          continue;
        }
        backoff = 0;
        this.#handlers++;
        void this.#handleClient(conn, options, signal);
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.close();
      this.#acceptEnded.resolve();
    }
    if (this.#handlers > 0) {
      this.#handlersEnded = Promise.withResolvers();
      await this.#handlersEnded.promise;
    }
  }

  /** Stops accepting. Live tunnels are left to the registry. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#listener.close();
    } catch (error) {
      if (!(error instanceof Deno.errors.BadResource)) throw error;
    }
  }

  /** Serves one client; never rejects, and counts itself out when it ends. */
  async #handleClient(
    client: Deno.TcpConn,
    options: DatabaseListenerOptions,
    signal: AbortSignal,
  ): Promise<void> {
    try {
      await this.#serveClient(client, options, signal);
    } catch (error) {
      log.error("Database {database}: client handler failed: {error}", {
        database: this.database.name,
        error: String(error),
      });
      closeQuietly(client);
    } finally {
      if (--this.#handlers === 0) this.#handlersEnded?.resolve();
    }
  }

  async #serveClient(
    client: Deno.TcpConn,
    { watcher, registry, buffers }: DatabaseListenerOptions,
    signal: AbortSignal,
  ): Promise<void> {
    client.setNoDelay(true);
    watcher.stats.connectionsTotal++;
    // The watcher holds the current settings: a reload may have changed them.
    const { timeouts } = watcher.database;
    const waitUntil = performance.now() + timeouts.clientWaitMs;
    let dialError: string | undefined;
    let retryDelay = 0;
    while (!signal.aborted) {
      const remaining = waitUntil - performance.now();
      const master = watcher.master ??
        (remaining > 0 ? await watcher.waitForMaster(remaining, signal) : undefined);
      if (!master) break;
      let upstream: Deno.TcpConn;
      try {
        upstream = await dial(master.address, timeouts.masterConnectMs);
      } catch (error) {
        dialError = `cannot connect to master ${formatAddress(master.address)}: ${
          error instanceof DialTimeout
            ? `no connection within ${timeouts.masterConnectMs} ms`
            : describeNetworkError(error)
        }`;
        watcher.reportUnreachable(master.address);
        // Try again once the watcher has checked the master again, backing off a little.
        const left = waitUntil - performance.now();
        if (left <= 0) break;
        retryDelay = Math.min(retryDelay === 0 ? 50 : retryDelay * 2, 500);
        await Promise.all([
          watcher.nextResolution(left, signal),
          sleep(Math.min(retryDelay, left), signal),
        ]);
        continue;
      }
      // The master may have changed while connecting: never join a client to a demoted node.
      const current = watcher.master;
      if (
        !current || !sameAddress(current.address, master.address) ||
        signal.aborted
      ) {
        closeQuietly(upstream);
        continue;
      }
      upstream.setNoDelay(true);
      const tunnel = new Tunnel(client, upstream, master.address, watcher.stats);
      registry.add(tunnel);
      try {
        await tunnel.run(buffers);
      } finally {
        registry.delete(tunnel);
      }
      return;
    }
    await this.#reject(client, watcher, signal, dialError);
  }

  async #reject(
    client: Deno.TcpConn,
    watcher: MasterSource,
    signal: AbortSignal,
    dialError: string | undefined,
  ): Promise<void> {
    const { name, timeouts } = watcher.database;
    const problem = watcher.problem;
    const reason = signal.aborted
      ? "sentinel-tunnel is shutting down"
      : problem?.kind === "unknown"
      ? problem.detail
      : `no confirmed master after waiting ${timeouts.clientWaitMs} ms: ${
        problem?.detail ?? dialError ?? "still resolving"
      }`;
    const peer = client.remoteAddr;
    watcher.stats.connectionsRejected++;
    log.warn("Database {database}: rejected client {client}: {reason}", {
      database: name,
      client: formatAddress(peer),
      reason,
    });
    try {
      await client.write(
        encodeError(`ERR sentinel-tunnel: database "${name}": ${reason}`),
      );
      // Let the client read the error: a close with its command unread would reset the connection.
      await client.closeWrite();
      const drain = new Uint8Array(512);
      const linger = AbortSignal.timeout(REJECT_LINGER_MS);
      const onLinger = () => closeQuietly(client);
      linger.addEventListener("abort", onLinger, { once: true });
      signal.addEventListener("abort", onLinger, { once: true });
      try {
        while (await client.read(drain) !== null) { /* discard */ }
      } finally {
        linger.removeEventListener("abort", onLinger);
        signal.removeEventListener("abort", onLinger);
      }
    } catch {
      // The client went away first.
    } finally {
      closeQuietly(client);
    }
  }
}

/** A dial that did not connect in time. */
class DialTimeout extends Error {
  override name = "DialTimeout";
}

/**
 * Connects under a deadline. One timer per dial, where `AbortSignal.any` and
 * `AbortSignal.timeout` would cost more on every new client; a connection that
 * completes after the deadline is closed.
 */
function dial(address: Address, timeoutMs: number): Promise<Deno.TcpConn> {
  return new Promise((resolve, reject) => {
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      reject(new DialTimeout(`no connection within ${timeoutMs} ms`));
    }, timeoutMs);
    Deno.connect({ hostname: address.hostname, port: address.port }).then((conn) => {
      if (late) return closeQuietly(conn);
      clearTimeout(timer);
      resolve(conn);
    }, (error) => {
      if (late) return;
      clearTimeout(timer);
      reject(error);
    });
  });
}
