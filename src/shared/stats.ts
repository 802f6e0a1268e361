/**
 * What the tunnel counts, per database: the data plane adds to plain number
 * fields (no allocation, no lookup per chunk), the control plane observes
 * resolution latency, and the admin API renders it (`ops/metrics.ts`).
 *
 * @module
 */

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

/** What one database's tunnels and watcher have done. */
export class DatabaseStats {
  connectionsTotal = 0;
  connectionsRejected = 0;
  /** Refused because the database's own `maxClients` was reached. */
  connectionsOverDatabaseLimit = 0;
  /** Refused because the `maxClients` of every database together was reached. */
  connectionsOverTotalLimit = 0;
  /** Tunnels closed after carrying no byte either way for `clientIdleMs`. */
  connectionsIdleClosed = 0;
  /** Connections that reset or aborted before the listener accepted them, and were skipped. */
  connectionsAbortedBeforeAccept = 0;
  /** Clients that took a ready connection (`preconnect`) instead of dialling the master. */
  readyConnectionsUsed = 0;
  /** Ready connections closed unused: cut off, closed by the master, too old, or shed for a client. */
  readyConnectionsDiscarded = 0;
  bytesClientToMaster = 0;
  bytesMasterToClient = 0;
  masterChanges = 0;
  readonly resolutionSeconds = new Histogram(RESOLUTION_BUCKETS);
}
