import assert from "node:assert/strict";
import {
  parseSentinelEvent,
  parseStrictPort,
  SENTINEL_CHANNELS,
} from "../src/control/sentinel_events.ts";

Deno.test("parseSentinelEvent() reads +switch-master", () => {
  assert.deepEqual(
    parseSentinelEvent("+switch-master", "mymaster 127.0.0.1 6379 10.0.0.2 6380"),
    {
      ok: true,
      event: {
        kind: "switch-master",
        master: "mymaster",
        from: { hostname: "127.0.0.1", port: 6379 },
        to: { hostname: "10.0.0.2", port: 6380 },
      },
    },
  );
  const ipv6 = parseSentinelEvent("+switch-master", "m ::1 6379 redis-2.example.com 6379");
  assert.ok(ipv6.ok && ipv6.event.kind === "switch-master");
  assert.equal(ipv6.event.to.hostname, "redis-2.example.com");
});

Deno.test("parseSentinelEvent() refuses every malformed +switch-master field", () => {
  const malformed = [
    "mymaster 127.0.0.1 6379  6380", // empty host: two spaces
    "mymaster 127.0.0.1 6379 127.0.0.1 -1",
    "mymaster 127.0.0.1 6379 127.0.0.1 0",
    "mymaster 127.0.0.1 6379 127.0.0.1 70000",
    "mymaster 127.0.0.1 6379 127.0.0.1 3e4",
    "mymaster 127.0.0.1 6379 127.0.0.1 6379x",
    "mymaster 127.0.0.1 6379 127.0.0.1 0x1F90",
    "mymaster 127.0.0.1 6379 127.0.0.1 +6380",
    "mymaster 127.0.0.1 6379 127.0.0.1",
    "mymaster 127.0.0.1 6379 127.0.0.1 6380 extra",
    "mymaster 127.0.0.1 6379 bad_host! 6380",
    "mymaster 127.0.0.1 x 127.0.0.1 6380",
    " 127.0.0.1 6379 127.0.0.1 6380",
    "",
    "m".repeat(2000),
  ];
  for (const payload of malformed) {
    const parsed = parseSentinelEvent("+switch-master", payload);
    assert.equal(parsed.ok, false, `accepted ${JSON.stringify(payload)}`);
  }
});

Deno.test("parseStrictPort() takes digits from 1 to 65535 only", () => {
  assert.equal(parseStrictPort("6379"), 6379);
  assert.equal(parseStrictPort("65535"), 65535);
  for (const text of ["0", "65536", "-1", "3e4", "", " 1", "1.0", "00000001", undefined]) {
    assert.equal(parseStrictPort(text), undefined, String(text));
  }
});

Deno.test("parseSentinelEvent() reads promotion and failover-end events for their master", () => {
  const selected = parseSentinelEvent(
    "+selected-slave",
    "slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6379",
  );
  assert.deepEqual(selected, {
    ok: true,
    event: {
      kind: "promotion",
      channel: "+selected-slave",
      master: "mymaster",
      masterAddress: { hostname: "127.0.0.1", port: 6379 },
      replica: { hostname: "127.0.0.1", port: 6381 },
    },
  });
  const abort = parseSentinelEvent(
    "-failover-abort-slave-timeout",
    "master mymaster 127.0.0.1 6379",
  );
  assert.ok(abort.ok && abort.event.kind === "failover-end");
  const added = parseSentinelEvent(
    "+sentinel",
    "sentinel 0123456789abcdef 127.0.0.1 26380 @ mymaster 127.0.0.1 6379",
  );
  assert.deepEqual(added, { ok: true, event: { kind: "sentinel-added", master: "mymaster" } });
  for (
    const [channel, payload] of [
      ["+selected-slave", "slave 127.0.0.1:6381 127.0.0.1 6381 mymaster 127.0.0.1 6379"],
      ["+selected-slave", "slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 99999"],
      ["+promoted-slave", "replica x 127.0.0.1 6381 @ mymaster 127.0.0.1 6379"],
      ["-failover-abort-slave-timeout", "master mymaster 127.0.0.1"],
      ["+unknown-channel", "master mymaster 127.0.0.1 6379"],
    ]
  ) {
    assert.equal(parseSentinelEvent(channel!, payload!).ok, false, `${channel} ${payload}`);
  }
});

Deno.test("SENTINEL_CHANNELS lists each channel once, with the switch and the promotion", () => {
  assert.equal(new Set(SENTINEL_CHANNELS).size, SENTINEL_CHANNELS.length);
  for (const channel of ["+switch-master", "+selected-slave", "+promoted-slave", "+sentinel"]) {
    assert.ok(SENTINEL_CHANNELS.includes(channel), channel);
  }
});

Deno.test("parseSentinelEvent() reads a replica's +sdown, -sdown, +slave and +convert-to-slave", () => {
  const details = "slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6379";
  for (
    const [channel, change] of [
      ["+sdown", "down"],
      ["-sdown", "up"],
      ["+slave", "added"],
      ["+convert-to-slave", "converted"],
    ] as const
  ) {
    assert.deepEqual(parseSentinelEvent(channel, details), {
      ok: true,
      event: {
        kind: "instance",
        change,
        instanceType: "slave",
        instance: { hostname: "127.0.0.1", port: 6381 },
        master: "mymaster",
      },
    }, channel);
  }
  // A master's +sdown names the master: no replica is taken for it.
  const master = parseSentinelEvent("+sdown", "master mymaster 127.0.0.1 6379");
  assert.ok(
    master.ok && master.event.kind === "instance" && master.event.instanceType === "master",
  );
  assert.equal(
    parseSentinelEvent("+sdown", "slave 127.0.0.1:x 127.0.0.1 x @ m 127.0.0.1 6379").ok,
    false,
  );
});
