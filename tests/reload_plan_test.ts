/**
 * The reload plan (`wiring/reload_plan.ts`): what a reload changes, at the
 * level of master names (control planes) and of ports (listeners), decided
 * before anything changes.
 */
import assert from "node:assert/strict";
import { masterSettingsOf } from "../src/shared/master_settings.ts";
import {
  type DatabaseConfig,
  DEFAULT_MAX_LAG_BYTES,
  DEFAULT_TIMEOUTS,
  type TunnelConfig,
} from "../src/shared/settings.ts";
import { entryKey, mastersOf, planNames, planPorts } from "../src/wiring/reload_plan.ts";

function entry(name: string, port: number, extra: Partial<DatabaseConfig> = {}): DatabaseConfig {
  return {
    name,
    bind: "127.0.0.1",
    port,
    role: "master",
    maxLagBytes: DEFAULT_MAX_LAG_BYTES,
    whenNoReplica: "reject",
    timeouts: DEFAULT_TIMEOUTS,
    maxClients: 100,
    preconnect: 0,
    tcpKeepAlive: true,
    ...extra,
  };
}

function config(...databases: DatabaseConfig[]): TunnelConfig {
  return {
    format: "documented",
    sentinels: [{ hostname: "127.0.0.1", port: 26379 }],
    timeouts: DEFAULT_TIMEOUTS,
    databases,
    maxSentinels: 16,
    maxClients: 10_000,
  };
}

function running(current: TunnelConfig): Map<string, DatabaseConfig> {
  return new Map(current.databases.map((d) => [entryKey(d), d]));
}

Deno.test("planNames() starts a plane for a new name, stops the plane of a name no entry serves, and updates one whose settings changed", () => {
  const before = config(entry("a", 6380), entry("a", 6381, { role: "replica" }), entry("b", 6382));
  const next = config(
    entry("a", 6380, { fence: { afterMs: 5000 } }),
    entry("a", 6381, { role: "replica", fence: { afterMs: 5000 } }),
    entry("c", 6383),
  );
  const plan = planNames(mastersOf(before), next);
  assert.deepEqual(plan.added.map((s) => s.name), ["c"]);
  assert.deepEqual(plan.updated, [masterSettingsOf(next.databases[0]!)]);
  assert.deepEqual(plan.removed, ["b"]);
  // A change of a port's own settings is no change of the name's.
  const portOnly = config(
    entry("a", 6380, { maxClients: 5 }),
    entry("a", 6381, { role: "replica" }),
  );
  assert.deepEqual(planNames(mastersOf(before), portOnly).updated, []);
});

Deno.test("planPorts() adds, removes, replaces, updates and keeps entries by listen address", () => {
  const before = config(
    entry("kept", 6380),
    entry("gone", 6381),
    entry("moving", 6382),
    entry("tuned", 6383),
    entry("renamed", 6384),
  );
  const next = config(
    entry("kept", 6380),
    entry("moving", 6392),
    entry("tuned", 6383, { maxClients: 5 }),
    entry("other", 6384),
    entry("new", 6385),
  );
  const plan = planPorts(running(before), before, next);
  assert.deepEqual(plan.unchanged, ["kept"]);
  assert.deepEqual(plan.updated, ["tuned"]);
  assert.deepEqual(plan.updating.map((d) => d.maxClients), [5]);
  assert.deepEqual(plan.replaced, ["moving"]);
  // Another name on the same address: removed and added, the port is let go and opened again.
  assert.deepEqual(plan.added.sort(), ["new", "other"]);
  assert.deepEqual(plan.removed.sort(), ["gone", "renamed"]);
  assert.deepEqual(plan.starting.map((d) => d.port).sort(), [6384, 6385, 6392]);
  assert.deepEqual(
    plan.leaving.sort(),
    ["127.0.0.1:6381", "127.0.0.1:6382", "127.0.0.1:6384"],
  );
});

Deno.test("planPorts() labels entries of one name by role, and by address when that is not enough", () => {
  const before = config(entry("a", 6380), entry("a", 6381, { role: "replica" }));
  const next = config(
    entry("a", 6380, { maxClients: 5 }),
    entry("a", 6381, { role: "replica", maxLagBytes: 10 }),
    entry("a", 6382),
  );
  const plan = planPorts(running(before), before, next);
  assert.deepEqual(plan.updated, ["a on 127.0.0.1:6380", "a (replicas)"]);
  assert.deepEqual(plan.added, ["a on 127.0.0.1:6382"]);
});
