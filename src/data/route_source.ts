/**
 * What the data plane asks the control plane about one port: where a new
 * client may go, or why it may not. The master watcher implements it for a
 * master port, the replica watcher for a replica port; the listener knows
 * nothing else of the control plane.
 *
 * @module
 */
import type { Address } from "../shared/address.ts";
import type { Timeouts, TlsClientSettings, TlsServerSettings } from "../shared/settings.ts";
import type { DatabaseStats } from "../shared/stats.ts";

/**
 * Where a new client may go: the confirmed master, or the replicas usable now.
 * The control plane replaces the object when it changes, never edits it; on a
 * master port the object is the same exactly while one confirmation of the
 * master lasts.
 */
export interface Targets {
  readonly kind: "master" | "replica";
  readonly addresses: readonly Address[];
}

/** The control plane of one port, as the listener sees it. */
export interface RouteSource {
  /** The port's database name, role, deadlines and client bounds; a reload may change them. */
  readonly database: {
    readonly name: string;
    /** What the port serves. @default {"master"} */
    readonly role?: "master" | "replica";
    readonly timeouts: Timeouts;
    /** The most live clients of this port. */
    readonly maxClients: number;
    /** Whether both sockets of every tunnel have TCP keepalive on. */
    readonly tcpKeepAlive: boolean;
    /** TLS to the nodes; plain TCP when absent. */
    readonly tls?: TlsClientSettings | undefined;
    /** TLS served to new clients; a reload may change the files. */
    readonly listenTls?: TlsServerSettings | undefined;
  };
  /** Where the port's clients and bytes are counted. */
  readonly stats: DatabaseStats;
  /** Where a new client may go now; `undefined` while nowhere. */
  readonly targets: Targets | undefined;
  /** Why nowhere; `unknown` means the Sentinels do not know the name. */
  readonly problem: { readonly kind: string; readonly detail: string } | undefined;
  /** Waits up to `timeoutMs` for targets; at once `undefined` for an unknown name. */
  waitForTargets(timeoutMs: number, signal: AbortSignal): Promise<Targets | undefined>;
  /** A client could not connect to `address`: check it now. */
  reportUnreachable(address: Address): void;
  /** Waits up to `timeoutMs` for the check under way, or the next one, to end. */
  nextResolution(timeoutMs: number, signal: AbortSignal): Promise<void>;
}
