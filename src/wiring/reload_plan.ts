/**
 * What a reload changes, decided before anything changes: pure functions
 * from the running state and the new config to a plan, at two levels.
 *
 * - Master names ({@linkcode planNames}): a new name gets a control plane, a
 *   name no entry serves any more loses its own, and a name whose settings
 *   changed gives its plane the new ones.
 * - Ports ({@linkcode planPorts}), known by listen address: added entries
 *   start; removed ones stop; an entry with another name or role on the same
 *   address is removed and added; one whose address changed (same name and
 *   role) is replaced; one whose other settings changed is updated in place.
 *
 * @module
 */
import { addressKey, formatAddress } from "../shared/address.ts";
import {
  type MasterSettings,
  masterSettingsOf,
  sameDatabase,
  sameMasterSettings,
} from "../shared/master_settings.ts";
import type { DatabaseConfig, TunnelConfig } from "../shared/settings.ts";

/** What happens to the master names' control planes. */
export interface NamePlan {
  /** Names that get a control plane, with their settings. */
  readonly added: MasterSettings[];
  /** Names whose control plane takes new settings. */
  readonly updated: MasterSettings[];
  /** Names whose control plane stops. */
  readonly removed: string[];
}

/** What happens to the ports, and how a summary names it. */
export interface PortPlan {
  /** Entries to start: new, moved, or another name or role on their address. */
  readonly starting: DatabaseConfig[];
  /** Running entries (by key) that stop: removed, moved, or given another name or role. */
  readonly leaving: string[];
  /** Kept entries whose settings changed, taken in place. */
  readonly updating: DatabaseConfig[];
  /** The summary of a reload, by entry label. */
  readonly added: string[];
  readonly removed: string[];
  readonly replaced: string[];
  readonly updated: string[];
  readonly unchanged: string[];
}

/** Each master name's settings, from its first entry (every entry of a name agrees on them), in config order. */
export function mastersOf(config: TunnelConfig): Map<string, MasterSettings> {
  const masters = new Map<string, MasterSettings>();
  for (const database of config.databases) {
    if (!masters.has(database.name)) masters.set(database.name, masterSettingsOf(database));
  }
  return masters;
}

/** The plan for the names, from the settings each running plane has. */
export function planNames(
  running: ReadonlyMap<string, MasterSettings>,
  next: TunnelConfig,
): NamePlan {
  const plan: NamePlan = { added: [], updated: [], removed: [] };
  const masters = mastersOf(next);
  for (const [name, settings] of masters) {
    const current = running.get(name);
    if (!current) plan.added.push(settings);
    else if (!sameMasterSettings(current, settings)) plan.updated.push(settings);
  }
  for (const name of running.keys()) if (!masters.has(name)) plan.removed.push(name);
  return plan;
}

/**
 * The plan for the ports, from the settings of each running entry (by
 * {@linkcode entryKey}) and the config they were labelled with.
 */
export function planPorts(
  running: ReadonlyMap<string, DatabaseConfig>,
  previous: TunnelConfig,
  next: TunnelConfig,
): PortPlan {
  const plan: PortPlan = {
    starting: [],
    leaving: [],
    updating: [],
    added: [],
    removed: [],
    replaced: [],
    updated: [],
    unchanged: [],
  };
  const label = (database: DatabaseConfig) => entryLabel(database, next.databases);
  const oldLabel = (database: DatabaseConfig) => entryLabel(database, previous.databases);
  const kept = new Set<string>();
  const newEntries: DatabaseConfig[] = [];
  for (const database of next.databases) {
    const key = entryKey(database);
    const current = running.get(key);
    if (!current) {
      newEntries.push(database);
      continue;
    }
    kept.add(key);
    if (current.name !== database.name || current.role !== database.role) {
      // Another name or role on the same address: the old entry goes, a new one comes.
      plan.leaving.push(key);
      plan.removed.push(oldLabel(current));
      plan.added.push(label(database));
      plan.starting.push(database);
    } else if (!sameDatabase(current, database)) {
      plan.updating.push(database);
      plan.updated.push(label(database));
    } else {
      plan.unchanged.push(label(database));
    }
  }
  const gone = [...running].filter(([key]) => !kept.has(key));
  for (const database of newEntries) {
    // The same name and role on another address: the entry moved.
    const i = gone.findIndex(([, d]) => d.name === database.name && d.role === database.role);
    if (i === -1) {
      plan.added.push(label(database));
    } else {
      plan.replaced.push(label(database));
      plan.leaving.push(gone.splice(i, 1)[0]![0]);
    }
    plan.starting.push(database);
  }
  for (const [key, database] of gone) {
    plan.removed.push(oldLabel(database));
    plan.leaving.push(key);
  }
  return plan;
}

/** An entry's key: its listen address, which no two entries share. */
export function entryKey(database: DatabaseConfig): string {
  return addressKey({ hostname: database.bind, port: database.port });
}

/** An entry as logs and reload summaries name it: its name, `(replicas)`, and its port when the rest is shared. */
export function entryLabel(database: DatabaseConfig, all: readonly DatabaseConfig[]): string {
  const base = (d: DatabaseConfig) => d.role === "replica" ? `${d.name} (replicas)` : d.name;
  const label = base(database);
  return all.filter((d) => base(d) === label).length > 1
    ? `${label} on ${formatAddress({ hostname: database.bind, port: database.port })}`
    : label;
}
