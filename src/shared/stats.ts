/**
 * What the tunnel counts: per port, what the data plane does (it adds to plain
 * number fields: no allocation, no lookup per chunk); per master name, what
 * the control plane sees (master changes, failovers, the fence, resolution
 * latency). The admin API renders both (`ops/metrics.ts`).
 *
 * @module
 */
import type { CutReason } from "./journal.ts";

/** Upper bounds of the resolution latency histogram, in seconds. */
export const RESOLUTION_BUCKETS = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
] as const;

/** A cumulative histogram with fixed buckets. */
export class Histogram {
  readonly bounds: readonly number[];
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = bounds.map(() => 0);
  }

  observe(value: number): void {
    this.sum += value;
    this.count++;
    for (let i = 0; i < this.bounds.length; i++) {
      if (value <= this.bounds[i]!) this.counts[i]!++;
    }
  }
}

/** Upper bounds of the histogram of how long new clients waited for somewhere to go, in seconds. */
export const CLIENT_WAIT_BUCKETS = [0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const;

/** What one port's listener and tunnels have done: the data plane's counters. */
export class PortStats {
  /**
   * How long each new client that found nowhere to go waited for somewhere (or
   * until it was refused or left): failovers and outages as clients feel them.
   */
  readonly clientWaitSeconds = new Histogram(CLIENT_WAIT_BUCKETS);
  connectionsTotal = 0;
  connectionsRejected = 0;
  /** Refused because the port's own `maxClients` was reached. */
  connectionsOverDatabaseLimit = 0;
  /** Refused because the `maxClients` of every port together was reached. */
  connectionsOverTotalLimit = 0;
  /** Tunnels closed after carrying no byte either way for `clientIdleMs`. */
  connectionsIdleClosed = 0;
  /** Connections that reset or aborted before the listener accepted them, and were skipped. */
  connectionsAbortedBeforeAccept = 0;
  /**
   * Episodes of accepts failing for lack of file descriptors (EMFILE, ENFILE):
   * the signal that `ulimit -n` is too low, readable without reading /proc.
   */
  acceptsOutOfDescriptors = 0;
  /** Clients that took a ready connection (`preconnect`) instead of dialling the master. */
  readyConnectionsUsed = 0;
  /** Ready connections closed unused: cut off, closed by the master, too old, or shed for a client. */
  readyConnectionsDiscarded = 0;
  bytesClientToMaster = 0;
  bytesMasterToClient = 0;
}

/** What one master name's control plane has seen: counted once per name, whatever its ports. */
export class MasterStats {
  /** Confirmed changes from one master to another. */
  masterChanges = 0;
  /** Failovers that held clients: a promotion announced, or found under way by a check. */
  failovers = 0;
  /** Times the write fence closed. */
  fenceClosures = 0;
  /** How long each check took: ask the Sentinels, confirm with ROLE. */
  readonly resolutionSeconds = new Histogram(RESOLUTION_BUCKETS);
  /** Client connections cut off, by why, on every port of the name together. */
  readonly clientsCut = new Map<CutReason, number>();
  /** Times each Sentinel's word was refused and it was distrusted, by `host:port`. */
  readonly sentinelsDistrusted = new Map<string, number>();
  /** Runs of the name's `onMasterChange` hook, and those that failed or timed out. */
  hookRuns = 0;
  hookFailures = 0;
}
