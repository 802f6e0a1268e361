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
import type { ClientSlots } from "./client_slots.ts";
import type { ConnectionRegistry } from "./connection_registry.ts";
import type { MasterSource } from "./master_source.ts";
import {
  acceptErrorKind,
  closeQuietly,
  describeNetworkError,
  ListenError,
  sleep,
} from "../shared/io.ts";
import { RejectionLog } from "./rejection_log.ts";
import { Tunnel, type TunnelBuffers } from "./tunnel.ts";
import { encodeError } from "./resp_error.ts";

const log = getLogger(["sentinel-tunnel", "listener"]);

/** Options for {@linkcode DatabaseListener.serve}. */
export interface DatabaseListenerOptions {
  watcher: MasterSource;
  registry: ConnectionRegistry<Tunnel>;
  /** Where tunnels take their buffers. */
  buffers: TunnelBuffers;
  /**
   * The live clients of every database together (the top-level `maxClients`).
   * @default {undefined} no cap over all databases
   */
  slots?: ClientSlots;
}

/** How long a rejected client gets to read its error before the connection closes. */
const REJECT_LINGER_MS = 1000;

/**
 * Accept failures for lack of descriptors, buffers or memory closer together
 * than this are one episode, logged once: longer than the longest backoff,
 * so that accepts which flap between failing and succeeding log no more.
 */
const EXHAUSTION_EPISODE_MS = 5000;

/** Listens on one database's port and tunnels each client to its master. */
export class DatabaseListener {
  readonly database: DatabaseConfig;
  readonly #listener: Deno.TcpListener;
  /** Client handlers still running, and who waits for them to end. */
  #handlers = 0;
  readonly #acceptEnded = Promise.withResolvers<void>();
  #handlersEnded: PromiseWithResolvers<void> | undefined;
  /** Clients counted against the database's `maxClients`: tunnelled or waiting for a master. */
  #clients = 0;
  readonly #rejections: RejectionLog;
  #closed = false;

  private constructor(database: DatabaseConfig, listener: Deno.TcpListener) {
    this.database = database;
    this.#listener = listener;
    this.#rejections = new RejectionLog(database.name);
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
   * to end. An accept error that belongs to one connection (it reset or
   * aborted before it was accepted) is skipped at once; running out of file
   * descriptors, buffers or memory is logged once and retried with backoff
   * from 5 ms up to 1 s. Only closing the listener ends the loop.
   */
  async serve(options: DatabaseListenerOptions, signal: AbortSignal): Promise<void> {
    const onAbort = () => this.close();
    signal.addEventListener("abort", onAbort, { once: true });
    const { stats } = options.watcher;
    let backoff = 0;
    let exhaustedAccepts = 0;
    let lastExhausted = -Infinity;
    try {
      while (!signal.aborted) {
        let conn: Deno.TcpConn;
        try {
          conn = await this.#listener.accept();
        } catch (error) {
          if (this.#closed || signal.aborted) break;
          const kind = acceptErrorKind(error);
          if (kind === "closed" && error instanceof Deno.errors.Interrupted) continue;
          if (kind === "closed") {
            log.error("Database {database}: stopped accepting on port {port}: {error}", {
              database: this.database.name,
              port: this.database.port,
              error: describeNetworkError(error),
            });
            break;
          }
          // A backoff here would stall the port for everyone behind a client that reset.
          if (kind === "connection") {
            stats.connectionsAbortedBeforeAccept++;
            continue;
          }
          backoff = backoff === 0 ? 5 : Math.min(backoff * 2, 1000);
          const now = performance.now();
          if (now - lastExhausted > EXHAUSTION_EPISODE_MS) {
            exhaustedAccepts = 0;
            log.error(
              "Database {database}: accept failed on port {port}: {error}; backing off up to 1 s until it recovers; raise the file descriptor limit (ulimit -n) or lower maxClients",
              {
                database: this.database.name,
                port: this.database.port,
                error: describeNetworkError(error),
              },
            );
          }
          exhaustedAccepts++;
          lastExhausted = now;
          await sleep(backoff, signal);
          continue;
        }
        backoff = 0;
        if (exhaustedAccepts > 0 && performance.now() - lastExhausted > EXHAUSTION_EPISODE_MS) {
          log.info(
            "Database {database}: accepting again on port {port}, after {failures} failed accepts",
            { database: this.database.name, port: this.database.port, failures: exhaustedAccepts },
          );
          exhaustedAccepts = 0;
        }
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
    this.#rejections.flush();
  }

  /** Whether it stopped accepting: closed, or its accept loop ended. */
  get closed(): boolean {
    return this.#closed;
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

  /** Admits a client under both caps, or refuses it; counts it out when it ends. */
  async #serveClient(
    client: Deno.TcpConn,
    options: DatabaseListenerOptions,
    signal: AbortSignal,
  ): Promise<void> {
    const { watcher, slots } = options;
    watcher.stats.connectionsTotal++;
    // The watcher holds the current settings: a reload may have changed them.
    const { maxClients } = watcher.database;
    if (this.#clients >= maxClients) {
      watcher.stats.connectionsOverDatabaseLimit++;
      return await this.#refuse(
        client,
        `too many clients (${maxClients}): this database's maxClients is reached; retry later, or raise the database's maxClients`,
        signal,
      );
    }
    if (slots !== undefined && !slots.tryTake()) {
      watcher.stats.connectionsOverTotalLimit++;
      return await this.#refuse(
        client,
        `too many clients (${slots.limit}): maxClients of all databases together is reached; retry later, or raise the top-level maxClients`,
        signal,
      );
    }
    this.#clients++;
    try {
      await this.#tunnelClient(client, options, signal);
    } finally {
      this.#clients--;
      slots?.give();
    }
  }

  /** Joins a client to the confirmed master, waiting up to `clientWaitMs` for one, or refuses it. */
  async #tunnelClient(
    client: Deno.TcpConn,
    { watcher, registry, buffers }: DatabaseListenerOptions,
    signal: AbortSignal,
  ): Promise<void> {
    const { timeouts, tcpKeepAlive } = watcher.database;
    client.setNoDelay(true);
    if (tcpKeepAlive) client.setKeepAlive(true);
    const waitUntil = performance.now() + timeouts.clientWaitMs;
    let dialError: string | undefined;
    let retryDelay = 0;
    while (!signal.aborted) {
      const remaining = waitUntil - performance.now();
      const master = watcher.master ??
        (remaining > 0 ? await watcher.waitForMaster(remaining, signal) : undefined);
      if (!master || signal.aborted) break;
      let upstream: Deno.TcpConn;
      try {
        upstream = await dial(master.address, timeouts.masterConnectMs, signal);
      } catch (error) {
        if (signal.aborted) break;
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
      if (tcpKeepAlive) upstream.setKeepAlive(true);
      const tunnel = new Tunnel(client, upstream, master.address, watcher.stats);
      registry.add(tunnel);
      try {
        await tunnel.run(buffers, { idleMs: timeouts.clientIdleMs });
      } finally {
        registry.delete(tunnel);
      }
      return;
    }
    await this.#reject(client, watcher, signal, dialError);
  }

  /** Refuses a client that no master could be found for, saying why. */
  async #reject(
    client: Deno.TcpConn,
    watcher: MasterSource,
    signal: AbortSignal,
    dialError: string | undefined,
  ): Promise<void> {
    const { timeouts } = watcher.database;
    const problem = watcher.problem;
    const reason = signal.aborted
      ? "sentinel-tunnel is shutting down"
      : problem?.kind === "unknown"
      ? problem.detail
      : `no confirmed master after waiting ${timeouts.clientWaitMs} ms: ${
        problem?.detail ?? dialError ?? "still resolving"
      }`;
    watcher.stats.connectionsRejected++;
    await this.#refuse(client, reason, signal);
  }

  /** Answers a client with a RESP error naming the database and `reason`, then closes it. */
  async #refuse(client: Deno.TcpConn, reason: string, signal: AbortSignal): Promise<void> {
    const name = this.database.name;
    this.#rejections.rejected(formatAddress(client.remoteAddr), reason);
    try {
      await client.write(
        encodeError(`ERR sentinel-tunnel: database "${name}": ${reason}`),
      );
      // Shutting down waits for no client.
      if (signal.aborted) return;
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
 * Connects under a deadline, and aborts the connect itself when the deadline
 * passes or `signal` aborts: a connect merely no longer waited for would hold
 * a socket in SYN_SENT for minutes, and shutdown would wait for it. One timer
 * and one controller per dial, where `AbortSignal.any` and
 * `AbortSignal.timeout` would cost more on every new client.
 */
async function dial(
  address: Address,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<Deno.TcpConn> {
  signal.throwIfAborted();
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new DialTimeout(`no connection within ${timeoutMs} ms`)),
    timeoutMs,
  );
  const onAbort = () => controller.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    return await Deno.connect({
      hostname: address.hostname,
      port: address.port,
      signal: controller.signal,
    });
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
  }
}
