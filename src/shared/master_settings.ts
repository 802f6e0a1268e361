/**
 * What belongs to a master name rather than to a port: the settings its
 * control plane uses to find, check and fence its master. Every entry of one
 * name must agree on them (the config refuses entries that do not), so the
 * name's control plane takes them from any of its entries, and a port reads
 * the same values from its own entry.
 *
 * Also the explicit comparisons of settings that a reload and the config's
 * checks need: field by field, never by serialising.
 *
 * @module
 */
import { type Address, sameAddress } from "./address.ts";
import type {
  Credentials,
  DatabaseConfig,
  FenceConfig,
  HookConfig,
  Timeouts,
  TlsClientSettings,
  TlsServerSettings,
} from "./settings.ts";

/** A master name's own settings, taken from one of its entries. */
export interface MasterSettings {
  /** The Sentinel master name. */
  readonly name: string;
  /** Sent with AUTH on the ROLE connections, to the node Sentinel names only. */
  readonly masterAuth?: Credentials | undefined;
  /** TLS to the master and its replicas, for ROLE checks (and for tunnels). */
  readonly tls?: TlsClientSettings | undefined;
  readonly fence?: FenceConfig | undefined;
  readonly onMasterChange?: HookConfig | undefined;
  /** Deadline to connect to a node, for ROLE checks and tunnels. */
  readonly masterConnectMs: number;
  /** Deadline for a node's reply to AUTH and ROLE. */
  readonly masterReplyMs: number;
  /** How often the Sentinels are asked, as a fallback to pub/sub. */
  readonly pollIntervalMs: number;
}

/** The fields of {@linkcode MasterSettings} every entry of one name must agree on, as the config names them. */
export const MASTER_FIELDS = [
  "masterAuth",
  "tls",
  "fence",
  "onMasterChange",
  "timeouts.masterConnectMs",
  "timeouts.masterReplyMs",
] as const;

/** One of {@linkcode MASTER_FIELDS}. */
export type MasterField = (typeof MASTER_FIELDS)[number];

/** The master settings an entry carries. */
export function masterSettingsOf(database: DatabaseConfig): MasterSettings {
  return {
    name: database.name,
    masterAuth: database.masterAuth,
    tls: database.tls,
    fence: database.fence,
    onMasterChange: database.onMasterChange,
    masterConnectMs: database.timeouts.masterConnectMs,
    masterReplyMs: database.timeouts.masterReplyMs,
    pollIntervalMs: database.timeouts.pollIntervalMs,
  };
}

/**
 * The master fields two entries of one name disagree on, as the config names
 * them; empty when they agree.
 */
export function masterFieldsDiffering(a: DatabaseConfig, b: DatabaseConfig): MasterField[] {
  const differing: MasterField[] = [];
  if (!sameCredentials(a.masterAuth, b.masterAuth)) differing.push("masterAuth");
  if (!sameTlsClient(a.tls, b.tls)) differing.push("tls");
  if (!sameFence(a.fence, b.fence)) differing.push("fence");
  if (!sameHook(a.onMasterChange, b.onMasterChange)) differing.push("onMasterChange");
  if (a.timeouts.masterConnectMs !== b.timeouts.masterConnectMs) {
    differing.push("timeouts.masterConnectMs");
  }
  if (a.timeouts.masterReplyMs !== b.timeouts.masterReplyMs) {
    differing.push("timeouts.masterReplyMs");
  }
  return differing;
}

/** Whether two master settings connect alike: the ROLE connections opened with `a` serve `b`. */
export function sameConnectSettings(a: MasterSettings, b: MasterSettings): boolean {
  return sameCredentials(a.masterAuth, b.masterAuth) && sameTlsClient(a.tls, b.tls) &&
    a.masterConnectMs === b.masterConnectMs && a.masterReplyMs === b.masterReplyMs;
}

/** Whether two master settings are the same in every field. */
export function sameMasterSettings(a: MasterSettings, b: MasterSettings): boolean {
  return a.name === b.name && sameConnectSettings(a, b) && sameFence(a.fence, b.fence) &&
    sameHook(a.onMasterChange, b.onMasterChange) && a.pollIntervalMs === b.pollIntervalMs;
}

/** Whether two entries are the same in every field: a reload keeps such a port as it is. */
export function sameDatabase(a: DatabaseConfig, b: DatabaseConfig): boolean {
  return a.name === b.name && a.bind === b.bind && a.port === b.port && a.role === b.role &&
    a.maxLagBytes === b.maxLagBytes && a.whenNoReplica === b.whenNoReplica &&
    a.maxClients === b.maxClients && a.preconnect === b.preconnect &&
    a.tcpKeepAlive === b.tcpKeepAlive && sameTimeouts(a.timeouts, b.timeouts) &&
    masterFieldsDiffering(a, b).length === 0 && sameTlsServer(a.listenTls, b.listenTls);
}

export function sameCredentials(a: Credentials | undefined, b: Credentials | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.username === b.username && a.password === b.password &&
    a.passwordSource === b.passwordSource;
}

/** Field by field, the files' contents included: a rotated file is a change. */
export function sameTlsClient(
  a: TlsClientSettings | undefined,
  b: TlsClientSettings | undefined,
): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.caFile === b.caFile && a.ca === b.ca && a.certFile === b.certFile &&
    a.cert === b.cert && a.keyFile === b.keyFile && a.key === b.key &&
    a.serverName === b.serverName && a.verify === b.verify;
}

export function sameTlsServer(
  a: TlsServerSettings | undefined,
  b: TlsServerSettings | undefined,
): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.certFile === b.certFile && a.cert === b.cert && a.keyFile === b.keyFile &&
    a.key === b.key;
}

export function sameFence(a: FenceConfig | undefined, b: FenceConfig | undefined): boolean {
  return a?.afterMs === b?.afterMs;
}

export function sameHook(a: HookConfig | undefined, b: HookConfig | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.timeoutMs === b.timeoutMs && a.command.length === b.command.length &&
    a.command.every((part, i) => part === b.command[i]);
}

export function sameTimeouts(a: Timeouts, b: Timeouts): boolean {
  return a.sentinelConnectMs === b.sentinelConnectMs && a.sentinelReplyMs === b.sentinelReplyMs &&
    a.masterConnectMs === b.masterConnectMs && a.masterReplyMs === b.masterReplyMs &&
    a.pollIntervalMs === b.pollIntervalMs && a.clientWaitMs === b.clientWaitMs &&
    a.clientIdleMs === b.clientIdleMs;
}

/** Whether two lists name the same addresses in the same order. */
export function sameAddresses(a: readonly Address[], b: readonly Address[]): boolean {
  return a.length === b.length && a.every((address, i) => sameAddress(address, b[i]!));
}
