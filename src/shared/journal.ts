/**
 * What happened recently, for the operator: master changes (with how long
 * clients had no master), failovers, cut-offs (how many clients, on which
 * ports, why), the write fence closing and opening, Sentinels distrusted,
 * replicas taken out or back, reloads. A bounded in-memory history: the
 * newest {@linkcode JOURNAL_CAPACITY} events, lost at a restart (the log
 * keeps them all). The status page reads it through `/api/events`.
 *
 * @module
 */

/** How many events the journal keeps: about a day of a busy deployment's failovers. */
export const JOURNAL_CAPACITY = 1000;

/** One event, as the status page and `/api/events` show it. */
export type JournalEvent =
  /** A master was confirmed, the first or another one. */
  | {
    readonly kind: "master-confirmed";
    readonly name: string;
    /** The master confirmed before, if any (`host:port`). */
    readonly from: string | undefined;
    readonly to: string;
    readonly via: string;
    /** How long the name had no confirmed master before this one, in ms; absent at the first. */
    readonly withoutMasterMs: number | undefined;
  }
  /** A failover started holding the name's new clients. */
  | {
    readonly kind: "failover";
    readonly name: string;
    readonly master: string;
    readonly reason: string;
  }
  /** A failover ended without a switch. */
  | {
    readonly kind: "failover-ended";
    readonly name: string;
    readonly master: string;
    readonly why: string;
  }
  /** Clients were cut off. */
  | {
    readonly kind: "cut";
    readonly name: string;
    /** The node their tunnels went to, or `other nodes` for a cut of every node but one. */
    readonly node: string;
    readonly reason: CutReason;
    readonly detail: string;
    readonly clients: number;
    /** Clients per port label, such as `{ "port 6380": 2 }`. */
    readonly ports: Readonly<Record<string, number>>;
  }
  /** The write fence closed, or opened again. */
  | {
    readonly kind: "fence";
    readonly name: string;
    readonly state: "closed" | "open";
    readonly master: string | undefined;
  }
  /** A Sentinel's word was refused: its events only trigger checks for a while. */
  | {
    readonly kind: "sentinel-distrusted";
    readonly name: string;
    readonly sentinel: string;
    readonly why: string;
  }
  /** A replica became usable on some read ports, or stopped being usable. */
  | {
    readonly kind: "replica";
    readonly name: string;
    readonly replica: string;
    readonly usable: boolean;
    readonly reason: string | undefined;
  }
  /** The config was reloaded, or a reload was refused. */
  | { readonly kind: "reload"; readonly outcome: "applied" | "refused"; readonly detail: string };

/** Why clients were cut off; the metric `clients_cut_total` counts by it. */
export type CutReason =
  /** A `+switch-master`, or a trusted view, names another node. */
  | "switch"
  /** A failover started promoting a replica. */
  | "failover"
  /** The node says it is not master. */
  | "not-master"
  /** The write fence closed. */
  | "fence"
  /** Every connect to the master timed out for long enough. */
  | "silent"
  /** A new master was confirmed: tunnels to any other node. */
  | "new-master"
  /** A replica of a read port is out of use. */
  | "replica"
  /** A reload changed where the port's clients may go. */
  | "reload";

/** An event with its place in the history. */
export interface JournalEntry {
  /** Rises by one per event, from 1: `/api/events?after=ID` gives the newer ones. */
  readonly id: number;
  /** When it happened (ms since the epoch). */
  readonly at: number;
  readonly event: JournalEvent;
}

/** The bounded history; see the module doc. */
export class EventJournal {
  readonly capacity: number;
  #entries: JournalEntry[] = [];
  #nextId = 1;

  constructor(capacity: number = JOURNAL_CAPACITY) {
    this.capacity = capacity;
  }

  /** Records `event` now; the oldest goes when the history is full. */
  record(event: JournalEvent): JournalEntry {
    const entry = { id: this.#nextId++, at: Date.now(), event };
    this.#entries.push(entry);
    if (this.#entries.length > this.capacity) this.#entries.shift();
    return entry;
  }

  /** The events kept, oldest first; with `after`, only those with a larger id. */
  entries(after = 0): JournalEntry[] {
    if (after <= 0) return [...this.#entries];
    const first = this.#entries.findIndex((e) => e.id > after);
    return first === -1 ? [] : this.#entries.slice(first);
  }

  /** The id of the newest event, 0 before the first. */
  get lastId(): number {
    return this.#nextId - 1;
  }
}
