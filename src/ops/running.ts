/**
 * The running tunnel as the operations on top of it read it (the admin API,
 * the metrics): its config, one control plane per master name, and its
 * ports. The wiring (`wiring/runtime.ts`) provides it; nothing here changes
 * it.
 *
 * @module
 */
import type { TunnelConfig } from "../shared/settings.ts";
import type { PortStats } from "../shared/stats.ts";
import type { ControlPlane, PortRoute } from "../control/control_plane.ts";
import type { SentinelClient } from "../control/sentinel_client.ts";
import type { ConnectionRegistry } from "../data/connection_registry.ts";
import type { ReadyPool } from "../data/ready_pool.ts";
import type { Tunnel } from "../data/tunnel.ts";
import type { DatabaseConfig } from "../shared/settings.ts";
import type { EventJournal } from "../shared/journal.ts";

/** One configured entry's running parts, as the admin API reads them. */
export interface RunningPort {
  /** The entry's settings in force. */
  readonly settings: DatabaseConfig;
  /** The address the port is bound to. */
  readonly listen: Deno.NetAddr;
  /** The control plane of its master name. */
  readonly plane: ControlPlane;
  /** What its listener asks the plane. */
  readonly route: PortRoute;
  readonly stats: PortStats;
  /** Its tunnels to the master. */
  readonly toMaster: ConnectionRegistry<Tunnel>;
  /** A read port's tunnels to replicas. */
  readonly toReplicas: ConnectionRegistry<Tunnel> | undefined;
  /** A master port's ready connections (`preconnect`). */
  readonly ready: ReadyPool | undefined;
}

/** The running tunnel, as the admin API reads it. */
export interface RunningTunnel {
  /** The config in force. */
  readonly config: TunnelConfig;
  /** One control plane per master name, in config order. */
  readonly planes: readonly ControlPlane[];
  /** One port per entry, in config order. */
  readonly ports: readonly RunningPort[];
  readonly sentinels: SentinelClient;
  /** What happened recently, for the status page. */
  readonly journal: EventJournal;
  /** When the tunnel started (ms since the epoch). */
  readonly startedAt: number;
}
