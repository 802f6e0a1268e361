/**
 * The ROLE reply parsers, on replies shaped as Redis sends them and on
 * malformed ones: a reply that is not exactly that shape gives `undefined`,
 * which the watchers treat as "cannot confirm".
 */
import assert from "node:assert/strict";
import { parseMasterRole, parseReplicaRole, RoleProbe } from "../src/control/role_probe.ts";
import { formatAddress } from "../src/shared/address.ts";
import { startFakeRedis } from "./_fake_redis.ts";

Deno.test("parseMasterRole() reads a master's offset and every attached replica", () => {
  // As redis-cli shows it: the master's offset is an integer, each replica's fields are bulk strings.
  const reply = [
    "master",
    3129659,
    [["10.0.0.2", "6379", "3129242"], ["10.0.0.3", "6380", "3129543"]],
  ];
  assert.deepEqual(parseMasterRole(reply), {
    offset: 3129659,
    replicas: [
      { address: { hostname: "10.0.0.2", port: 6379 }, offset: 3129242 },
      { address: { hostname: "10.0.0.3", port: 6380 }, offset: 3129543 },
    ],
  });
});

Deno.test("parseMasterRole() reads a master with no replica, IPv6 and announced host names", () => {
  assert.deepEqual(parseMasterRole(["master", 0, []]), { offset: 0, replicas: [] });
  assert.deepEqual(
    parseMasterRole(["master", 42, [["::1", "6379", "40"], ["redis-2.example", "6379", "0"]]]),
    {
      offset: 42,
      replicas: [
        { address: { hostname: "::1", port: 6379 }, offset: 40 },
        { address: { hostname: "redis-2.example", port: 6379 }, offset: 0 },
      ],
    },
  );
});

Deno.test("parseMasterRole() refuses a malformed reply as a whole", () => {
  const good = ["10.0.0.2", "6379", "100"];
  const malformed: [string, unknown[]][] = [
    ["no offset", ["master"]],
    ["no replica list", ["master", 100]],
    ["the offset as a string", ["master", "100", [good]]],
    ["a fractional offset", ["master", 1.5, [good]]],
    ["an offset below -1", ["master", -2, [good]]],
    ["an unsafe offset", ["master", 2 ** 53, [good]]],
    ["the list not a list", ["master", 100, "10.0.0.2,6379,100"]],
    ["an entry not a list", ["master", 100, [good, "10.0.0.3:6379"]]],
    ["an entry without its offset", ["master", 100, [["10.0.0.2", "6379"]]]],
    ["a port as an integer", ["master", 100, [["10.0.0.2", 6379, "100"]]]],
    ["port 0", ["master", 100, [["10.0.0.2", "0", "100"]]]],
    ["port 65536", ["master", 100, [["10.0.0.2", "65536", "100"]]]],
    ["port 6379x", ["master", 100, [["10.0.0.2", "6379x", "100"]]]],
    ["a host with a space", ["master", 100, [["10.0.0.2 x", "6379", "100"]]]],
    ["an empty host", ["master", 100, [["", "6379", "100"]]]],
    ["a negative acknowledged offset", ["master", 100, [["10.0.0.2", "6379", "-1"]]]],
    ["an acknowledged offset with a sign", ["master", 100, [["10.0.0.2", "6379", "+1"]]]],
    ["an acknowledged offset as an integer", ["master", 100, [["10.0.0.2", "6379", 100]]]],
  ];
  for (const [what, reply] of malformed) {
    assert.equal(parseMasterRole(reply), undefined, what);
  }
});

Deno.test("parseReplicaRole() reads the master a replica follows, its link state and offset", () => {
  // As redis-cli shows it: the port and the offset are integers.
  assert.deepEqual(parseReplicaRole(["slave", "10.0.0.1", 6379, "connected", 3167038]), {
    master: { hostname: "10.0.0.1", port: 6379 },
    state: "connected",
    offset: 3167038,
  });
  // Before its first sync a replica reports offset -1.
  assert.deepEqual(parseReplicaRole(["slave", "redis-1.example", 6380, "connect", -1]), {
    master: { hostname: "redis-1.example", port: 6380 },
    state: "connect",
    offset: -1,
  });
  assert.deepEqual(parseReplicaRole(["slave", "::1", 6379, "sync", 0])?.master, {
    hostname: "::1",
    port: 6379,
  });
});

Deno.test("parseReplicaRole() refuses a malformed reply", () => {
  const malformed: [string, unknown[]][] = [
    ["nothing after the role", ["slave"]],
    ["no offset", ["slave", "10.0.0.1", 6379, "connected"]],
    ["the port as a string", ["slave", "10.0.0.1", "6379", "connected", 100]],
    ["port 0", ["slave", "10.0.0.1", 0, "connected", 100]],
    ["port 65536", ["slave", "10.0.0.1", 65536, "connected", 100]],
    ["a fractional port", ["slave", "10.0.0.1", 6379.5, "connected", 100]],
    ["a host not a string", ["slave", 10, 6379, "connected", 100]],
    ["a host with a space", ["slave", "10.0.0.1 x", 6379, "connected", 100]],
    ["the state not a string", ["slave", "10.0.0.1", 6379, 1, 100]],
    ["the offset as a string", ["slave", "10.0.0.1", 6379, "connected", "100"]],
    ["an offset below -1", ["slave", "10.0.0.1", 6379, "connected", -2]],
    ["an unsafe offset", ["slave", "10.0.0.1", 6379, "connected", 2 ** 53]],
  ];
  for (const [what, reply] of malformed) {
    assert.equal(parseReplicaRole(reply), undefined, what);
  }
});

Deno.test({
  name:
    "RoleProbe tells at once when a node closes its ROLE connection between checks, and not when the probe closes it",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using node = await startFakeRedis({
      handle: (command) =>
        command[0]?.toUpperCase() === "ROLE"
          ? ["slave", "127.0.0.1", 6379, "connected", 5]
          : undefined,
    });
    const address = { hostname: "127.0.0.1", port: node.port };
    const closed: string[] = [];
    let heard = Promise.withResolvers<void>();
    const probe = new RoleProbe(
      () => ({ connectTimeoutMs: 1000, replyTimeoutMs: 1000 }),
      (peer) => {
        closed.push(formatAddress(peer));
        heard.resolve();
      },
    );
    const nodeCloses = async () => {
      heard = Promise.withResolvers();
      node.clients.at(-1)!.close();
      await heard.promise;
    };
    try {
      const first = await probe.check(address, new AbortController().signal);
      assert.equal(first.kind === "role" && first.role, "slave");
      // The node drops the connection while nobody asks anything: the probe hears of it.
      await nodeCloses();
      assert.deepEqual(closed, [formatAddress(address)]);
      // A new connection for the next check; it carries on as before.
      const second = await probe.check(address, new AbortController().signal);
      assert.equal(second.kind === "role" && second.role, "slave");
      assert.equal(node.connections, 2);
      // Closed by the probe itself: no report. The node's next close is the second report.
      probe.reset();
      await probe.check(address, new AbortController().signal);
      await nodeCloses();
      assert.deepEqual(closed, [formatAddress(address), formatAddress(address)]);
    } finally {
      probe.reset();
    }
  },
});
