/**
 * Test utility: a small RESP2 server on 127.0.0.1 that plays a hostile peer,
 * such as a Sentinel that lies or a node that should never be reached.
 *
 * ```ts
 * await using node = await startFakeNode({ password: "secret" });
 * await using sentinel = await startFakeSentinel({
 *   masterName: "mymaster",
 *   master: { host: "127.0.0.1", port: 6379 },
 * });
 * sentinel.claim({ host: "127.0.0.1", port: node.port }, 1_000_000);
 * await sentinel.publish("+switch-master", `mymaster 127.0.0.1 6379 127.0.0.1 ${node.port}`);
 * assert.equal(node.count("SET"), 0);
 * ```
 *
 * It records every command each connection sends, answers through a handler,
 * and speaks pub/sub as Redis does: SUBSCRIBE and PSUBSCRIBE confirm each
 * channel, and {@linkcode FakeRedis.publish} delivers to every subscriber.
 * Disposing it closes the listener and every connection.
 *
 * What it does not do: RESP3, MULTI, blocking commands, or anything a test
 * does not ask of it. It never talks to a real Redis.
 *
 * @module
 */

const HOST = "127.0.0.1";
/** A connection that sends more than this without a complete command is closed. */
const MAX_BUFFERED_BYTES = 1024 * 1024;
/** The command log keeps this many entries; counts go on past it. */
const MAX_RECORDED_COMMANDS = 20_000;
const READ_CHUNK = 16 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A status reply, such as `+OK`. */
export interface StatusReply {
  readonly status: string;
}

/** An error reply, such as `-ERR unknown command`. */
export interface ErrorReply {
  readonly error: string;
}

/**
 * A RESP2 reply: a status or error, a bulk string (a plain string), an integer
 * (a number), a null bulk string (`null`), or an array of replies.
 */
export type RespReply =
  | StatusReply
  | ErrorReply
  | string
  | number
  | null
  | readonly RespReply[];

/** A status reply, such as `status("OK")` for `+OK`. */
export function status(text: string): StatusReply {
  return { status: text };
}

/** An error reply, such as `errorReply("BUSY Redis is busy")`. */
export function errorReply(text: string): ErrorReply {
  return { error: text };
}

/** Returned by a handler: send nothing, as a hung peer would. */
export const NO_REPLY: unique symbol = Symbol("NO_REPLY");

/** One client connection of a {@linkcode FakeRedis}. */
export interface FakeClient {
  /** Numbered from 1 in order of acceptance. */
  readonly id: number;
  /** Every command this connection sent, in order (up to the server's cap). */
  readonly commands: readonly (readonly string[])[];
  /** Channels it subscribed to with SUBSCRIBE. */
  readonly channels: ReadonlySet<string>;
  /** Patterns it subscribed to with PSUBSCRIBE. */
  readonly patterns: ReadonlySet<string>;
  /** Sends a reply or a push message to this client. */
  send(reply: RespReply): Promise<void>;
  /** Closes the connection. Idempotent. */
  close(): void;
}

/**
 * Answers one command. Return a reply to send it, {@linkcode NO_REPLY} to send
 * nothing, or `undefined` for the built-in behaviour: pub/sub commands as Redis
 * answers them, PING with `+PONG`, and `+OK` to everything else.
 */
export type FakeHandler = (
  command: readonly string[],
  client: FakeClient,
) => RespReply | typeof NO_REPLY | undefined;

/** Options for {@linkcode startFakeRedis}. */
export interface FakeRedisOptions {
  /**
   * Answers commands; see {@linkcode FakeHandler}.
   * @default {() => undefined}
   */
  handle?: FakeHandler;
  /**
   * A fixed port; without it, the system picks a free one.
   * @default {0}
   */
  port?: number;
}

/** A command as the server received it. */
export interface ReceivedCommand {
  /** The {@linkcode FakeClient.id} of the connection that sent it. */
  readonly client: number;
  readonly command: readonly string[];
}

/** A running fake server. See {@linkcode startFakeRedis}. */
export interface FakeRedis extends AsyncDisposable {
  /** TCP port on 127.0.0.1. */
  readonly port: number;
  /** `"127.0.0.1:PORT"`. */
  readonly address: string;
  /** Every command received, from every connection, in order (up to 20 000). */
  readonly commands: readonly ReceivedCommand[];
  /** How many connections were accepted so far. */
  readonly connections: number;
  /** The connections still open. */
  readonly clients: readonly FakeClient[];
  /** How many commands named `name` (case-insensitive) arrived, on every connection. */
  count(name: string): number;
  /** How many open connections would get a message published on `channel` now. */
  subscribers(channel: string): number;
  /**
   * Sends `message` to every client subscribed to `channel`, directly or by
   * pattern, as Redis does. Resolves with how many clients it was sent to.
   */
  publish(channel: string, message: string): Promise<number>;
  /** Closes the listener and every connection, and waits for them. Idempotent. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts a fake RESP2 server on 127.0.0.1. */
export function startFakeRedis(options: FakeRedisOptions = {}): Promise<FakeRedis> {
  return Promise.resolve(new FakeRedisServer(options));
}

class FakeConnection implements FakeClient {
  readonly id: number;
  readonly commands: string[][] = [];
  readonly channels = new Set<string>();
  readonly patterns = new Set<string>();
  readonly #conn: Deno.TcpConn;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(id: number, conn: Deno.TcpConn) {
    this.id = id;
    this.#conn = conn;
  }

  get conn(): Deno.TcpConn {
    return this.#conn;
  }

  get subscribed(): boolean {
    return this.channels.size + this.patterns.size > 0;
  }

  send(reply: RespReply): Promise<void> {
    const bytes = encodeReply(reply);
    // One write at a time, so that a push message never lands inside a reply.
    this.#writing = this.#writing.then(() => this.#writeAll(bytes));
    return this.#writing;
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    if (this.#closed) return;
    try {
      let offset = 0;
      while (offset < bytes.length) {
        offset += await this.#conn.write(bytes.subarray(offset));
      }
    } catch {
      // The peer went away: the read loop sees it and ends the connection.
      this.close();
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch (error) {
      if (!(error instanceof Deno.errors.BadResource)) throw error;
    }
  }
}

class FakeRedisServer implements FakeRedis {
  readonly port: number;
  readonly address: string;
  readonly commands: ReceivedCommand[] = [];
  #connections = 0;
  readonly #counts = new Map<string, number>();
  readonly #listener: Deno.TcpListener;
  readonly #handle: FakeHandler;
  readonly #clients = new Set<FakeConnection>();
  readonly #loops = new Set<Promise<void>>();
  readonly #accepting: Promise<void>;
  #disposed: Promise<void> | undefined;

  constructor(options: FakeRedisOptions) {
    this.#listener = Deno.listen({ hostname: HOST, port: options.port ?? 0 });
    this.port = this.#listener.addr.port;
    this.address = `${HOST}:${this.port}`;
    this.#handle = options.handle ?? (() => undefined);
    this.#accepting = this.#accept();
  }

  get connections(): number {
    return this.#connections;
  }

  get clients(): readonly FakeClient[] {
    return [...this.#clients];
  }

  count(name: string): number {
    return this.#counts.get(name.toUpperCase()) ?? 0;
  }

  subscribers(channel: string): number {
    return [...this.#clients].filter((client) =>
      client.channels.has(channel) ||
      [...client.patterns].some((pattern) => globMatches(pattern, channel))
    ).length;
  }

  async publish(channel: string, message: string): Promise<number> {
    const sends: Promise<void>[] = [];
    for (const client of this.#clients) {
      if (client.channels.has(channel)) {
        sends.push(client.send(["message", channel, message]));
      }
      for (const pattern of client.patterns) {
        if (globMatches(pattern, channel)) {
          sends.push(client.send(["pmessage", pattern, channel, message]));
        }
      }
    }
    await Promise.all(sends);
    return sends.length;
  }

  async #accept(): Promise<void> {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (error instanceof Deno.errors.BadResource) return;
        throw error;
      }
      const client = new FakeConnection(++this.#connections, conn);
      this.#clients.add(client);
      const loop = this.#serve(client).finally(() => {
        client.close();
        this.#clients.delete(client);
        this.#loops.delete(loop);
      });
      this.#loops.add(loop);
    }
  }

  async #serve(client: FakeConnection): Promise<void> {
    let pending: Uint8Array = new Uint8Array(0);
    const chunk = new Uint8Array(READ_CHUNK);
    for (;;) {
      let read: number | null;
      try {
        read = await client.conn.read(chunk);
      } catch {
        return; // Reset, or closed by dispose.
      }
      if (read === null) return;
      pending = concat(pending, chunk.subarray(0, read));
      for (;;) {
        let parsed: { command: string[]; end: number } | undefined;
        try {
          parsed = parseCommand(pending);
        } catch {
          await client.send(errorReply("ERR Protocol error"));
          return;
        }
        if (parsed === undefined) break;
        pending = pending.subarray(parsed.end);
        if (parsed.command.length === 0) continue;
        this.#record(client, parsed.command);
        await this.#answer(client, parsed.command);
      }
      if (pending.length > MAX_BUFFERED_BYTES) {
        await client.send(errorReply("ERR Protocol error: too big request"));
        return;
      }
    }
  }

  #record(client: FakeConnection, command: string[]): void {
    const name = command[0]!.toUpperCase();
    this.#counts.set(name, (this.#counts.get(name) ?? 0) + 1);
    if (this.commands.length < MAX_RECORDED_COMMANDS) {
      this.commands.push({ client: client.id, command });
    }
    if (client.commands.length < MAX_RECORDED_COMMANDS) client.commands.push(command);
  }

  async #answer(client: FakeConnection, command: string[]): Promise<void> {
    const reply = this.#handle(command, client);
    if (reply === NO_REPLY) return;
    if (reply !== undefined) {
      await client.send(reply);
      return;
    }
    const name = command[0]!.toUpperCase();
    const args = command.slice(1);
    switch (name) {
      case "SUBSCRIBE":
      case "PSUBSCRIBE": {
        const set = name === "SUBSCRIBE" ? client.channels : client.patterns;
        for (const channel of args) {
          set.add(channel);
          await client.send([
            name.toLowerCase(),
            channel,
            client.channels.size + client.patterns.size,
          ]);
        }
        return;
      }
      case "UNSUBSCRIBE":
      case "PUNSUBSCRIBE": {
        const set = name === "UNSUBSCRIBE" ? client.channels : client.patterns;
        const channels = args.length > 0 ? args : [...set];
        if (channels.length === 0) {
          await client.send([name.toLowerCase(), null, 0]);
        }
        for (const channel of channels) {
          set.delete(channel);
          await client.send([
            name.toLowerCase(),
            channel,
            client.channels.size + client.patterns.size,
          ]);
        }
        return;
      }
      case "PING":
        // In subscribed mode Redis answers PING with a push-style array.
        await client.send(
          client.subscribed ? ["pong", args[0] ?? ""] : args[0] ?? status("PONG"),
        );
        return;
      case "QUIT":
        await client.send(status("OK"));
        client.close();
        return;
      default:
        await client.send(status("OK"));
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#disposed ??= this.#dispose();
    return this.#disposed;
  }

  async #dispose(): Promise<void> {
    try {
      this.#listener.close();
    } catch (error) {
      if (!(error instanceof Deno.errors.BadResource)) throw error;
    }
    await this.#accepting;
    for (const client of this.#clients) client.close();
    while (this.#loops.size > 0) await Promise.all([...this.#loops]);
  }
}

/** Options for {@linkcode startFakeNode}. */
export interface FakeNodeOptions {
  /**
   * Answers before the preset does; `undefined` falls through to it.
   * @default {() => undefined}
   */
  handle?: FakeHandler;
}

/**
 * A fake data node that claims to be master: ROLE answers `["master", 0, []]`,
 * PING `+PONG`, `CONFIG GET port` its own port, and everything else (AUTH and
 * SET included) `+OK`. Every command is recorded, so a test can assert that no
 * AUTH and no SET ever reached it.
 */
export async function startFakeNode(options: FakeNodeOptions = {}): Promise<FakeRedis> {
  let port = 0;
  const server = await startFakeRedis({
    handle(command, client) {
      const own = options.handle?.(command, client);
      if (own !== undefined) return own;
      const name = command[0]!.toUpperCase();
      if (name === "ROLE") return ["master", 0, []];
      if (
        name === "CONFIG" && command[1]?.toUpperCase() === "GET" &&
        command[2]?.toLowerCase() === "port"
      ) {
        return ["port", String(port)];
      }
      return undefined;
    },
  });
  port = server.port;
  return server;
}

/** A master address as a fake Sentinel claims it. */
export interface ClaimedMaster {
  readonly host: string;
  readonly port: number;
}

/** A Sentinel as `SENTINEL sentinels` lists it. */
export interface ListedSentinel {
  readonly host: string;
  readonly port: number;
  /** 40 hex digits. */
  readonly runId: string;
}

/** Options for {@linkcode startFakeSentinel}. */
export interface FakeSentinelOptions {
  /** The only master name it knows; others get a null reply or an error, as Redis gives. */
  masterName: string;
  /** The master it names at first; change it with {@linkcode FakeSentinel.claim}. */
  master: ClaimedMaster;
  /**
   * The `config-epoch` it reports at first.
   * @default {0}
   */
  configEpoch?: number;
  /**
   * What `SENTINEL sentinels <name>` lists.
   * @default {[]}
   */
  sentinels?: readonly ListedSentinel[];
  /**
   * Answers before the preset does; `undefined` falls through to it.
   * @default {() => undefined}
   */
  handle?: FakeHandler;
}

/** A fake Sentinel. See {@linkcode startFakeSentinel}. */
export interface FakeSentinel extends FakeRedis {
  /** Its run id, 40 hex digits, as a hello message must give it. */
  readonly runId: string;
  /** The master it names now. */
  readonly claimed: ClaimedMaster;
  /** The `config-epoch` it reports now. */
  readonly configEpoch: number;
  /** From now on, names `master` with `configEpoch` in every answer. */
  claim(master: ClaimedMaster, configEpoch: number): void;
}

/**
 * A fake Sentinel that names whichever master the test chooses: honest when
 * it names the real one with the real epoch, a liar otherwise. It answers
 * PING, SUBSCRIBE and PSUBSCRIBE (any number of channels), `SENTINEL
 * get-master-addr-by-name`, `SENTINEL master` (a flat field list like Redis's),
 * `SENTINEL masters`, `SENTINEL sentinels`, `SENTINEL replicas` (empty),
 * PUBLISH (`:0`), INFO, and `+OK` to the rest.
 */
export async function startFakeSentinel(options: FakeSentinelOptions): Promise<FakeSentinel> {
  const runId = randomRunId();
  let claimed = options.master;
  let configEpoch = options.configEpoch ?? 0;
  const knows = (name: string | undefined) => name === options.masterName;
  const masterFields = (): RespReply[] => [
    "name",
    options.masterName,
    "ip",
    claimed.host,
    "port",
    String(claimed.port),
    "runid",
    "0".repeat(40),
    "flags",
    "master",
    "link-pending-commands",
    "0",
    "link-refcount",
    "1",
    "last-ping-sent",
    "0",
    "last-ok-ping-reply",
    "100",
    "last-ping-reply",
    "100",
    "down-after-milliseconds",
    "1000",
    "info-refresh",
    "500",
    "role-reported",
    "master",
    "role-reported-time",
    "100000",
    "config-epoch",
    String(configEpoch),
    "num-slaves",
    "0",
    "num-other-sentinels",
    String(options.sentinels?.length ?? 0),
    "quorum",
    "2",
    "failover-timeout",
    "10000",
    "parallel-syncs",
    "1",
  ];
  const noSuchMaster = errorReply("ERR No such master with that name");
  const server = await startFakeRedis({
    handle(command, client) {
      const own = options.handle?.(command, client);
      if (own !== undefined) return own;
      const name = command[0]!.toUpperCase();
      if (name === "PUBLISH") return 0;
      if (name === "INFO") {
        return [
          "# Server",
          "redis_version:7.0.15",
          "redis_mode:sentinel",
          `run_id:${runId}`,
          "",
          "# Sentinel",
          "sentinel_masters:1",
          "sentinel_tilt:0",
          `master0:name=${options.masterName},status=ok,address=${claimed.host}:${claimed.port},` +
          `slaves=0,sentinels=${(options.sentinels?.length ?? 0) + 1}`,
          "",
        ].join("\r\n");
      }
      if (name !== "SENTINEL") return undefined;
      const sub = command[1]?.toLowerCase();
      const master = command[2];
      switch (sub) {
        case "get-master-addr-by-name":
          return knows(master) ? [claimed.host, String(claimed.port)] : null;
        case "master":
          return knows(master) ? masterFields() : noSuchMaster;
        case "masters":
          return [masterFields()];
        case "sentinels":
          if (!knows(master)) return noSuchMaster;
          return (options.sentinels ?? []).map((s) => [
            "name",
            s.runId,
            "ip",
            s.host,
            "port",
            String(s.port),
            "runid",
            s.runId,
            "flags",
            "sentinel",
          ]);
        case "replicas":
        case "slaves":
          return knows(master) ? [] : noSuchMaster;
        case "myid":
          return runId;
        default:
          return undefined;
      }
    },
  });
  return new FakeSentinelHandle(server, runId, {
    get: () => ({ claimed, configEpoch }),
    set: (master, epoch) => {
      claimed = master;
      configEpoch = epoch;
    },
  });
}

interface ClaimAccess {
  get(): { claimed: ClaimedMaster; configEpoch: number };
  set(master: ClaimedMaster, configEpoch: number): void;
}

class FakeSentinelHandle implements FakeSentinel {
  readonly runId: string;
  readonly #server: FakeRedis;
  readonly #claim: ClaimAccess;

  constructor(server: FakeRedis, runId: string, claim: ClaimAccess) {
    this.#server = server;
    this.runId = runId;
    this.#claim = claim;
  }

  get port(): number {
    return this.#server.port;
  }
  get address(): string {
    return this.#server.address;
  }
  get commands(): readonly ReceivedCommand[] {
    return this.#server.commands;
  }
  get connections(): number {
    return this.#server.connections;
  }
  get clients(): readonly FakeClient[] {
    return this.#server.clients;
  }
  get claimed(): ClaimedMaster {
    return this.#claim.get().claimed;
  }
  get configEpoch(): number {
    return this.#claim.get().configEpoch;
  }
  count(name: string): number {
    return this.#server.count(name);
  }
  subscribers(channel: string): number {
    return this.#server.subscribers(channel);
  }
  publish(channel: string, message: string): Promise<number> {
    return this.#server.publish(channel, message);
  }
  claim(master: ClaimedMaster, configEpoch: number): void {
    this.#claim.set(master, configEpoch);
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.#server[Symbol.asyncDispose]();
  }
}

/** 40 random hex digits, the form of a Redis run id. */
export function randomRunId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(20));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whether a Redis glob pattern (`*`, `?`, `[...]`, `\x`) matches `text`. */
function globMatches(pattern: string, text: string): boolean {
  let source = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*") source += ".*";
    else if (c === "?") source += ".";
    else if (c === "\\" && i + 1 < pattern.length) source += escapeRegExp(pattern[++i]!);
    else if (c === "[") {
      const close = pattern.indexOf("]", i + 1);
      if (close === -1) source += "\\[";
      else {
        let body = pattern.slice(i + 1, close).replace(/\\/g, "\\\\");
        if (body.startsWith("^")) body = "^" + body.slice(1);
        source += `[${body}]`;
        i = close;
      }
    } else source += escapeRegExp(c);
  }
  try {
    return new RegExp(`^${source}$`, "s").test(text);
  } catch {
    return false;
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** Encodes a reply as RESP2. */
export function encodeReply(reply: RespReply): Uint8Array {
  const parts: string[] = [];
  const walk = (value: RespReply) => {
    if (value === null) parts.push("$-1\r\n");
    else if (typeof value === "number") parts.push(`:${Math.trunc(value)}\r\n`);
    else if (typeof value === "string") {
      parts.push(`$${encoder.encode(value).length}\r\n${value}\r\n`);
    } else if (Array.isArray(value)) {
      parts.push(`*${value.length}\r\n`);
      for (const item of value as readonly RespReply[]) walk(item);
    } else if ("status" in value) {
      parts.push(`+${value.status.replace(/[\r\n]+/g, " ")}\r\n`);
    } else {
      parts.push(`-${(value as ErrorReply).error.replace(/[\r\n]+/g, " ")}\r\n`);
    }
  };
  walk(reply);
  return encoder.encode(parts.join(""));
}

/**
 * Parses one command: a RESP array of bulk strings, or an inline command line.
 * Returns `undefined` when more bytes are needed.
 *
 * @throws {SyntaxError} when the bytes are not a command
 */
function parseCommand(buf: Uint8Array): { command: string[]; end: number } | undefined {
  const lineEnd = indexOfCrlf(buf, 0);
  if (lineEnd === -1) return undefined;
  if (buf[0] !== 0x2a) { // not '*': an inline command
    const line = decoder.decode(buf.subarray(0, lineEnd));
    return { command: line.split(/\s+/).filter((word) => word !== ""), end: lineEnd + 2 };
  }
  const count = parseLength(decoder.decode(buf.subarray(1, lineEnd)));
  const command: string[] = [];
  let offset = lineEnd + 2;
  for (let i = 0; i < count; i++) {
    const headerEnd = indexOfCrlf(buf, offset);
    if (headerEnd === -1) return undefined;
    if (buf[offset] !== 0x24) throw new SyntaxError("Expected a bulk string in a command");
    const length = parseLength(decoder.decode(buf.subarray(offset + 1, headerEnd)));
    const start = headerEnd + 2;
    if (buf.length < start + length + 2) return undefined;
    command.push(decoder.decode(buf.subarray(start, start + length)));
    offset = start + length + 2;
  }
  return { command, end: offset };
}

function parseLength(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) > MAX_BUFFERED_BYTES) {
    throw new SyntaxError(`Invalid length ${JSON.stringify(text)}`);
  }
  return Number(text);
}

function indexOfCrlf(buf: Uint8Array, from: number): number {
  for (let i = from; i < buf.length - 1; i++) {
    if (buf[i] === 0x0d && buf[i + 1] === 0x0a) return i;
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b.slice();
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}
