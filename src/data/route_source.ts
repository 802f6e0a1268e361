/**
 * What the data plane asks the control plane about one database: where a new
 * client may go, or why it may not. The master watcher implements it; the
 * listener knows nothing else of the control plane.
 *
 * @module
 */
import type { Address } from "../shared/address.ts";
import type { Timeouts, TlsClientSettings, TlsServerSettings } from "../shared/settings.ts";
import type { DatabaseStats } from "../shared/stats.ts";

/** A confirmed master, as the data plane needs it. */
export interface AdmittedMaster {
  readonly address: Address;
}

/** The control plane of one database, as the listener sees it. */
export interface MasterSource {
  /** The database's name, deadlines and client bounds; a reload may change them. */
  readonly database: {
    readonly name: string;
    readonly timeouts: Timeouts;
    /** The most live clients of this database. */
    readonly maxClients: number;
    /** Whether both sockets of every tunnel have TCP keepalive on. */
    readonly tcpKeepAlive: boolean;
    /** TLS to the master; plain TCP when absent. */
    readonly tls?: TlsClientSettings | undefined;
    /** TLS served to new clients; a reload may change the files. */
    readonly listenTls?: TlsServerSettings | undefined;
  };
  /** Where the database's clients and bytes are counted. */
  readonly stats: DatabaseStats;
  /** The confirmed master, if any: the only node a new client may be joined to. */
  readonly master: AdmittedMaster | undefined;
  /** Why there is no confirmed master; `unknown` means the Sentinels do not know the name. */
  readonly problem: { readonly kind: string; readonly detail: string } | undefined;
  /** Waits up to `timeoutMs` for a confirmed master; at once `undefined` for an unknown name. */
  waitForMaster(timeoutMs: number, signal: AbortSignal): Promise<AdmittedMaster | undefined>;
  /** A client could not connect to `address`: check it now. */
  reportUnreachable(address: Address): void;
  /** Waits up to `timeoutMs` for the check under way, or the next one, to end. */
  nextResolution(timeoutMs: number, signal: AbortSignal): Promise<void>;
}
