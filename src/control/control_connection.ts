/**
 * One persistent control-plane connection to a Sentinel or a Redis node: it is
 * opened on first use (with AUTH once), reused for every call, and opened again
 * after a failure, no sooner than a backoff allows. Calls take turns, so
 * several databases can share the connection to one Sentinel.
 *
 * @module
 */
import type { Address } from "../shared/address.ts";
import { type OpenOptions, RedisCallError, RedisConnection } from "./redis_connection.ts";
import type { RespValue } from "./resp.ts";

/** How a connection is opened; read again for every new connection, so a reload applies. */
export type ConnectSettings = Omit<OpenOptions, "signal">;

/** The first wait after a failed connect; it doubles up to {@linkcode MAX_BACKOFF_MS}. */
const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 2000;

/** A persistent connection; see the module doc. */
export class ControlConnection implements Disposable {
  readonly address: Address;
  readonly #settings: () => ConnectSettings;
  #connection: RedisConnection | undefined;
  /** Settles when the call before the next one has ended. */
  #turn: Promise<void> = Promise.resolve();
  #failures = 0;
  #retryAt = 0;
  #lastError: RedisCallError | undefined;
  #closed = false;
  /** How many connections were opened: once, while the peer stays healthy. */
  opened = 0;

  readonly #onPeerClosed: (() => void) | undefined;

  /**
   * `settings` is read for every new connection. With `onPeerClosed`, a read
   * is kept pending between calls, and it runs as soon as the peer closes the
   * connection (see {@linkcode RedisConnection.watchIdle}).
   */
  constructor(address: Address, settings: () => ConnectSettings, onPeerClosed?: () => void) {
    this.address = address;
    this.#settings = settings;
    this.#onPeerClosed = onPeerClosed;
  }

  /**
   * Sends one command and returns its reply; an error reply is a value. A
   * failed or timed-out call closes the connection, and the next call opens
   * a new one.
   *
   * @throws {RedisCallError} when the peer cannot be reached or fails; at once while backing off
   */
  async call(args: readonly string[], signal: AbortSignal): Promise<RespValue> {
    const previous = this.#turn;
    const mine = Promise.withResolvers<void>();
    // The next call waits for this one and the one before it, even if this one gives up early.
    this.#turn = previous.then(() => mine.promise);
    try {
      // Waiting for the calls before it is bounded too: a hung peer cannot pile calls up.
      const { connectTimeoutMs, replyTimeoutMs } = this.#settings();
      const turnDeadline = AbortSignal.timeout(2 * (connectTimeoutMs + replyTimeoutMs));
      await untilOrAborted(previous, AbortSignal.any([signal, turnDeadline]));
      if (signal.aborted) throw signal.reason;
      if (turnDeadline.aborted) {
        throw new RedisCallError(
          this.address,
          "turn-timeout",
          "no turn: earlier calls are still waiting",
        );
      }
      const connection = this.#connection ?? await this.#open(signal);
      try {
        return await connection.call(args, signal);
      } finally {
        if (connection.closed && this.#connection === connection) this.#connection = undefined;
      }
    } finally {
      mine.resolve();
    }
  }

  /** Closes the connection now; the next call opens a new one (after a reload, say). */
  reset(): void {
    this.#connection?.close();
    this.#connection = undefined;
    this.#failures = 0;
    this.#retryAt = 0;
  }

  /** Closes it for good. */
  close(): void {
    this.#closed = true;
    this.reset();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async #open(signal: AbortSignal): Promise<RedisConnection> {
    if (this.#closed) {
      throw new RedisCallError(this.address, "unreachable", "control connection closed");
    }
    const wait = this.#retryAt - performance.now();
    if (wait > 0 && this.#lastError) {
      throw new RedisCallError(
        this.address,
        this.#lastError.kind,
        `${this.#lastError.message.replace(/^[^ ]+: /, "")}; next attempt in ${Math.ceil(wait)} ms`,
        this.#lastError.code === undefined ? {} : { code: this.#lastError.code },
      );
    }
    try {
      const connection = await RedisConnection.open(this.address, {
        ...this.#settings(),
        signal,
      });
      this.opened++;
      this.#failures = 0;
      this.#lastError = undefined;
      if (this.#closed) {
        connection.close();
        throw new RedisCallError(this.address, "unreachable", "control connection closed");
      }
      this.#connection = connection;
      const onPeerClosed = this.#onPeerClosed;
      if (onPeerClosed) {
        connection.watchIdle(() => {
          if (this.#connection === connection) this.#connection = undefined;
          onPeerClosed();
        });
      }
      return connection;
    } catch (error) {
      if (!signal.aborted && error instanceof RedisCallError) {
        this.#failures++;
        this.#lastError = error;
        this.#retryAt = performance.now() +
          Math.min(FIRST_BACKOFF_MS * 2 ** (this.#failures - 1), MAX_BACKOFF_MS);
      }
      throw error;
    }
  }
}

function untilOrAborted(promise: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      signal.removeEventListener("abort", done);
      resolve();
    };
    signal.addEventListener("abort", done, { once: true });
    promise.then(done);
  });
}
