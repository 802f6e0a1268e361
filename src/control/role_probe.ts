/**
 * Asks Redis nodes for their ROLE, each on a persistent control connection
 * (AUTH once per connection), and sorts the answer into what the master
 * watcher acts on: a role, busy (no answer yet, which is not a lost master),
 * unreachable, or an error.
 *
 * @module
 */
import { type Address, addressKey, formatAddress } from "../shared/address.ts";
import { type ConnectSettings, ControlConnection } from "./control_connection.ts";
import { RedisCallError } from "./redis_connection.ts";
import { RespErrorReply } from "./resp.ts";
import { parseReportedAddress } from "./sentinel_events.ts";

/** A master's ROLE: its replication offset and the replicas attached to it. */
export interface MasterRole {
  readonly offset: number;
  /** Each replica as the master sees it: its announced address and the offset it acknowledged. */
  readonly replicas: readonly { readonly address: Address; readonly offset: number }[];
}

/** A replica's ROLE: the master it follows, the state of that link, and its offset. */
export interface ReplicaRole {
  readonly master: Address;
  /** `connect`, `connecting`, `sync` or `connected`. */
  readonly state: string;
  readonly offset: number;
}

/** What a node said it is when asked with ROLE. */
export type RoleCheck =
  | {
    readonly kind: "role";
    readonly role: string;
    /** A master's details; absent for other roles, or when the reply was malformed. */
    readonly asMaster?: MasterRole;
    /** A replica's details; absent for other roles, or when the reply was malformed. */
    readonly asReplica?: ReplicaRole;
  }
  /** It is there but gave no answer: `-BUSY`, `-LOADING`, or the reply deadline passed. */
  | { readonly kind: "busy"; readonly detail: string }
  /**
   * It could not be reached: refused, reset, closed; `silent` when the connect
   * timed out (no answer at all: a dead link, not a dead process).
   */
  | { readonly kind: "unreachable"; readonly detail: string; readonly silent?: boolean }
  /** Anything else: AUTH refused, a malformed reply. */
  | { readonly kind: "error"; readonly detail: string };

/** Asks one node for its role; the master watcher takes any function of this shape. */
export type RoleChecker = (address: Address, signal: AbortSignal) => Promise<RoleCheck>;

/** Error codes of a node that is alive but cannot answer yet. */
const BUSY_CODES = new Set(["BUSY", "LOADING"]);

/** Persistent ROLE connections, one per node asked. */
export class RoleProbe implements Disposable {
  readonly #settings: () => ConnectSettings;
  readonly #connections = new Map<string, ControlConnection>();

  readonly #onPeerClosed: ((address: Address) => void) | undefined;

  /**
   * `settings` is read for every new connection, so new credentials apply after a reload.
   * `onPeerClosed` runs as soon as a node closes its connection between checks (it died,
   * say), rather than at the next check.
   */
  constructor(settings: () => ConnectSettings, onPeerClosed?: (address: Address) => void) {
    this.#settings = settings;
    this.#onPeerClosed = onPeerClosed;
  }

  /** Asks `address` for its role. Never rejects. */
  readonly check: RoleChecker = async (address, signal) => {
    const key = addressKey(address);
    let connection = this.#connections.get(key);
    if (!connection) {
      const onPeerClosed = this.#onPeerClosed;
      connection = new ControlConnection(
        address,
        this.#settings,
        onPeerClosed && (() => onPeerClosed(address)),
      );
      this.#connections.set(key, connection);
    }
    const where = formatAddress(address);
    const hasAuth = this.#settings().auth !== undefined;
    try {
      const reply = await connection.call(["ROLE"], signal);
      if (reply instanceof RespErrorReply) {
        const detail = `ROLE on ${where} answered ${reply.message.slice(0, 200)}`;
        if (BUSY_CODES.has(reply.code)) return { kind: "busy", detail };
        return { kind: "error", detail: `${detail}${noAuthHint(reply.code, hasAuth)}` };
      }
      if (Array.isArray(reply) && typeof reply[0] === "string") {
        const role = reply[0];
        const asMaster = role === "master" ? parseMasterRole(reply) : undefined;
        const asReplica = role === "slave" ? parseReplicaRole(reply) : undefined;
        return {
          kind: "role",
          role,
          ...(asMaster ? { asMaster } : {}),
          ...(asReplica ? { asReplica } : {}),
        };
      }
      return {
        kind: "error",
        detail: `ROLE on ${where} answered ${JSON.stringify(reply).slice(0, 200)}`,
      };
    } catch (error) {
      const detail = `ROLE check failed: ${(error as Error).message}`;
      if (!(error instanceof RedisCallError)) return { kind: "unreachable", detail };
      switch (error.kind) {
        // No reply, or a TLS handshake that a node which took the TCP connection never finished:
        // alive but not answering (busy, frozen), not a silent link.
        case "reply-timeout":
        case "handshake-timeout":
          return { kind: "busy", detail };
        // No connection at all, or no turn behind calls that got none: a silent link.
        case "connect-timeout":
        case "turn-timeout":
          return { kind: "unreachable", detail, silent: true };
        case "unreachable":
          return { kind: "unreachable", detail };
        case "error-reply":
        case "protocol":
        case "tls":
          return { kind: "error", detail: `${detail}${noAuthHint(error.code, hasAuth)}` };
      }
    }
  };

  /** Closes the connections to every node but `keep`. */
  keepOnly(keep: readonly Address[]): void {
    const wanted = new Set(keep.map(addressKey));
    for (const [key, connection] of this.#connections) {
      if (wanted.has(key)) continue;
      connection.close();
      this.#connections.delete(key);
    }
  }

  /** Closes every connection; the next check opens a new one (new credentials, say). */
  reset(): void {
    this.keepOnly([]);
  }

  [Symbol.dispose](): void {
    this.reset();
  }
}

/** `["master", offset, [[ip, port, offset], ...]]`, or `undefined` when it is not that shape. */
export function parseMasterRole(reply: readonly unknown[]): MasterRole | undefined {
  const [, offset, list] = reply;
  if (!isOffset(offset) || !Array.isArray(list)) return undefined;
  const replicas: { address: Address; offset: number }[] = [];
  for (const entry of list) {
    if (!Array.isArray(entry)) return undefined;
    const [host, port, acked] = entry;
    const address = typeof host === "string" && typeof port === "string"
      ? parseReportedAddress(host, port)
      : undefined;
    const ackedOffset = typeof acked === "string" && /^[0-9]{1,19}$/.test(acked)
      ? Number(acked)
      : undefined;
    if (!address || ackedOffset === undefined) return undefined;
    replicas.push({ address, offset: ackedOffset });
  }
  return { offset, replicas };
}

/** `["slave", ip, port, state, offset]`, or `undefined` when it is not that shape. */
export function parseReplicaRole(reply: readonly unknown[]): ReplicaRole | undefined {
  const [, host, port, state, offset] = reply;
  if (typeof host !== "string" || typeof port !== "number" || typeof state !== "string") {
    return undefined;
  }
  const master = parseReportedAddress(host, String(port));
  if (!master || !isOffset(offset)) return undefined;
  return { master, state, offset };
}

function isOffset(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= -1;
}

function noAuthHint(code: string | undefined, hasAuth: boolean): string {
  if (code !== "NOAUTH" && code !== "NOPERM" && code !== "WRONGPASS") return "";
  return hasAuth
    ? "; check the masterAuth credentials and the ACL user's permissions"
    : "; set masterAuth in the config so the tunnel can check ROLE";
}
