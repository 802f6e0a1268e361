/**
 * Talks to Redis Sentinels the way Redis's guidelines for Sentinel clients say:
 * ask them in order under short deadlines, move the one that answered to the
 * front, treat a null reply or `-IDONTKNOW` as "ask the next one", and learn of
 * further Sentinels with `SENTINEL sentinels <name>`. It also keeps one
 * `+switch-master` subscription per known Sentinel.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { type Address, formatAddress, sameAddress } from "./address.ts";
import { type AuthOptions, RedisCallError, RedisConnection } from "./redis_connection.ts";
import { RespErrorReply, type RespValue } from "./resp.ts";

const log = getLogger(["sentinel-tunnel", "sentinel"]);

/** A Sentinel the client knows, and what it last heard from it. */
export interface KnownSentinel {
  readonly address: Address;
  /** Listed in the config, or learned from another Sentinel. */
  readonly origin: "configured" | "discovered";
  /** The last call's outcome: `undefined` before the first call. */
  lastError: string | null | undefined;
  lastReplyAt: number | undefined;
  /** How many calls to it failed. */
  errors: number;
  /** Whether its `+switch-master` subscription is established. */
  subscribed: boolean;
}

/** The outcome of asking the Sentinels for a master's address. */
export type MasterLookup =
  | {
    readonly kind: "found";
    readonly address: Address;
    readonly sentinel: Address;
  }
  /** Some Sentinels answered, and none of them knows the master name. */
  | { readonly kind: "unknown"; readonly detail: string }
  /** No Sentinel answered. */
  | { readonly kind: "unreachable"; readonly detail: string };

/** A replica as a Sentinel reports it. */
export interface ReplicaInfo {
  readonly address: string;
  /** Such as `slave`, `s_down`, `disconnected`. */
  readonly flags: string[];
  readonly masterLinkStatus: string | null;
  readonly replicationOffset: number | null;
  readonly reportedBy: string;
}

/** What most Sentinels say the master is. */
export interface MajorityVerdict {
  /** Named by more than half of the known Sentinels; absent when no address is. */
  readonly address: Address | undefined;
  /** Such as `2 of 3 Sentinels`, or the tally when there is no majority. */
  readonly detail: string;
}

/** Options for {@linkcode SentinelClient}. */
export interface SentinelClientOptions {
  /** Deadline to connect to one Sentinel. */
  connectTimeoutMs: number;
  /** Deadline for one Sentinel's reply. */
  replyTimeoutMs: number;
  /** Sent with AUTH to every Sentinel. */
  auth?: AuthOptions | undefined;
}

/** Called for each `+switch-master` message. */
export type SwitchMasterHandler = (
  masterName: string,
  address: Address,
  sentinel: Address,
) => void;

/** Handlers for {@linkcode SentinelClient.subscribe}. */
export interface SubscribeHandlers {
  onSwitchMaster: SwitchMasterHandler;
  /** A subscription was established or re-established: events may have been missed. */
  onSubscribed: (sentinel: Address) => void;
}

/** Waits `ms`, or less if `signal` aborts. Never rejects. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** A pool of Sentinels, asked in order. */
export class SentinelClient {
  #options: SentinelClientOptions;
  /** In asking order: the last one that answered comes first. */
  readonly #sentinels: KnownSentinel[];
  #subscriptions: SubscribeHandlers | undefined;
  #subscriptionSignal: AbortSignal | undefined;
  /** One controller per running subscription, by `host:port`. */
  readonly #subscribed = new Map<string, AbortController>();
  readonly #subscriptionLoops = new Set<Promise<void>>();

  constructor(sentinels: readonly Address[], options: SentinelClientOptions) {
    this.#options = options;
    this.#sentinels = sentinels.map((address) => ({
      address,
      origin: "configured",
      lastError: undefined,
      lastReplyAt: undefined,
      errors: 0,
      subscribed: false,
    }));
  }

  /** The known Sentinels in asking order. */
  get sentinels(): readonly Readonly<KnownSentinel>[] {
    return this.#sentinels;
  }

  /**
   * Asks the Sentinels in order for the master's address. A Sentinel that
   * answers with an address moves to the front.
   */
  async getMasterAddress(
    masterName: string,
    signal: AbortSignal,
  ): Promise<MasterLookup> {
    const failures: string[] = [];
    const unknown: string[] = [];
    let answered = false;
    let notYetKnown = false;
    for (const sentinel of [...this.#sentinels]) {
      if (signal.aborted) break;
      let reply: RespValue;
      try {
        reply = await this.#call(sentinel, [
          "SENTINEL",
          "get-master-addr-by-name",
          masterName,
        ], signal);
      } catch (error) {
        if (signal.aborted) break;
        failures.push((error as Error).message);
        answered ||= error instanceof RedisCallError && error.kind === "error-reply";
        continue;
      }
      notYetKnown ||= reply instanceof RespErrorReply;
      if (
        reply === null ||
        (reply instanceof RespErrorReply && reply.code === "IDONTKNOW")
      ) {
        unknown.push(
          `${formatAddress(sentinel.address)}: ${
            reply === null ? "unknown master name" : reply.message
          }`,
        );
        continue;
      }
      const address = parseAddressReply(reply);
      if (address === undefined) {
        failures.push(
          `${formatAddress(sentinel.address)}: unexpected reply ${
            JSON.stringify(replyText(reply))
          }`,
        );
        continue;
      }
      this.#moveToFront(sentinel);
      return { kind: "found", address, sentinel: sentinel.address };
    }
    // "Unknown" is final only when every Sentinel answered that it does not know the name.
    if (unknown.length > 0 && failures.length === 0 && !notYetKnown) {
      return {
        kind: "unknown",
        detail: `no Sentinel knows master "${masterName}" (${unknown.join("; ")})`,
      };
    }
    const what = unknown.length > 0 || answered
      ? "no Sentinel named a master"
      : "no Sentinel reachable";
    return {
      kind: "unreachable",
      detail: `${what} (${[...unknown, ...failures].join("; ") || "none configured"})`,
    };
  }

  /**
   * Asks every known Sentinel at once, and returns the master that more than
   * half of them name. The first of those moves to the front of the asking
   * order, so that polls stop going to a Sentinel that lags.
   */
  async majorityMaster(masterName: string, signal: AbortSignal): Promise<MajorityVerdict> {
    const sentinels = [...this.#sentinels];
    const needed = Math.floor(sentinels.length / 2) + 1;
    const answers = await Promise.all(sentinels.map(async (sentinel) => {
      try {
        const reply = await this.#call(sentinel, [
          "SENTINEL",
          "get-master-addr-by-name",
          masterName,
        ], signal);
        return { sentinel, address: parseAddressReply(reply) };
      } catch {
        return { sentinel, address: undefined };
      }
    }));
    const votes = new Map<string, { address: Address; sentinels: KnownSentinel[] }>();
    for (const { sentinel, address } of answers) {
      if (!address) continue;
      const key = formatAddress(address).toLowerCase();
      const entry = votes.get(key) ?? { address, sentinels: [] };
      entry.sentinels.push(sentinel);
      votes.set(key, entry);
    }
    const tally = [...votes.values()].map((v) =>
      `${formatAddress(v.address)}: ${v.sentinels.length}`
    ).join(", ");
    const winner = [...votes.values()].find((v) => v.sentinels.length >= needed);
    if (!winner) {
      return {
        address: undefined,
        detail: `no address named by ${needed} of ${sentinels.length} Sentinels (${
          tally || "no answers"
        })`,
      };
    }
    this.#moveToFront(winner.sentinels[0]!);
    return {
      address: winner.address,
      detail: `${winner.sentinels.length} of ${sentinels.length} Sentinels`,
    };
  }

  /**
   * The replicas of `masterName` as the first Sentinel that answers reports
   * them (`SENTINEL replicas`), or `undefined` when none answers.
   */
  async replicas(masterName: string, signal: AbortSignal): Promise<ReplicaInfo[] | undefined> {
    for (const sentinel of [...this.#sentinels]) {
      if (signal.aborted) return undefined;
      let reply: RespValue;
      try {
        reply = await this.#call(sentinel, ["SENTINEL", "replicas", masterName], signal, true);
      } catch {
        continue;
      }
      // "No such master with that name": a working Sentinel's answer.
      if (reply instanceof RespErrorReply) return [];
      if (!Array.isArray(reply)) continue;
      return reply.flatMap((entry) => {
        if (!Array.isArray(entry)) return [];
        const fields = fieldMap(entry);
        const ip = fields.get("ip");
        const port = fields.get("port");
        if (ip === undefined || port === undefined) return [];
        return [{
          address: formatAddress({ hostname: ip, port: Number(port) }),
          flags: (fields.get("flags") ?? "").split(",").filter((f) => f !== ""),
          masterLinkStatus: fields.get("master-link-status") ?? null,
          replicationOffset: fields.has("slave-repl-offset")
            ? Number(fields.get("slave-repl-offset"))
            : null,
          reportedBy: formatAddress(sentinel.address),
        }];
      });
    }
    return undefined;
  }

  /**
   * Learns further Sentinels of `masterName` from the first Sentinel that
   * answers, and subscribes to them. Returns the addresses that were new.
   */
  async discoverSentinels(
    masterName: string,
    signal: AbortSignal,
  ): Promise<Address[]> {
    for (const sentinel of [...this.#sentinels]) {
      if (signal.aborted) return [];
      let reply: RespValue;
      try {
        reply = await this.#call(sentinel, [
          "SENTINEL",
          "sentinels",
          masterName,
        ], signal);
      } catch {
        continue;
      }
      if (!Array.isArray(reply)) continue;
      const added: Address[] = [];
      for (const entry of reply) {
        const fields = Array.isArray(entry) ? fieldMap(entry) : undefined;
        const ip = fields?.get("ip");
        const port = Number(fields?.get("port"));
        if (
          ip === undefined || !Number.isInteger(port) || port < 1 ||
          port > 65535
        ) continue;
        const address = { hostname: ip, port };
        if (this.#sentinels.some((s) => sameAddress(s.address, address))) {
          continue;
        }
        this.#sentinels.push({
          address,
          origin: "discovered",
          lastError: undefined,
          lastReplyAt: undefined,
          errors: 0,
          subscribed: false,
        });
        added.push(address);
        log.info(
          "Discovered Sentinel {sentinel} through {via} for master {masterName}",
          {
            sentinel: formatAddress(address),
            via: formatAddress(sentinel.address),
            masterName,
          },
        );
        this.#startSubscription(address);
      }
      return added;
    }
    return [];
  }

  /**
   * Subscribes to `+switch-master` on every known Sentinel, and on every one
   * discovered later, until `signal` aborts. Each subscription reconnects with
   * backoff; {@linkcode SentinelClient.closed} settles when every one has stopped.
   */
  subscribe(handlers: SubscribeHandlers, signal: AbortSignal): void {
    this.#subscriptions = handlers;
    this.#subscriptionSignal = signal;
    for (const sentinel of this.#sentinels) {
      this.#startSubscription(sentinel.address);
    }
  }

  /** Settles when every subscription loop has ended (after the subscribe signal aborts). */
  async closed(): Promise<void> {
    while (this.#subscriptionLoops.size > 0) {
      await Promise.all([...this.#subscriptionLoops]);
    }
  }

  /**
   * Takes a new Sentinel list and new options (a reload). Sentinels that stay
   * keep what is known of them; subscriptions follow the new list, and all of
   * them restart when the credentials or deadlines changed.
   */
  update(sentinels: readonly Address[], options: SentinelClientOptions): void {
    const optionsChanged = JSON.stringify(options) !== JSON.stringify(this.#options);
    this.#options = options;
    const next = sentinels.map((address) =>
      this.#find(address) ?? {
        address,
        origin: "configured" as const,
        lastError: undefined,
        lastReplyAt: undefined,
        errors: 0,
        subscribed: false,
      }
    );
    for (const [key, controller] of this.#subscribed) {
      if (optionsChanged || !next.some((s) => formatAddress(s.address) === key)) {
        controller.abort();
        this.#subscribed.delete(key);
      }
    }
    this.#sentinels.splice(0, this.#sentinels.length, ...next);
    for (const sentinel of next) this.#startSubscription(sentinel.address);
  }

  #startSubscription(address: Address): void {
    const handlers = this.#subscriptions;
    const parent = this.#subscriptionSignal;
    const key = formatAddress(address);
    if (!handlers || !parent || parent.aborted || this.#subscribed.has(key)) return;
    const controller = new AbortController();
    this.#subscribed.set(key, controller);
    const signal = AbortSignal.any([parent, controller.signal]);
    const loop = this.#subscriptionLoop(address, handlers, signal).finally(() => {
      this.#subscriptionLoops.delete(loop);
      if (this.#subscribed.get(key) === controller) this.#subscribed.delete(key);
    });
    this.#subscriptionLoops.add(loop);
  }

  async #subscriptionLoop(
    address: Address,
    handlers: SubscribeHandlers,
    signal: AbortSignal,
  ): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      try {
        await this.#subscribeOnce(address, handlers, signal);
        failures = 0;
      } catch (error) {
        if (signal.aborted) break;
        failures++;
        const sentinel = this.#find(address);
        if (sentinel) {
          sentinel.lastError = (error as Error).message;
          sentinel.errors++;
          sentinel.subscribed = false;
        }
        if (failures === 1) {
          log.warn(
            "Subscription to Sentinel {sentinel} failed: {error}; retrying with backoff",
            {
              sentinel: formatAddress(address),
              error: (error as Error).message,
            },
          );
        }
      }
      await sleep(Math.min(100 * 2 ** Math.min(failures, 5), 2000), signal);
    }
  }

  /** One subscription: returns or throws when the connection ends. */
  async #subscribeOnce(
    address: Address,
    handlers: SubscribeHandlers,
    signal: AbortSignal,
  ): Promise<void> {
    using connection = await RedisConnection.open(address, {
      connectTimeoutMs: this.#options.connectTimeoutMs,
      replyTimeoutMs: this.#options.replyTimeoutMs,
      auth: this.#options.auth,
      signal,
    });
    const confirmation = await connection.call(
      ["SUBSCRIBE", "+switch-master"],
      signal,
    );
    if (!Array.isArray(confirmation) || confirmation[0] !== "subscribe") {
      throw new RedisCallError(
        address,
        "protocol",
        `SUBSCRIBE answered ${JSON.stringify(replyText(confirmation))}`,
      );
    }
    this.#recordReply(address);
    const known = this.#find(address);
    if (known) known.subscribed = true;
    handlers.onSubscribed(address);
    // A silent Sentinel may be hung: ping it, and give up when no pong comes.
    const pingEveryMs = Math.max(1000, this.#options.replyTimeoutMs * 2);
    const heartbeat = setInterval(() => {
      connection.send(["PING"]).catch(() => connection.close());
    }, pingEveryMs);
    try {
      for (;;) {
        const message = await connection.read({
          timeoutMs: pingEveryMs + this.#options.replyTimeoutMs * 2,
          signal,
        });
        this.#recordReply(address);
        if (
          !Array.isArray(message) || message[0] !== "message" ||
          typeof message[2] !== "string"
        ) continue;
        const [name, , , newHost, newPort] = message[2].split(" ");
        const port = Number(newPort);
        if (
          name === undefined || newHost === undefined || !Number.isInteger(port)
        ) continue;
        handlers.onSwitchMaster(name, { hostname: newHost, port }, address);
      }
    } finally {
      clearInterval(heartbeat);
    }
  }

  /**
   * One command to one Sentinel. An error reply throws, except `-IDONTKNOW`
   * and, with `acceptErrorReply`, any error reply: those answers still show
   * that the Sentinel is reachable and working.
   */
  async #call(
    sentinel: KnownSentinel,
    args: string[],
    signal: AbortSignal,
    acceptErrorReply = false,
  ): Promise<RespValue> {
    try {
      using connection = await RedisConnection.open(sentinel.address, {
        connectTimeoutMs: this.#options.connectTimeoutMs,
        replyTimeoutMs: this.#options.replyTimeoutMs,
        auth: this.#options.auth,
        signal,
      });
      const reply = await connection.call(args, signal);
      if (reply instanceof RespErrorReply && reply.code !== "IDONTKNOW" && !acceptErrorReply) {
        throw new RedisCallError(
          sentinel.address,
          "error-reply",
          `${args.slice(0, 2).join(" ")} failed: ${reply.message}`,
        );
      }
      sentinel.lastError = null;
      sentinel.lastReplyAt = Date.now();
      return reply;
    } catch (error) {
      // A call cut short by shutdown, reload or a caller's deadline says nothing about the Sentinel.
      if (!signal.aborted) {
        sentinel.lastError = (error as Error).message;
        sentinel.errors++;
      }
      throw error;
    }
  }

  #recordReply(address: Address): void {
    const sentinel = this.#find(address);
    if (sentinel) {
      sentinel.lastError = null;
      sentinel.lastReplyAt = Date.now();
    }
  }

  #find(address: Address): KnownSentinel | undefined {
    return this.#sentinels.find((s) => sameAddress(s.address, address));
  }

  #moveToFront(sentinel: KnownSentinel): void {
    const index = this.#sentinels.indexOf(sentinel);
    if (index > 0) {
      this.#sentinels.splice(index, 1);
      this.#sentinels.unshift(sentinel);
    }
  }
}

function parseAddressReply(reply: RespValue): Address | undefined {
  if (!Array.isArray(reply) || reply.length !== 2) return undefined;
  const [host, port] = reply;
  const portNumber = Number(port);
  if (
    typeof host !== "string" || host === "" || !Number.isInteger(portNumber) ||
    portNumber < 1 || portNumber > 65535
  ) {
    return undefined;
  }
  return { hostname: host, port: portNumber };
}

function fieldMap(entry: RespValue[]): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < entry.length; i += 2) {
    const key = entry[i];
    const value = entry[i + 1];
    if (
      typeof key === "string" &&
      (typeof value === "string" || typeof value === "number")
    ) map.set(key, String(value));
  }
  return map;
}

function replyText(reply: RespValue): unknown {
  return reply instanceof RespErrorReply ? `-${reply.message}` : reply;
}
