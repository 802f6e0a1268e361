import assert from "node:assert/strict";
import { type Address, parseAddress } from "../src/shared/address.ts";
import { ConnectionRegistry, type RegisteredTunnel } from "../src/data/connection_registry.ts";

const A = parseAddress("10.0.0.1:6379");
const B = parseAddress("10.0.0.2:6379");
const C = parseAddress("[::1]:6379");

/** A tunnel that counts how often it is closed. */
class FakeTunnel implements RegisteredTunnel {
  readonly master: Address;
  readonly label: string;
  closeCount = 0;
  #onClose: (() => void) | undefined;

  constructor(master: Address, label: string, onClose?: () => void) {
    this.master = master;
    this.label = label;
    this.#onClose = onClose;
  }

  close(): void {
    this.closeCount++;
    this.#onClose?.();
  }
}

/** A registry holding 3 tunnels to A, 2 to B and 1 to C. */
function populated() {
  const registry = new ConnectionRegistry<FakeTunnel>();
  const tunnels = [
    new FakeTunnel(A, "a1"),
    new FakeTunnel(A, "a2"),
    new FakeTunnel(A, "a3"),
    new FakeTunnel(B, "b1"),
    new FakeTunnel(B, "b2"),
    new FakeTunnel(C, "c1"),
  ];
  for (const tunnel of tunnels) registry.add(tunnel);
  return { registry, tunnels };
}

function closedLabels(tunnels: readonly FakeTunnel[]): string[] {
  return tunnels.filter((t) => t.closeCount > 0).map((t) => t.label);
}

Deno.test("ConnectionRegistry starts empty", () => {
  const registry = new ConnectionRegistry();
  assert.equal(registry.size, 0);
  assert.deepEqual(registry.countsByMaster(), new Map());
  assert.equal(registry.closeAll(), 0);
});

Deno.test("ConnectionRegistry.add() counts each tunnel once", () => {
  const registry = new ConnectionRegistry<FakeTunnel>();
  const t1 = new FakeTunnel(A, "t1");
  const t2 = new FakeTunnel(A, "t2");
  registry.add(t1);
  registry.add(t2);
  registry.add(t1);
  assert.equal(registry.size, 2);
  assert.deepEqual(registry.countsByMaster(), new Map([["10.0.0.1:6379", 2]]));
});

Deno.test("ConnectionRegistry.delete() removes a tunnel and ignores unknown ones", () => {
  const { registry, tunnels } = populated();
  registry.delete(tunnels[0]!);
  registry.delete(tunnels[0]!);
  registry.delete(new FakeTunnel(A, "stranger"));
  registry.delete(new FakeTunnel(parseAddress("10.9.9.9:1"), "stranger"));
  assert.equal(registry.size, 5);
  assert.deepEqual(
    registry.countsByMaster(),
    new Map([["10.0.0.1:6379", 2], ["10.0.0.2:6379", 2], ["[::1]:6379", 1]]),
  );
  assert.deepEqual(closedLabels(tunnels), []);
});

Deno.test("ConnectionRegistry.countsByMaster() drops a master once its last tunnel is deleted", () => {
  const { registry, tunnels } = populated();
  registry.delete(tunnels[5]!);
  assert.deepEqual(
    registry.countsByMaster(),
    new Map([["10.0.0.1:6379", 3], ["10.0.0.2:6379", 2]]),
  );
  assert.equal(registry.size, 5);
});

Deno.test("ConnectionRegistry.countsByMaster() returns a copy", () => {
  const { registry } = populated();
  const counts = registry.countsByMaster();
  counts.set("10.0.0.1:6379", 99);
  counts.delete("10.0.0.2:6379");
  assert.equal(registry.countsByMaster().get("10.0.0.1:6379"), 3);
  assert.equal(registry.countsByMaster().get("10.0.0.2:6379"), 2);
});

Deno.test("ConnectionRegistry.closeTo() closes exactly the tunnels to that master, once", () => {
  const { registry, tunnels } = populated();
  assert.equal(registry.closeTo(parseAddress("10.0.0.1:6379")), 3);
  assert.deepEqual(closedLabels(tunnels), ["a1", "a2", "a3"]);
  assert.equal(registry.size, 3);
  assert.deepEqual(
    registry.countsByMaster(),
    new Map([["10.0.0.2:6379", 2], ["[::1]:6379", 1]]),
  );

  assert.equal(registry.closeTo(A), 0);
  assert.deepEqual(tunnels.map((t) => t.closeCount), [1, 1, 1, 0, 0, 0]);
});

Deno.test("ConnectionRegistry.closeTo() matches an IPv6 master", () => {
  const { registry, tunnels } = populated();
  assert.equal(registry.closeTo(parseAddress("[::1]:6379")), 1);
  assert.deepEqual(closedLabels(tunnels), ["c1"]);
});

Deno.test("ConnectionRegistry.closeTo() closes nothing for an unknown master", () => {
  const { registry, tunnels } = populated();
  assert.equal(registry.closeTo(parseAddress("10.0.0.1:6380")), 0);
  assert.equal(registry.size, 6);
  assert.deepEqual(closedLabels(tunnels), []);
});

Deno.test("ConnectionRegistry.closeAllExcept() closes every tunnel to other masters, once", () => {
  const { registry, tunnels } = populated();
  assert.equal(registry.closeAllExcept(B), 4);
  assert.deepEqual(closedLabels(tunnels), ["a1", "a2", "a3", "c1"]);
  assert.equal(registry.size, 2);
  assert.deepEqual(registry.countsByMaster(), new Map([["10.0.0.2:6379", 2]]));

  assert.equal(registry.closeAllExcept(B), 0);
  assert.deepEqual(tunnels.map((t) => t.closeCount), [1, 1, 1, 0, 0, 1]);
});

Deno.test("ConnectionRegistry.closeAllExcept() closes everything for a master with no tunnels", () => {
  const { registry, tunnels } = populated();
  assert.equal(registry.closeAllExcept(parseAddress("10.0.0.9:6379")), 6);
  assert.equal(registry.size, 0);
  assert.deepEqual(tunnels.map((t) => t.closeCount), [1, 1, 1, 1, 1, 1]);
});

Deno.test("ConnectionRegistry.closeAll() closes every tunnel exactly once", () => {
  const { registry, tunnels } = populated();
  assert.equal(registry.closeAll(), 6);
  assert.equal(registry.size, 0);
  assert.deepEqual(registry.countsByMaster(), new Map());
  assert.equal(registry.closeAll(), 0);
  assert.deepEqual(tunnels.map((t) => t.closeCount), [1, 1, 1, 1, 1, 1]);
});

Deno.test("ConnectionRegistry.delete() after close is harmless", () => {
  const { registry, tunnels } = populated();
  registry.closeTo(A);
  for (const tunnel of tunnels.slice(0, 3)) registry.delete(tunnel);
  assert.equal(registry.size, 3);
  assert.deepEqual(
    registry.countsByMaster(),
    new Map([["10.0.0.2:6379", 2], ["[::1]:6379", 1]]),
  );
  assert.deepEqual(tunnels.map((t) => t.closeCount), [1, 1, 1, 0, 0, 0]);
});

Deno.test("ConnectionRegistry.delete() of an old tunnel leaves a new tunnel to the same master", () => {
  const registry = new ConnectionRegistry<FakeTunnel>();
  const old = new FakeTunnel(A, "old");
  registry.add(old);
  registry.closeTo(A);
  const fresh = new FakeTunnel(A, "fresh");
  registry.add(fresh);
  // The old tunnel's own cleanup runs late, after the new one was added.
  registry.delete(old);
  assert.equal(registry.size, 1);
  assert.deepEqual(registry.countsByMaster(), new Map([["10.0.0.1:6379", 1]]));
  assert.equal(registry.closeAll(), 1);
  assert.equal(fresh.closeCount, 1);
  assert.equal(old.closeCount, 1);
});

Deno.test("ConnectionRegistry.closeAll() tolerates tunnels that delete themselves on close", () => {
  const registry = new ConnectionRegistry<FakeTunnel>();
  const tunnels: FakeTunnel[] = [];
  for (const [master, label] of [[A, "a1"], [A, "a2"], [B, "b1"]] as const) {
    const tunnel: FakeTunnel = new FakeTunnel(
      master,
      label,
      () => registry.delete(tunnel),
    );
    tunnels.push(tunnel);
    registry.add(tunnel);
  }
  assert.equal(registry.closeAll(), 3);
  assert.equal(registry.size, 0);
  assert.deepEqual(registry.countsByMaster(), new Map());
  assert.deepEqual(tunnels.map((t) => t.closeCount), [1, 1, 1]);
});
