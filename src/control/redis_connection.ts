/**
 * A control-plane connection to a Redis node or a Sentinel: commands out, RESP
 * replies in, every step under a deadline. A deadline that passes closes the
 * connection, so a hung peer costs at most its timeout.
 *
 * @module
 */
import { type Address, formatAddress } from "../shared/address.ts";
import { encodeCommand, parseReply, RespErrorReply, type RespValue } from "./resp.ts";
import { closeQuietly } from "../shared/io.ts";
import { describeNetworkError } from "../shared/errors.ts";
import {
  type ByteStream,
  ConnectError,
  type ConnectFailure,
  connectTo,
} from "../shared/connect.ts";
import type { TlsClientSettings } from "../shared/settings.ts";

/** Credentials sent with AUTH. */
export interface AuthOptions {
  readonly username?: string;
  readonly password: string;
}

/** Options for {@linkcode RedisConnection.open}. */
export interface OpenOptions {
  /** Deadline for the connect, the TLS handshake included. */
  connectTimeoutMs: number;
  /** TLS settings; plain TCP when absent. */
  tls?: TlsClientSettings | undefined;
  /** Deadline for each reply, AUTH included. */
  replyTimeoutMs: number;
  /** Sent with AUTH right after connecting. */
  auth?: AuthOptions | undefined;
  /** Aborts the connect. */
  signal?: AbortSignal | undefined;
}

/**
 * What kind of failure a call met; callers sort failures by it, never by the words:
 * - `unreachable`: refused, reset, closed by the peer;
 * - `connect-timeout`: no TCP connection in time (a silent link);
 * - `handshake-timeout`: connected, but no TLS handshake in time (alive, not answering);
 * - `reply-timeout`: no reply in time (alive, not answering: busy, frozen);
 * - `turn-timeout`: earlier calls on the connection did not end in time;
 * - `error-reply`: an error reply that shows the peer is not working (AUTH refused, say);
 * - `protocol`: a reply that is not RESP, or over a cap;
 * - `tls`: the peer's certificate failed verification.
 */
export type RedisCallFailure =
  | ConnectFailure
  | "reply-timeout"
  | "turn-timeout"
  | "error-reply"
  | "protocol";

/**
 * A call to a Redis node or Sentinel failed: it was unreachable, too slow, or
 * answered with an error. `message` is short and names the address.
 */
export class RedisCallError extends Error {
  override name = "RedisCallError";
  /** The peer that failed. */
  readonly address: Address;
  /** What kind of failure it was. */
  readonly kind: RedisCallFailure;
  /** For an `error-reply`: the reply's code, such as `NOAUTH` or `WRONGPASS`. */
  readonly code: string | undefined;
  constructor(
    address: Address,
    kind: RedisCallFailure,
    detail: string,
    options?: ErrorOptions & { code?: string },
  ) {
    super(`${formatAddress(address)}: ${detail}`, options);
    this.address = address;
    this.kind = kind;
    this.code = options?.code;
  }
}

const READ_CHUNK = 4096;

/** The most a control-plane reply may take in memory, all of it: a peer that sends more is cut off. */
export const MAX_REPLY_BYTES = 4 * 1024 * 1024;

/** One TCP or TLS connection that speaks RESP, for the control plane only. */
export class RedisConnection implements Disposable {
  readonly address: Address;
  readonly #conn: ByteStream;
  readonly #replyTimeoutMs: number;
  #buffer = new Uint8Array(READ_CHUNK);
  #start = 0;
  #end = 0;
  #closed = false;
  /** A read kept pending between calls by {@linkcode watchIdle}; the next call takes it over. */
  #idleRead: Promise<number | null> | undefined;
  #onPeerClosed: (() => void) | undefined;

  private constructor(
    address: Address,
    conn: ByteStream,
    replyTimeoutMs: number,
  ) {
    this.address = address;
    this.#conn = conn;
    this.#replyTimeoutMs = replyTimeoutMs;
  }

  /**
   * Connects, and authenticates when `auth` is given.
   *
   * @throws {RedisCallError} when the peer cannot be reached in time or refuses AUTH
   */
  static async open(
    address: Address,
    options: OpenOptions,
  ): Promise<RedisConnection> {
    let conn: ByteStream;
    try {
      conn = await connectTo(address, {
        timeoutMs: options.connectTimeoutMs,
        signal: options.signal,
        tls: options.tls,
        keepAlive: true,
      });
    } catch (error) {
      if (!(error instanceof ConnectError)) throw error;
      throw new RedisCallError(address, error.kind, error.message, { cause: error });
    }
    const connection = new RedisConnection(
      address,
      conn,
      options.replyTimeoutMs,
    );
    if (options.auth) {
      try {
        const args = options.auth.username === undefined
          ? ["AUTH", options.auth.password]
          : ["AUTH", options.auth.username, options.auth.password];
        const reply = await connection.call(args);
        if (reply instanceof RespErrorReply) {
          throw new RedisCallError(address, "error-reply", `AUTH failed: ${reply.message}`, {
            code: reply.code,
          });
        }
      } catch (error) {
        connection.close();
        throw error;
      }
    }
    return connection;
  }

  /**
   * Sends a command and reads its reply within the reply deadline. An error
   * reply is returned as a {@linkcode RespErrorReply}, not thrown.
   *
   * @throws {RedisCallError} when the peer fails or is too slow; the connection is then closed
   */
  async call(
    args: readonly string[],
    signal?: AbortSignal,
  ): Promise<RespValue> {
    await this.send(args);
    try {
      return await this.read({
        timeoutMs: this.#replyTimeoutMs,
        ...(signal ? { signal } : {}),
      });
    } finally {
      this.#armIdleRead();
    }
  }

  /**
   * Keeps a read pending between calls, so that a peer that closes the
   * connection (a node killed or restarted) is seen at once, not at the next
   * call: `onClosed` runs then, once. A close by this side does not call it.
   */
  watchIdle(onClosed: () => void): void {
    this.#onPeerClosed = onClosed;
    this.#armIdleRead();
  }

  #armIdleRead(): void {
    if (!this.#onPeerClosed || this.#closed || this.#idleRead) return;
    const peerClosed = () => {
      if (this.#closed) return;
      this.close();
      this.#onPeerClosed?.();
    };
    // Between calls nothing is owed: bytes left over, or sent unasked, would be taken for the
    // next call's reply. Such a peer is dropped like one that closed.
    if (this.#start !== this.#end) return peerClosed();
    const read = this.#conn.read(this.#buffer.subarray(this.#end));
    this.#idleRead = read;
    read.then(() => {
      // A call took the read over: its bytes are the call's reply.
      if (this.#idleRead !== read) return;
      this.#idleRead = undefined;
      peerClosed();
    }, () => {
      if (this.#idleRead !== read) return;
      this.#idleRead = undefined;
      peerClosed();
    });
  }

  /** Writes a command without waiting for its reply. */
  async send(args: readonly string[]): Promise<void> {
    const bytes = encodeCommand(args);
    try {
      let written = 0;
      while (written < bytes.length) {
        written += await this.#conn.write(bytes.subarray(written));
      }
    } catch (error) {
      this.close();
      throw new RedisCallError(
        this.address,
        "unreachable",
        describeNetworkError(error),
        { cause: error },
      );
    }
  }

  /**
   * Reads the next reply. With `timeoutMs`, a reply that does not come in time
   * closes the connection; without it, only `signal` or the peer ends the wait.
   *
   * @throws {RedisCallError} when the peer closes, fails or is too slow
   */
  async read(
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<RespValue> {
    const deadline = options.timeoutMs === undefined
      ? undefined
      : AbortSignal.timeout(options.timeoutMs);
    const signals = [deadline, options.signal].filter((s): s is AbortSignal => s !== undefined);
    const signal = signals.length === 0 ? undefined : AbortSignal.any(signals);
    const onAbort = () => this.close();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for (;;) {
        const parsed = this.#parseBuffered();
        if (parsed !== undefined) return parsed;
        if (signal?.aborted) onAbort();
        if (this.#closed) {
          throw new Deno.errors.BadResource("connection closed");
        }
        let n: number | null;
        const idle = this.#idleRead;
        if (idle) {
          // The idle read reads into the buffer as it is: take it over before moving anything.
          this.#idleRead = undefined;
          n = await idle;
        } else {
          if (this.#end === this.#buffer.length) this.#makeRoom();
          n = await this.#conn.read(this.#buffer.subarray(this.#end));
        }
        if (n === null) {
          this.close();
          throw new RedisCallError(
            this.address,
            "unreachable",
            "connection closed by peer",
          );
        }
        this.#end += n;
      }
    } catch (error) {
      if (error instanceof RedisCallError) throw error;
      if (deadline?.aborted) {
        throw new RedisCallError(
          this.address,
          "reply-timeout",
          `no reply within ${options.timeoutMs} ms`,
          {
            cause: error,
          },
        );
      }
      if (options.signal?.aborted) throw options.signal.reason;
      this.close();
      throw new RedisCallError(
        this.address,
        "unreachable",
        describeNetworkError(error),
        { cause: error },
      );
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  #parseBuffered(): RespValue | undefined {
    if (this.#start === this.#end) return undefined;
    let parsed;
    try {
      parsed = parseReply(this.#buffer.subarray(0, this.#end), this.#start);
    } catch (error) {
      this.close();
      throw new RedisCallError(
        this.address,
        "protocol",
        (error as Error).message,
        { cause: error },
      );
    }
    if (parsed === undefined) return undefined;
    this.#start = parsed.end;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return parsed.value;
  }

  #makeRoom(): void {
    const pending = this.#end - this.#start;
    if (pending >= MAX_REPLY_BYTES) {
      this.close();
      throw new RedisCallError(
        this.address,
        "protocol",
        `a reply is larger than ${MAX_REPLY_BYTES} bytes`,
      );
    }
    const size = pending * 2 > this.#buffer.length ? this.#buffer.length * 2 : this.#buffer.length;
    const next = new Uint8Array(size);
    next.set(this.#buffer.subarray(this.#start, this.#end));
    this.#buffer = next;
    this.#start = 0;
    this.#end = pending;
  }

  /** Whether it was closed, by a caller, a failure or a deadline. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Closes the connection; calling it again does nothing. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.#conn);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
