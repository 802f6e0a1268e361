/**
 * The resolved settings every part of the tunnel reads: what `config/mod.ts`
 * produces from a file or the environment, and their defaults. Types and
 * constants only, so that the control and data planes need not know how a
 * config is parsed.
 *
 * @module
 */
import type { Address } from "./address.ts";

/** Credentials for AUTH. The password is resolved; {@linkcode redactConfig} hides it. */
export interface Credentials {
  readonly username?: string;
  readonly password: string;
  /** Where the password came from: `"config"` or `"env NAME"`. */
  readonly passwordSource: string;
}

/** Deadlines and intervals, in milliseconds. */
export interface Timeouts {
  /** Deadline to connect to a Sentinel. @default {500} */
  readonly sentinelConnectMs: number;
  /** Deadline for a Sentinel's reply. @default {500} */
  readonly sentinelReplyMs: number;
  /** Deadline to connect to a master, for clients and for ROLE checks. @default {1000} */
  readonly masterConnectMs: number;
  /** Deadline for a master's reply to AUTH and ROLE. @default {1000} */
  readonly masterReplyMs: number;
  /** How often Sentinels are polled, as a fallback to pub/sub. @default {1000} */
  readonly pollIntervalMs: number;
  /** How long a new client waits for a confirmed master before it gets an error. @default {5000} */
  readonly clientWaitMs: number;
  /**
   * How long a tunnel may carry no byte either way before it is closed; 0 is off (pub/sub and
   * blocking clients idle legitimately). @default {0}
   */
  readonly clientIdleMs: number;
}

/** A command run on every confirmed master change. */
export interface HookConfig {
  /** The program and its arguments; no shell is involved. */
  readonly command: readonly string[];
  /** How long it may run before it is killed. @default {10000} */
  readonly timeoutMs: number;
}

/**
 * TLS towards Sentinels or masters, with the certificate files already read: a config reload
 * reads them again, so rotated files reach new connections without a restart.
 */
export interface TlsClientSettings {
  /** Where the trusted CAs came from (a PEM file), for messages; absent means the default roots. */
  readonly caFile?: string;
  /** PEM text of the trusted CAs, used instead of the roots Deno trusts by default. */
  readonly ca?: string;
  /** Where the client certificate came from, for messages. */
  readonly certFile?: string;
  /** PEM text of the client certificate chain, sent to servers with `tls-auth-clients yes`. */
  readonly cert?: string;
  /** Where the client key came from, for messages. */
  readonly keyFile?: string;
  /** PEM text of the client key. Secret: {@linkcode redactConfig} hides it. */
  readonly key?: string;
  /** The name every node's certificate is checked against; absent: the host name dialled. */
  readonly serverName?: string;
  /** Whether the peer's certificate is verified at all. @default {true} */
  readonly verify: boolean;
}

/** TLS on a local port: the certificate it serves, its files already read. */
export interface TlsServerSettings {
  readonly certFile: string;
  /** PEM text of the certificate chain. */
  readonly cert: string;
  readonly keyFile: string;
  /** PEM text of the key. Secret: {@linkcode redactConfig} hides it. */
  readonly key: string;
}

/** The write fence of {@linkcode DatabaseConfig.fence}. */
export interface FenceConfig {
  /** How long the master may go without a Sentinel's confirmation, in milliseconds. */
  readonly afterMs: number;
}

/** What a database's port serves: the master, or its replicas (a read port). */
export type DatabaseRole = "master" | "replica";

/** Where a replica port sends a client when no replica is usable. */
export type WhenNoReplica = "master" | "reject";

/**
 * One database: a Sentinel master name served on a local port. One name may be
 * served on several ports, each with its role; a port identifies an entry.
 */
export interface DatabaseConfig {
  readonly name: string;
  readonly bind: string;
  readonly port: number;
  /** What the port serves. @default {"master"} */
  readonly role: DatabaseRole;
  /**
   * Replica ports: a replica further behind the master than this many bytes of
   * replication stream gets no new client and loses its clients.
   * @default {DEFAULT_MAX_LAG_BYTES}
   */
  readonly maxLagBytes: number;
  /** Replica ports: with no usable replica, wait and refuse, or use the master. @default {"reject"} */
  readonly whenNoReplica: WhenNoReplica;
  /**
   * The write fence: when no majority of the configured Sentinels has confirmed
   * the master for this long, its clients are cut and new ones refused until a
   * majority does. Off when absent.
   */
  readonly fence?: FenceConfig;
  readonly masterAuth?: Credentials;
  readonly timeouts: Timeouts;
  readonly onMasterChange?: HookConfig;
  /** The most live clients of this database; the one over gets a RESP error. */
  readonly maxClients: number;
  /**
   * Master ports: connections kept open and untouched to the confirmed master,
   * each handed to a new client instead of a dial; 0 is off. They count
   * against `maxClients`. Always 0 on a read port.
   */
  readonly preconnect: number;
  /** Whether both sockets of every tunnel have TCP keepalive on (the system's timers). */
  readonly tcpKeepAlive: boolean;
  /** TLS to this database's master, for tunnels and ROLE checks; plaintext when absent. */
  readonly tls?: TlsClientSettings;
  /** TLS on the local port; plaintext when absent. */
  readonly listenTls?: TlsServerSettings;
}

/** The resolved configuration. */
export interface TunnelConfig {
  /** Which format the config was written in. */
  readonly format: "documented" | "original" | "environment";
  readonly sentinels: readonly Address[];
  readonly sentinelAuth?: Credentials;
  /** TLS to every Sentinel; plaintext when absent. */
  readonly sentinelTls?: TlsClientSettings;
  readonly timeouts: Timeouts;
  readonly databases: readonly DatabaseConfig[];
  /** Where the admin HTTP API listens; off when absent. */
  readonly admin?: Address;
  /** The most Sentinels that count for one master, configured ones included. @default {16} */
  readonly maxSentinels: number;
  /** The most live clients of every database together. @default {10000} */
  readonly maxClients: number;
}

/** The default of {@linkcode TunnelConfig.maxClients}, and of each database's own cap. */
export const DEFAULT_MAX_CLIENTS = 10_000;

/**
 * The default of {@linkcode DatabaseConfig.preconnect} for a database with TLS
 * to its master (0 without). A TLS client pays two round trips and a key
 * exchange on both ends before its first command; a ready connection saves it
 * all, and four cover a burst of new clients while more are dialled, for four
 * idle connections on the master per tunnel. Plaintext saves one round trip
 * only: opening connections nobody asked for is left to the operator there.
 */
export const DEFAULT_TLS_PRECONNECT = 4;

/**
 * The default of {@linkcode DatabaseConfig.maxLagBytes}: 1 MiB, about a second
 * of a busy master's writes, and far above what one round trip of sampling
 * skew adds on a LAN; a replica in a full resync is refused anyway (not
 * `connected`).
 */
export const DEFAULT_MAX_LAG_BYTES = 1_048_576;

/** The default of {@linkcode TunnelConfig.maxSentinels}. */
export const DEFAULT_MAX_SENTINELS = 16;

/** The defaults for {@linkcode Timeouts}. */
export const DEFAULT_TIMEOUTS: Timeouts = Object.freeze({
  sentinelConnectMs: 500,
  sentinelReplyMs: 500,
  masterConnectMs: 1000,
  masterReplyMs: 1000,
  pollIntervalMs: 1000,
  clientWaitMs: 5000,
  clientIdleMs: 0,
});

/** How long a hook may run when the config does not say. */
export const DEFAULT_HOOK_TIMEOUT_MS = 10_000;

/** The listen address when none is given: loopback only, unlike the original. */
export const DEFAULT_BIND = "127.0.0.1";
