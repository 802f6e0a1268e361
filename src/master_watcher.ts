/**
 * The control plane of one database: which master its clients go to.
 *
 * The state is explicit: a confirmed master or none, and the last problem.
 * One loop per database changes it; events (`+switch-master`, a failed dial, a
 * new subscription) only set a hint and wake the loop. A master is used only
 * after it says so itself with ROLE. When Sentinel names another master, every
 * tunnel to the old one is closed at once, so that no client keeps writing to
 * a demoted node.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { type Address, formatAddress, sameAddress } from "./address.ts";
import type { DatabaseConfig } from "./config.ts";
import type { ConnectionRegistry } from "./connection_registry.ts";
import { type AuthOptions, RedisConnection } from "./redis_connection.ts";
import { RespErrorReply } from "./resp.ts";
import { DatabaseStats } from "./metrics.ts";
import { type SentinelClient, sleep } from "./sentinel_client.ts";

const log = getLogger(["sentinel-tunnel", "watcher"]);

/** What a node said it is when asked with ROLE. */
export type RoleCheck =
  | { readonly kind: "role"; readonly role: string }
  | { readonly kind: "unreachable"; readonly detail: string }
  | { readonly kind: "error"; readonly detail: string };

/** Options for {@linkcode checkRole}. */
export interface CheckRoleOptions {
  connectTimeoutMs: number;
  replyTimeoutMs: number;
  auth?: AuthOptions | undefined;
  signal: AbortSignal;
}

/** Asks a node for its ROLE: `master`, `slave` or `sentinel`. */
export async function checkRole(
  address: Address,
  options: CheckRoleOptions,
): Promise<RoleCheck> {
  try {
    using connection = await RedisConnection.open(address, options);
    const reply = await connection.call(["ROLE"], options.signal);
    if (reply instanceof RespErrorReply) {
      return {
        kind: "error",
        detail: `ROLE failed on ${formatAddress(address)}: ${reply.message}${
          noAuthHint(reply.code, options.auth !== undefined)
        }`,
      };
    }
    if (Array.isArray(reply) && typeof reply[0] === "string") {
      return { kind: "role", role: reply[0] };
    }
    return {
      kind: "error",
      detail: `ROLE on ${formatAddress(address)} answered ${JSON.stringify(reply)}`,
    };
  } catch (error) {
    const detail = `ROLE check failed: ${(error as Error).message}`;
    return error instanceof Error && error.message.includes("AUTH failed")
      ? { kind: "error", detail }
      : { kind: "unreachable", detail };
  }
}

function noAuthHint(code: string, hasAuth: boolean): string {
  if (code !== "NOAUTH" && code !== "NOPERM" && code !== "WRONGPASS") return "";
  return hasAuth
    ? "; check the masterAuth credentials and the ACL user's permissions"
    : "; set masterAuth in the config so the tunnel can check ROLE";
}

/** Why there is no confirmed master. */
export interface MasterProblem {
  readonly kind:
    | "unreachable"
    | "unknown"
    | "not-master"
    | "master-unreachable"
    | "error";
  readonly detail: string;
  readonly since: number;
}

/** A confirmed master and how it was learned. */
export interface ConfirmedMaster {
  readonly address: Address;
  readonly confirmedAt: number;
  /** How it was learned, such as `sentinel 127.0.0.1:26379` or `+switch-master from 127.0.0.1:26380`. */
  readonly via: string;
}

/** A `+switch-master` message waiting for its ROLE check. */
interface SwitchHint {
  readonly address: Address;
  readonly sentinel: Address;
}

/** A confirmed change of master, for hooks. */
export interface MasterChange {
  readonly database: string;
  /** The master confirmed before, if any. */
  readonly from: Address | undefined;
  readonly to: Address;
  readonly via: string;
}

/** What the watcher asks of the Sentinels; a {@linkcode SentinelClient} in production. */
export type SentinelSource = Pick<
  SentinelClient,
  "getMasterAddress" | "majorityMaster" | "discoverSentinels"
>;

/** Options for {@linkcode MasterWatcher}. */
export interface MasterWatcherOptions {
  sentinels: SentinelSource;
  /** How a candidate is asked for its role. @default {checkRole} */
  checkRole?: typeof checkRole;
  registry: ConnectionRegistry;
  /** Where resolution latency and master changes are counted. */
  stats?: DatabaseStats;
  /** Called after each confirmed master that differs from the one before; it must not throw. */
  onMasterChange?: (change: MasterChange) => void;
  /** The first retry delay while no master is confirmed; it doubles up to the poll interval. @default {100} */
  retryDelayMs?: number;
  /** How often to ask Sentinels for further Sentinels. @default {30000} */
  discoveryIntervalMs?: number;
}

/** Watches one database's master. */
export class MasterWatcher {
  #database: DatabaseConfig;
  readonly #sentinels: SentinelSource;
  readonly #checkRole: typeof checkRole;
  readonly #registry: ConnectionRegistry;
  readonly #retryDelayMs: number;
  readonly #discoveryIntervalMs: number;
  readonly #stats: DatabaseStats;
  readonly #onMasterChange: ((change: MasterChange) => void) | undefined;
  #master: ConfirmedMaster | undefined;
  /** The last master confirmed, kept while none is: a blip of the same master is no change. */
  #lastConfirmed: Address | undefined;
  #problem: MasterProblem | undefined;
  #lastDiscovery = 0;
  #changed = Promise.withResolvers<void>();
  #hint: SwitchHint | undefined;
  /** Bumped by every +switch-master; an attempt that started before drops what it learned. */
  #generation = 0;
  #attempt: AbortController | undefined;
  #resolved = Promise.withResolvers<void>();
  #wake: (() => void) | undefined;
  #wakePending = false;
  #lastFailureLog = { at: 0, suppressed: 0 };

  constructor(database: DatabaseConfig, options: MasterWatcherOptions) {
    this.#database = database;
    this.#sentinels = options.sentinels;
    this.#checkRole = options.checkRole ?? checkRole;
    this.#registry = options.registry;
    this.#retryDelayMs = options.retryDelayMs ?? 100;
    this.#discoveryIntervalMs = options.discoveryIntervalMs ?? 30_000;
    this.#stats = options.stats ?? new DatabaseStats();
    this.#onMasterChange = options.onMasterChange;
  }

  /** The database's current settings. */
  get database(): DatabaseConfig {
    return this.#database;
  }

  /**
   * Takes new settings for the same database and listen address (a reload),
   * and checks the master again with them. Tunnels are kept.
   */
  update(database: DatabaseConfig): void {
    this.#database = database;
    this.wake();
  }

  /** What this database's control plane has counted. */
  get stats(): DatabaseStats {
    return this.#stats;
  }

  /** The confirmed master, if any. */
  get master(): ConfirmedMaster | undefined {
    return this.#master;
  }

  /** Why there is no confirmed master, or the last failed poll while there is one. */
  get problem(): MasterProblem | undefined {
    return this.#problem;
  }

  /** Resolves, confirms and polls until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    let retryDelay = this.#retryDelayMs;
    while (!signal.aborted) {
      await this.#resolveOnce(signal);
      if (signal.aborted) break;
      if (this.#master) {
        retryDelay = this.#retryDelayMs;
        await this.#discoverIfDue(signal);
        await this.#sleepUnlessWoken(
          this.database.timeouts.pollIntervalMs,
          signal,
        );
      } else {
        await this.#sleepUnlessWoken(retryDelay, signal);
        retryDelay = Math.min(
          retryDelay * 2,
          this.database.timeouts.pollIntervalMs,
        );
      }
    }
    this.#notify();
  }

  /**
   * Waits up to `timeoutMs` for a confirmed master. Returns at once when the
   * Sentinels already said they do not know this master name.
   */
  async waitForMaster(
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<ConfirmedMaster | undefined> {
    if (this.#master) return this.#master;
    const deadline = AbortSignal.any([AbortSignal.timeout(timeoutMs), signal]);
    const expired = new Promise<void>((resolve) => {
      if (deadline.aborted) resolve();
      deadline.addEventListener("abort", () => resolve(), { once: true });
    });
    while (!this.#master && !deadline.aborted) {
      if (this.#problem?.kind === "unknown") return undefined;
      await Promise.race([this.#changed.promise, expired]);
    }
    return this.#master;
  }

  /** A Sentinel published `+switch-master` for this database. */
  onSwitchMaster(address: Address, sentinel: Address): void {
    if (this.#master && sameAddress(this.#master.address, address)) return;
    if (this.#hint && sameAddress(this.#hint.address, address)) return;
    // Whatever an attempt under way learns now is older than this message: drop it.
    this.#generation++;
    this.#attempt?.abort();
    this.#cutOff(address, `+switch-master from ${formatAddress(sentinel)}`);
    this.#hint = { address, sentinel };
    this.wake();
  }

  /** A client could not connect to `address`: check it now rather than at the next poll. */
  reportUnreachable(address: Address): void {
    if (this.#master && sameAddress(this.#master.address, address)) this.wake();
  }

  /** Waits up to `timeoutMs` for the attempt under way, or the next one, to end. */
  async nextResolution(timeoutMs: number, signal: AbortSignal): Promise<void> {
    const deadline = AbortSignal.any([AbortSignal.timeout(timeoutMs), signal]);
    if (deadline.aborted) return;
    const { promise, resolve } = Promise.withResolvers<void>();
    deadline.addEventListener("abort", () => resolve(), { once: true });
    await Promise.race([this.#resolved.promise, promise]);
  }

  /** Runs the next resolution now. */
  wake(): void {
    if (this.#wake) this.#wake();
    else this.#wakePending = true;
  }

  async #resolveOnce(signal: AbortSignal): Promise<void> {
    // The hint stays set until this attempt ends, so that the same message from other Sentinels is ignored.
    const hint = this.#hint;
    const generation = this.#generation;
    const attempt = new AbortController();
    this.#attempt = attempt;
    const started = performance.now();
    try {
      await this.#resolve(hint, generation, AbortSignal.any([signal, attempt.signal]));
    } finally {
      if (this.#hint === hint && this.#generation === generation) this.#hint = undefined;
      this.#attempt = undefined;
      if (!signal.aborted) {
        this.#stats.resolutionSeconds.observe((performance.now() - started) / 1000);
      }
      this.#resolved.resolve();
      this.#resolved = Promise.withResolvers<void>();
    }
  }

  async #resolve(
    hint: SwitchHint | undefined,
    generation: number,
    signal: AbortSignal,
  ): Promise<void> {
    // A newer +switch-master makes this attempt's findings stale.
    const stale = () => signal.aborted || this.#generation !== generation;
    let candidate: Address;
    let via: string;
    if (hint) {
      candidate = hint.address;
      via = `+switch-master from ${formatAddress(hint.sentinel)}`;
    } else {
      const lookup = await this.#sentinels.getMasterAddress(this.database.name, signal);
      if (stale()) return;
      if (lookup.kind !== "found") {
        // With every Sentinel down, the known master keeps serving.
        this.#fail(lookup.kind, lookup.detail);
        return;
      }
      candidate = lookup.address;
      via = `sentinel ${formatAddress(lookup.sentinel)}`;
      const known = this.#lastConfirmed;
      if (known && !sameAddress(known, candidate)) {
        // A Sentinel that lags or sits in a minority may name the old master: act on a change
        // learned by polling only when most known Sentinels agree on it.
        const verdict = await this.#sentinels.majorityMaster(this.database.name, signal);
        if (stale()) return;
        if (!verdict.address) {
          this.#fail("unreachable", `Sentinels disagree on the master: ${verdict.detail}`);
          return;
        }
        candidate = verdict.address;
        via = `${verdict.detail}`;
        if (!sameAddress(known, candidate)) this.#cutOff(candidate, via);
      }
    }
    const role = await this.#checkRole(candidate, {
      connectTimeoutMs: this.database.timeouts.masterConnectMs,
      replyTimeoutMs: this.database.timeouts.masterReplyMs,
      auth: this.database.masterAuth,
      signal,
    });
    if (stale()) return;
    if (role.kind === "role" && role.role === "master") {
      this.#confirm(candidate, via);
    } else if (role.kind === "role") {
      // It says it is not master: nobody may keep writing to it through the tunnel.
      this.#demote(candidate, `it says it is ${role.role}`);
      this.#fail(
        "not-master",
        `${via} names ${formatAddress(candidate)}, but it says it is ${role.role}`,
      );
    } else if (role.kind === "unreachable") {
      // Not known to be demoted: keep its tunnels, but send no new client there.
      this.#master = undefined;
      this.#fail(
        "master-unreachable",
        `master ${formatAddress(candidate)} from ${via}: ${role.detail}`,
      );
    } else {
      this.#master = undefined;
      this.#fail("error", role.detail);
    }
  }

  /** Sentinel names `address`: every other node is demoted, so cut their clients off now, before ROLE confirms it. */
  #cutOff(address: Address, reason: string): void {
    const previous = this.#master;
    this.#master = undefined;
    const closed = this.#registry.closeAllExcept(address);
    log.warn(
      "Database {database}: {reason} names {to} (was {from}); closed {closed} client connections to other nodes",
      {
        database: this.database.name,
        reason,
        from: previous
          ? formatAddress(previous.address)
          : this.#lastConfirmed
          ? `${formatAddress(this.#lastConfirmed)}, unconfirmed`
          : "none",
        to: formatAddress(address),
        closed,
      },
    );
    this.#notify();
  }

  #confirm(address: Address, via: string): void {
    const previous = this.#master;
    const recovered = this.#problem;
    this.#problem = undefined;
    if (previous && sameAddress(previous.address, address)) return;
    this.#master = { address, confirmedAt: Date.now(), via };
    const closed = this.#registry.closeAllExcept(address);
    const from = this.#lastConfirmed;
    this.#lastConfirmed = address;
    if (!from || !sameAddress(from, address)) {
      if (from) this.#stats.masterChanges++;
      this.#onMasterChange?.({ database: this.database.name, from, to: address, via });
    }
    log.info(
      "Database {database}: master is {to} (was {from}), learned via {via}; closed {closed} stale connections",
      {
        database: this.database.name,
        from: previous
          ? formatAddress(previous.address)
          : recovered
          ? `none: ${recovered.detail}`
          : "none",
        to: formatAddress(address),
        via,
        closed,
      },
    );
    this.#notify();
  }

  /** `address` is not master: close its tunnels, and stop sending clients there. */
  #demote(address: Address, reason: string): void {
    if (this.#master && sameAddress(this.#master.address, address)) this.#master = undefined;
    const closed = this.#registry.closeTo(address);
    if (closed === 0) return;
    log.warn(
      "Database {database}: {from} is not master: {reason}; closed {closed} client connections to it",
      {
        database: this.database.name,
        from: formatAddress(address),
        reason,
        closed,
      },
    );
    this.#notify();
  }

  #fail(kind: MasterProblem["kind"], detail: string): void {
    const now = Date.now();
    const repeated = this.#problem?.kind === kind &&
      this.#problem.detail === detail;
    this.#problem = {
      kind,
      detail,
      since: repeated ? this.#problem!.since : now,
    };
    // The same failure every poll would flood the log: repeat it at most every 30 s, with a count.
    if (!repeated || now - this.#lastFailureLog.at >= 30_000) {
      log.warn(
        "Database {database}: resolution failed ({kind}): {detail}{keeping}{repeats}",
        {
          database: this.database.name,
          kind,
          detail,
          keeping: this.#master ? `; keeping master ${formatAddress(this.#master.address)}` : "",
          master: this.#master ? formatAddress(this.#master.address) : null,
          repeats: repeated
            ? ` (failed ${this.#lastFailureLog.suppressed + 1} times since the last report)`
            : "",
        },
      );
      this.#lastFailureLog = { at: now, suppressed: 0 };
    } else {
      this.#lastFailureLog.suppressed++;
    }
    this.#notify();
  }

  async #discoverIfDue(signal: AbortSignal): Promise<void> {
    const now = Date.now();
    if (now - this.#lastDiscovery < this.#discoveryIntervalMs) return;
    this.#lastDiscovery = now;
    await this.#sentinels.discoverSentinels(this.database.name, signal);
  }

  /** Wakes every waiter; each checks the state again. */
  #notify(): void {
    this.#changed.resolve();
    this.#changed = Promise.withResolvers<void>();
  }

  async #sleepUnlessWoken(ms: number, signal: AbortSignal): Promise<void> {
    if (this.#wakePending) {
      this.#wakePending = false;
      return;
    }
    const woken = new AbortController();
    this.#wake = () => woken.abort();
    try {
      await sleep(ms, AbortSignal.any([signal, woken.signal]));
    } finally {
      this.#wake = undefined;
    }
  }
}
