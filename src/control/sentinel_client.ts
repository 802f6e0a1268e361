/**
 * Talks to Redis Sentinels. Each known Sentinel gets one persistent control
 * connection (AUTH once), shared by every database, and one pub/sub
 * subscription to the events the tunnel acts on.
 *
 * Which Sentinels count for a master: the configured ones, and the ones they
 * list for that master (`SENTINEL sentinels <name>`) without flagging them
 * `s_down`, `o_down` or `disconnected`, at most `maxSentinels` in all. A
 * discovered Sentinel that keeps failing is dropped until it is listed healthy
 * again. What a Sentinel says is only a view: {@linkcode agreeOnMaster}
 * decides what the views agree on.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { type Address, addressKey, formatAddress } from "../shared/address.ts";
import { sameAddresses, sameTlsClient } from "../shared/master_settings.ts";
import type { TlsClientSettings, TunnelConfig } from "../shared/settings.ts";
import { ControlConnection } from "./control_connection.ts";
import type { MasterAnswer, SentinelOrigin, SentinelView } from "./master_agreement.ts";
import { type AuthOptions, RedisCallError, RedisConnection } from "./redis_connection.ts";
import { RespErrorReply, type RespValue } from "./resp.ts";
import {
  parseReportedAddress,
  parseSentinelEvent,
  SENTINEL_CHANNELS,
  type SentinelEvent,
} from "./sentinel_events.ts";
import { sleep } from "../shared/io.ts";
import { LogThrottle } from "../shared/log_throttle.ts";

const log = getLogger(["sentinel-tunnel", "sentinel"]);

/** A Sentinel the client knows, and what it last heard from it. */
export interface KnownSentinel {
  readonly address: Address;
  /** Listed in the config, or learned from a configured Sentinel. */
  origin: SentinelOrigin;
  /** The last call's outcome: `undefined` before the first call, `null` after a reply. */
  lastError: string | null | undefined;
  lastReplyAt: number | undefined;
  /** How many calls to it failed. */
  errors: number;
  /** Calls that failed in a row: a discovered Sentinel that keeps failing is dropped. */
  failuresInRow: number;
  /** Whether its event subscription is established. */
  subscribed: boolean;
}

/** A replica as a Sentinel reports it. */
export interface ReplicaInfo {
  readonly address: string;
  /** `address`, parsed. */
  readonly replica: Address;
  /** Such as `slave`, `s_down`, `disconnected`. */
  readonly flags: string[];
  readonly masterLinkStatus: string | null;
  readonly replicationOffset: number | null;
  readonly reportedBy: string;
}

/** Options for {@linkcode SentinelClient}. */
export interface SentinelClientOptions {
  /** Deadline to connect to one Sentinel. */
  connectTimeoutMs: number;
  /** Deadline for one Sentinel's reply. */
  replyTimeoutMs: number;
  /** Sent with AUTH to every Sentinel. */
  auth?: AuthOptions | undefined;
  /** TLS to every Sentinel; plain TCP when absent. */
  tls?: TlsClientSettings | undefined;
  /** The most Sentinels that count for one master, configured ones included. */
  maxSentinels: number;
}

/** The Sentinel client's options from a config: one place, for the tunnel and `--check --online`. */
export function sentinelClientOptions(config: TunnelConfig): SentinelClientOptions {
  return {
    connectTimeoutMs: config.timeouts.sentinelConnectMs,
    replyTimeoutMs: config.timeouts.sentinelReplyMs,
    auth: config.sentinelAuth,
    tls: config.sentinelTls,
    maxSentinels: config.maxSentinels,
  };
}

/** Handlers for {@linkcode SentinelClient.subscribe}. */
export interface SubscribeHandlers {
  /** A parsed, well-formed event from `sentinel`. It must not throw. */
  onEvent: (event: SentinelEvent, sentinel: Readonly<KnownSentinel>) => void;
  /** A subscription was established or re-established: events may have been missed. */
  onSubscribed: (sentinel: Address) => void;
}

/** Error replies that show a Sentinel is not working for the tunnel, rather than answering. */
const NOT_WORKING_CODES = new Set(["NOAUTH", "NOPERM", "WRONGPASS", "LOADING"]);

/**
 * What to fix when a Sentinel refuses the tunnel's credentials, told by the
 * error's code (`NOAUTH`, `WRONGPASS`, `NOPERM`); empty for any other code.
 * `hasAuth` says whether `sentinelAuth` is set.
 */
function sentinelAuthHint(code: string | undefined, hasAuth: boolean): string {
  switch (code) {
    case "NOAUTH":
      return hasAuth ? "; check sentinelAuth" : "; set sentinelAuth (the Sentinels' requirepass)";
    case "WRONGPASS":
      return "; check sentinelAuth";
    case "NOPERM":
      return hasAuth
        ? "; check that sentinelAuth's ACL user may run SENTINEL commands"
        : "; set sentinelAuth to an ACL user that may run SENTINEL commands";
    default:
      return "";
  }
}

/**
 * A Sentinel's refusal of the credentials, with {@linkcode sentinelAuthHint}
 * added to its message; any other error as it is.
 */
function withAuthHint(error: unknown, hasAuth: boolean): unknown {
  if (!(error instanceof RedisCallError) || error.kind !== "error-reply") return error;
  // The message names the address already; the new error names it again.
  const detail = error.message.slice(formatAddress(error.address).length + 2);
  const hinted = withSentinelAuthHint(detail, error.code, hasAuth);
  if (hinted === detail) return error;
  return new RedisCallError(error.address, error.kind, hinted, {
    cause: error,
    ...(error.code === undefined ? {} : { code: error.code }),
  });
}

/**
 * `message` with {@linkcode sentinelAuthHint} for `code` after it, once, in
 * place of a final period (`NOAUTH Authentication required; set sentinelAuth ...`).
 */
export function withSentinelAuthHint(
  message: string,
  code: string | undefined,
  hasAuth: boolean,
): string {
  const hint = sentinelAuthHint(code, hasAuth);
  if (hint === "" || message.endsWith(hint)) return message;
  return `${message.endsWith(".") ? message.slice(0, -1) : message}${hint}`;
}

/** A discovered Sentinel is dropped after this many failed calls in a row. */
const DROP_AFTER_FAILURES = 5;

/** Events consumed per second per subscription, at most, after a burst: a flood is read no faster. */
const EVENTS_PER_SECOND = 100;
const EVENT_BURST = 200;

/** A pool of Sentinels. */
export class SentinelClient {
  #options: SentinelClientOptions;
  /** Every known Sentinel, configured first, by `host:port` in lower case. */
  readonly #known = new Map<string, KnownSentinel>();
  readonly #connections = new Map<string, ControlConnection>();
  /** `SENTINEL MASTER` calls under way, by Sentinel and master name. */
  readonly #inflight = new Map<string, Promise<SentinelView>>();
  #configured: KnownSentinel[] = [];
  /** Discovered Sentinels adopted for each master name. */
  readonly #adopted = new Map<string, KnownSentinel[]>();
  #subscriptions: SubscribeHandlers | undefined;
  #subscriptionSignal: AbortSignal | undefined;
  /** One controller per running subscription, by key. */
  readonly #subscribed = new Map<string, AbortController>();
  readonly #subscriptionLoops = new Set<Promise<void>>();
  readonly #malformedLog = new LogThrottle(1000);

  constructor(sentinels: readonly Address[], options: SentinelClientOptions) {
    this.#options = options;
    this.#configured = sentinels.map((address) => this.#remember(address, "configured"));
  }

  /** Every known Sentinel: the configured ones in asking order, then the discovered ones. */
  get sentinels(): readonly Readonly<KnownSentinel>[] {
    return [...new Set([...this.#configured, ...[...this.#adopted.values()].flat()])];
  }

  /** The Sentinels that count for `masterName`: the configured ones and those adopted for it. */
  watching(masterName: string): readonly Readonly<KnownSentinel>[] {
    return [...this.#configured, ...(this.#adopted.get(masterName) ?? [])];
  }

  /** How many control connections have been opened, in all: stays flat while Sentinels stay healthy. */
  get connectionsOpened(): number {
    let opened = 0;
    for (const connection of this.#connections.values()) opened += connection.opened;
    return opened;
  }

  /**
   * Asks every Sentinel that watches `masterName` for its view, at once. The
   * round waits for every Sentinel that answered last time; one that failed
   * last time (hung, say) is included only if it answers by then, so that a
   * hung Sentinel does not slow down every check.
   */
  async masterViews(masterName: string, signal: AbortSignal): Promise<SentinelView[]> {
    const calls = this.watching(masterName).map((sentinel) => {
      // A call still under way from an earlier round (to a hung Sentinel) is shared, not repeated.
      const key = `${addressKey(sentinel.address)} ${masterName}`;
      let view = this.#inflight.get(key);
      if (!view) {
        view = this.#view(sentinel, masterName, signal).finally(() => this.#inflight.delete(key));
        this.#inflight.set(key, view);
      }
      return { sentinel, suspect: typeof sentinel.lastError === "string", view };
    });
    const healthy = calls.filter((c) => !c.suspect);
    if (healthy.length === 0) return await Promise.all(calls.map((c) => c.view));
    await Promise.all(healthy.map((c) => c.view));
    return await Promise.all(calls.map((c) =>
      c.suspect
        ? Promise.race([
          c.view,
          Promise.resolve(failedView(c.sentinel, "no answer yet (it failed the last call)")),
        ])
        : c.view
    ));
  }

  async #view(
    sentinel: KnownSentinel,
    masterName: string,
    signal: AbortSignal,
  ): Promise<SentinelView> {
    let reply: RespValue;
    try {
      reply = await this.#call(sentinel, ["SENTINEL", "MASTER", masterName], signal);
    } catch (error) {
      return failedView(sentinel, (error as Error).message);
    }
    return { sentinel: sentinel.address, origin: sentinel.origin, answer: parseMasterReply(reply) };
  }

  /**
   * The replicas of `masterName` as the first Sentinel that answers reports
   * them (`SENTINEL replicas`), or `undefined` when none answers.
   */
  async replicas(masterName: string, signal: AbortSignal): Promise<ReplicaInfo[] | undefined> {
    for (const sentinel of this.watching(masterName)) {
      if (signal.aborted) return undefined;
      let reply: RespValue;
      try {
        reply = await this.#call(sentinel, ["SENTINEL", "replicas", masterName], signal);
      } catch {
        continue;
      }
      // "No such master with that name": a working Sentinel's answer.
      if (reply instanceof RespErrorReply) return [];
      if (!Array.isArray(reply)) continue;
      return reply.flatMap((entry) => {
        if (!Array.isArray(entry)) return [];
        const fields = fieldMap(entry);
        const address = parseReportedAddress(fields.get("ip"), fields.get("port"));
        if (!address) return [];
        return [{
          address: formatAddress(address),
          replica: address,
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
   * Asks the configured Sentinels which other Sentinels watch `masterName`, and
   * adopts those listed without a down or disconnected flag, up to the cap.
   * Adopted Sentinels no longer listed, or flagged, are dropped; so is one
   * that keeps failing. Returns the Sentinels newly adopted.
   */
  async discoverSentinels(masterName: string, signal: AbortSignal): Promise<Address[]> {
    const listings = await Promise.all(this.#configured.map(async (sentinel) => {
      try {
        const reply = await this.#call(sentinel, ["SENTINEL", "sentinels", masterName], signal);
        return Array.isArray(reply) ? { sentinel, entries: reply } : undefined;
      } catch {
        return undefined;
      }
    }));
    const current = this.#adopted.get(masterName) ?? [];
    const answered = listings.filter((l) => l !== undefined);
    if (answered.length === 0 || signal.aborted) {
      // Nobody to vouch for them: keep the adopted ones, less those that keep failing.
      this.#setAdopted(masterName, current.filter((s) => s.failuresInRow < DROP_AFTER_FAILURES));
      return [];
    }
    const healthy = new Map<string, { address: Address; via: Address }>();
    const flagged = new Set<string>();
    for (const { sentinel, entries } of answered) {
      for (const entry of entries) {
        if (!Array.isArray(entry)) continue;
        const fields = fieldMap(entry);
        const address = parseReportedAddress(fields.get("ip"), fields.get("port"));
        if (!address) continue;
        const key = addressKey(address);
        const flags = (fields.get("flags") ?? "").split(",");
        if (flags.some((f) => f === "s_down" || f === "o_down" || f === "disconnected")) {
          flagged.add(key);
        } else if (!healthy.has(key)) {
          healthy.set(key, { address, via: sentinel.address });
        }
      }
    }
    const configuredKeys = new Set(this.#configured.map((s) => addressKey(s.address)));
    const room = Math.max(0, this.#options.maxSentinels - this.#configured.length);
    const keep = current.filter((s) => {
      const key = addressKey(s.address);
      return healthy.has(key) && !flagged.has(key) && !configuredKeys.has(key) &&
        s.failuresInRow < DROP_AFTER_FAILURES;
    }).slice(0, room);
    const added: Address[] = [];
    let skipped = 0;
    for (const [key, { address, via }] of healthy) {
      if (
        flagged.has(key) || configuredKeys.has(key) ||
        keep.some((s) => addressKey(s.address) === key)
      ) {
        continue;
      }
      const known = this.#known.get(key);
      // One that kept failing waits for the next round, so that a dead entry is not retried on every check.
      if (known && known.failuresInRow >= DROP_AFTER_FAILURES && !current.includes(known)) {
        known.failuresInRow = 0;
        continue;
      }
      if (keep.length >= room) {
        skipped++;
        continue;
      }
      const sentinel = known ?? this.#remember(address, "discovered");
      keep.push(sentinel);
      added.push(address);
      log.info("Discovered Sentinel {sentinel} through {via} for master {masterName}", {
        sentinel: formatAddress(address),
        via: formatAddress(via),
        masterName,
      });
    }
    if (skipped > 0) {
      log.warn(
        "Master {masterName}: {skipped} more Sentinels are listed than maxSentinels ({max}) allows; they are not counted",
        { masterName, skipped, max: this.#options.maxSentinels },
      );
    }
    for (const sentinel of current) {
      if (!keep.includes(sentinel)) {
        log.info("Master {masterName}: no longer counting Sentinel {sentinel}: {reason}", {
          masterName,
          sentinel: formatAddress(sentinel.address),
          reason: flagged.has(addressKey(sentinel.address))
            ? "the configured Sentinels flag it down or disconnected"
            : sentinel.failuresInRow >= DROP_AFTER_FAILURES
            ? `${sentinel.failuresInRow} calls in a row failed`
            : "the configured Sentinels no longer list it",
        });
      }
    }
    this.#setAdopted(masterName, keep);
    return added;
  }

  /**
   * Subscribes to Sentinel's events on every known Sentinel, and on every one
   * adopted later, until `signal` aborts. Each subscription reconnects with
   * backoff; {@linkcode SentinelClient.closed} settles when every one has stopped.
   */
  subscribe(handlers: SubscribeHandlers, signal: AbortSignal): void {
    this.#subscriptions = handlers;
    this.#subscriptionSignal = signal;
    for (const sentinel of this.sentinels) this.#startSubscription(sentinel.address);
    signal.addEventListener("abort", () => {
      for (const connection of this.#connections.values()) connection.close();
    }, { once: true });
  }

  /** Settles when every subscription loop has ended (after the subscribe signal aborts). */
  async closed(): Promise<void> {
    while (this.#subscriptionLoops.size > 0) {
      await Promise.all([...this.#subscriptionLoops]);
    }
  }

  /**
   * Takes a new Sentinel list and new options (a reload). Sentinels that stay
   * keep what is known of them; subscriptions follow the new list, and every
   * connection restarts when the credentials or deadlines changed.
   */
  update(sentinels: readonly Address[], options: SentinelClientOptions): void {
    const optionsChanged = !sameClientOptions(options, this.#options);
    const listChanged = !sameAddresses(sentinels, this.#configured.map((s) => s.address));
    this.#options = options;
    // Sentinels vouched for by the old list count no more: the watchers discover again at once.
    if (listChanged) this.#adopted.clear();
    for (const sentinel of this.#configured) sentinel.origin = "discovered";
    this.#configured = sentinels.map((address) => {
      const sentinel = this.#remember(address, "configured");
      sentinel.origin = "configured";
      return sentinel;
    });
    const configuredKeys = new Set(this.#configured.map((s) => addressKey(s.address)));
    for (const [name, adopted] of this.#adopted) {
      this.#adopted.set(name, adopted.filter((s) => !configuredKeys.has(addressKey(s.address))));
    }
    if (optionsChanged) {
      for (const connection of this.#connections.values()) connection.reset();
      for (const controller of this.#subscribed.values()) controller.abort();
      this.#subscribed.clear();
    }
    this.#forgetUnused();
    for (const sentinel of this.sentinels) this.#startSubscription(sentinel.address);
  }

  /** A database stopped: the Sentinels adopted for its master no longer count. */
  forget(masterName: string): void {
    this.#adopted.delete(masterName);
    this.#forgetUnused();
  }

  #remember(address: Address, origin: SentinelOrigin): KnownSentinel {
    const key = addressKey(address);
    let sentinel = this.#known.get(key);
    if (!sentinel) {
      sentinel = {
        address,
        origin,
        lastError: undefined,
        lastReplyAt: undefined,
        errors: 0,
        failuresInRow: 0,
        subscribed: false,
      };
      this.#known.set(key, sentinel);
    }
    return sentinel;
  }

  #setAdopted(masterName: string, adopted: KnownSentinel[]): void {
    const before = this.#adopted.get(masterName) ?? [];
    if (adopted.length === 0) this.#adopted.delete(masterName);
    else this.#adopted.set(masterName, adopted);
    for (const sentinel of adopted) {
      if (!before.includes(sentinel)) this.#startSubscription(sentinel.address);
    }
    this.#forgetUnused();
  }

  /** Stops the subscription and closes the connection of every Sentinel that no longer counts. */
  #forgetUnused(): void {
    const used = new Set(this.sentinels.map((s) => addressKey(s.address)));
    for (const [key, controller] of this.#subscribed) {
      if (used.has(key)) continue;
      controller.abort();
      this.#subscribed.delete(key);
    }
    for (const [key, connection] of this.#connections) {
      if (used.has(key)) continue;
      connection.close();
      this.#connections.delete(key);
    }
    for (const [key, sentinel] of this.#known) {
      // A dropped Sentinel is remembered only while it keeps failing, so that it is not re-adopted at once.
      if (!used.has(key) && sentinel.failuresInRow < DROP_AFTER_FAILURES) this.#known.delete(key);
    }
    if (this.#known.size > 4 * this.#options.maxSentinels + 64) {
      for (const key of this.#known.keys()) if (!used.has(key)) this.#known.delete(key);
    }
  }

  #startSubscription(address: Address): void {
    const handlers = this.#subscriptions;
    const parent = this.#subscriptionSignal;
    const key = addressKey(address);
    if (!handlers || !parent || parent.aborted || this.#subscribed.has(key)) return;
    const controller = new AbortController();
    this.#subscribed.set(key, controller);
    const signal = AbortSignal.any([parent, controller.signal]);
    const loop = this.#subscriptionLoop(address, handlers, signal).catch((error) => {
      log.error("Subscription to Sentinel {sentinel} ended unexpectedly: {error}", {
        sentinel: formatAddress(address),
        error: String(error),
      });
    }).finally(() => {
      this.#subscriptionLoops.delete(loop);
      if (this.#subscribed.get(key) !== controller) return;
      this.#subscribed.delete(key);
      const sentinel = this.#known.get(key);
      if (sentinel) sentinel.subscribed = false;
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
        await this.#subscribeOnce(address, handlers, signal, () => {
          if (failures > 0) {
            log.info(
              "Subscription to Sentinel {sentinel} restored after {failures} failed attempts",
              {
                sentinel: formatAddress(address),
                failures,
              },
            );
          }
          failures = 0;
        });
      } catch (caught) {
        if (signal.aborted) break;
        const error = withAuthHint(caught, this.#options.auth !== undefined);
        failures++;
        const sentinel = this.#known.get(addressKey(address));
        if (sentinel) {
          sentinel.lastError = (error as Error).message;
          sentinel.errors++;
          sentinel.subscribed = false;
        }
        if (failures === 1) {
          log.warn(
            "Subscription to Sentinel {sentinel} failed: {error}; retrying with backoff",
            { sentinel: formatAddress(address), error: (error as Error).message },
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
    onEstablished: () => void,
  ): Promise<void> {
    using connection = await RedisConnection.open(address, {
      connectTimeoutMs: this.#options.connectTimeoutMs,
      replyTimeoutMs: this.#options.replyTimeoutMs,
      auth: this.#options.auth,
      tls: this.#options.tls,
      signal,
    });
    await connection.send(["SUBSCRIBE", ...SENTINEL_CHANNELS]);
    for (const channel of SENTINEL_CHANNELS) {
      const confirmation = await connection.read({
        timeoutMs: this.#options.replyTimeoutMs,
        signal,
      });
      if (confirmation instanceof RespErrorReply) {
        throw new RedisCallError(
          address,
          "error-reply",
          `SUBSCRIBE ${channel} failed: ${confirmation.message.slice(0, 200)}`,
          { code: confirmation.code },
        );
      }
      if (
        !Array.isArray(confirmation) || confirmation[0] !== "subscribe" ||
        confirmation[1] !== channel
      ) {
        throw new RedisCallError(
          address,
          "protocol",
          `SUBSCRIBE ${channel} answered ${JSON.stringify(replyText(confirmation)).slice(0, 200)}`,
        );
      }
    }
    const known = this.#known.get(addressKey(address));
    this.#recordReply(address);
    if (known) known.subscribed = true;
    onEstablished();
    handlers.onSubscribed(address);
    // A silent Sentinel may be hung: ping it, and give up when no pong comes.
    const pingEveryMs = Math.max(1000, this.#options.replyTimeoutMs * 2);
    const heartbeat = setInterval(() => {
      connection.send(["PING"]).catch(() => connection.close());
    }, pingEveryMs);
    let tokens = EVENT_BURST;
    let refilledAt = performance.now();
    try {
      for (;;) {
        const message = await connection.read({
          timeoutMs: pingEveryMs + this.#options.replyTimeoutMs * 2,
          signal,
        });
        this.#recordReply(address);
        if (
          !Array.isArray(message) || message[0] !== "message" ||
          typeof message[1] !== "string" || typeof message[2] !== "string"
        ) continue;
        const parsed = parseSentinelEvent(message[1], message[2]);
        if (parsed.ok) {
          const sentinel = this.#known.get(addressKey(address));
          try {
            if (sentinel) handlers.onEvent(parsed.event, sentinel);
          } catch (error) {
            // A handler's bug must not end the subscription, nor count against the Sentinel.
            log.error("Handling {channel} from Sentinel {sentinel} failed: {error}", {
              channel: message[1],
              sentinel: formatAddress(address),
              error: error instanceof Error ? (error.stack ?? error.message) : String(error),
            });
          }
        } else {
          this.#logMalformed(address, message[1], message[2], parsed.reason);
        }
        // A flood is consumed no faster than the rate: the rest waits in the socket, not in memory.
        const now = performance.now();
        tokens = Math.min(EVENT_BURST, tokens + (now - refilledAt) * EVENTS_PER_SECOND / 1000);
        refilledAt = now;
        if (--tokens < 0) {
          await sleep(-tokens * 1000 / EVENTS_PER_SECOND, signal);
        }
      }
    } finally {
      clearInterval(heartbeat);
    }
  }

  #logMalformed(address: Address, channel: string, payload: string, reason: string): void {
    // One line a second at most, whoever sends them: a flood must not flood the log.
    const admitted = this.#malformedLog.admit("malformed");
    if (!admitted) return;
    log.warn(
      "Ignored a malformed {channel} message from Sentinel {sentinel}: {reason}: {payload}{more}",
      {
        channel: channel.slice(0, 64),
        sentinel: formatAddress(address),
        reason,
        payload: JSON.stringify(payload.slice(0, 200)),
        more: admitted.held > 0 ? ` (and ${admitted.held} more since the last line)` : "",
      },
    );
  }

  /**
   * One command to one Sentinel on its persistent connection. An error reply is
   * returned, except for the ones that show the Sentinel is not working.
   */
  async #call(
    sentinel: KnownSentinel,
    args: string[],
    signal: AbortSignal,
  ): Promise<RespValue> {
    const key = addressKey(sentinel.address);
    let connection = this.#connections.get(key);
    if (!connection) {
      connection = new ControlConnection(sentinel.address, () => ({
        connectTimeoutMs: this.#options.connectTimeoutMs,
        replyTimeoutMs: this.#options.replyTimeoutMs,
        auth: this.#options.auth,
        tls: this.#options.tls,
      }));
      this.#connections.set(key, connection);
    }
    try {
      const reply = await connection.call(args, signal);
      if (reply instanceof RespErrorReply && NOT_WORKING_CODES.has(reply.code)) {
        throw new RedisCallError(
          sentinel.address,
          "error-reply",
          `${args.slice(0, 2).join(" ")} failed: ${reply.message}`,
          { code: reply.code },
        );
      }
      sentinel.lastError = null;
      sentinel.lastReplyAt = Date.now();
      sentinel.failuresInRow = 0;
      return reply;
    } catch (caught) {
      const error = withAuthHint(caught, this.#options.auth !== undefined);
      // A call cut short by shutdown, reload or a caller's deadline says nothing about the Sentinel.
      if (!signal.aborted) {
        sentinel.lastError = (error as Error).message;
        sentinel.errors++;
        sentinel.failuresInRow++;
      }
      throw error;
    }
  }

  #recordReply(address: Address): void {
    const sentinel = this.#known.get(addressKey(address));
    if (sentinel) {
      sentinel.lastError = null;
      sentinel.lastReplyAt = Date.now();
      sentinel.failuresInRow = 0;
    }
  }
}

/** Whether two option sets connect alike: what a reload compares. */
function sameClientOptions(a: SentinelClientOptions, b: SentinelClientOptions): boolean {
  return a.connectTimeoutMs === b.connectTimeoutMs && a.replyTimeoutMs === b.replyTimeoutMs &&
    a.maxSentinels === b.maxSentinels && sameTlsClient(a.tls, b.tls) &&
    a.auth?.username === b.auth?.username && a.auth?.password === b.auth?.password;
}

/** Parses a `SENTINEL MASTER <name>` reply strictly. */
export function parseMasterReply(reply: RespValue): MasterAnswer {
  if (reply instanceof RespErrorReply) {
    return /no such master/i.test(reply.message)
      ? { kind: "unknown", detail: "unknown master name" }
      : { kind: "failed", detail: `SENTINEL MASTER failed: ${reply.message.slice(0, 200)}` };
  }
  if (!Array.isArray(reply)) {
    return {
      kind: "failed",
      detail: `SENTINEL MASTER answered ${JSON.stringify(replyText(reply)).slice(0, 200)}`,
    };
  }
  const fields = fieldMap(reply);
  const address = parseReportedAddress(fields.get("ip"), fields.get("port"));
  const epochText = fields.get("config-epoch");
  const timeoutText = fields.get("failover-timeout");
  if (!address) return { kind: "failed", detail: "SENTINEL MASTER named no valid address" };
  if (epochText === undefined || !/^[0-9]{1,15}$/.test(epochText)) {
    return { kind: "failed", detail: "SENTINEL MASTER gave no valid config-epoch" };
  }
  const flags = (fields.get("flags") ?? "").split(",").filter((f) => f !== "");
  const failoverTimeoutMs = timeoutText !== undefined && /^[0-9]{1,12}$/.test(timeoutText)
    ? Number(timeoutText)
    : 180_000;
  return { kind: "master", address, epoch: Number(epochText), flags, failoverTimeoutMs };
}

function failedView(sentinel: Readonly<KnownSentinel>, detail: string): SentinelView {
  // A call's error names the Sentinel already; the view's reader names it too.
  const named = `${formatAddress(sentinel.address)}: `;
  return {
    sentinel: sentinel.address,
    origin: sentinel.origin,
    answer: {
      kind: "failed",
      detail: detail.startsWith(named) ? detail.slice(named.length) : detail,
    },
  };
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
