import assert from "node:assert/strict";
import {
  formatAddress,
  isValidHost,
  parseAddress,
  parsePort,
  sameAddress,
} from "../src/shared/address.ts";

const PORT_RULE = "a port is a whole number from 1 to 65535";

Deno.test("parseAddress() parses an IPv4 address and port", () => {
  assert.deepEqual(parseAddress("127.0.0.1:26379"), {
    hostname: "127.0.0.1",
    port: 26379,
  });
  assert.deepEqual(parseAddress("10.0.0.254:1"), {
    hostname: "10.0.0.254",
    port: 1,
  });
});

Deno.test("parseAddress() parses host names", () => {
  assert.deepEqual(parseAddress("localhost:6379"), {
    hostname: "localhost",
    port: 6379,
  });
  assert.deepEqual(parseAddress("redis-1.Example.com:65535"), {
    hostname: "redis-1.Example.com",
    port: 65535,
  });
  assert.deepEqual(parseAddress("a:80"), { hostname: "a", port: 80 });
});

Deno.test("parseAddress() parses a bracketed IPv6 address and keeps it without brackets", () => {
  assert.deepEqual(parseAddress("[::1]:26379"), {
    hostname: "::1",
    port: 26379,
  });
  assert.deepEqual(parseAddress("[2001:db8::7]:6380"), {
    hostname: "2001:db8::7",
    port: 6380,
  });
});

Deno.test("parseAddress() parses an IPv6 address with a zone", () => {
  assert.deepEqual(parseAddress("[fe80::1%eth0]:1"), {
    hostname: "fe80::1%eth0",
    port: 1,
  });
});

Deno.test("parseAddress() throws TypeError quoting the input when there is no port", () => {
  assert.throws(() => parseAddress("localhost"), {
    name: "TypeError",
    message:
      'Invalid address "localhost": expected "host:port", such as "127.0.0.1:26379" or "[::1]:26379"',
  });
  assert.throws(() => parseAddress(""), {
    name: "TypeError",
    message: /^Invalid address "": expected "host:port"/,
  });
});

Deno.test("parseAddress() throws RangeError quoting the port when it is out of range or not a number", () => {
  for (const port of ["0", "70000", "abc", "", "-1", "80.5", " 80"]) {
    assert.throws(
      () => parseAddress(`127.0.0.1:${port}`),
      (error) =>
        error instanceof RangeError &&
        error.message ===
          `Invalid port ${JSON.stringify(port)}: ${PORT_RULE}`,
      `port ${JSON.stringify(port)}`,
    );
  }
});

Deno.test("parseAddress() throws TypeError for an IPv6 address without brackets", () => {
  for (const text of ["::1:26379", "fe80::1:6379", "::1"]) {
    assert.throws(
      () => parseAddress(text),
      (error) =>
        error instanceof TypeError &&
        error.message ===
          `Invalid address ${
            JSON.stringify(text)
          }: write an IPv6 address in brackets, such as "[::1]:26379"`,
      text,
    );
  }
});

Deno.test("parseAddress() throws TypeError for an empty or malformed host", () => {
  const cases: [string, string][] = [
    [":26379", ""],
    ["[]:1", "[]"],
    ["bad_host:1", "bad_host"],
    ["-leading.dash:1", "-leading.dash"],
    ["double..dot:1", "double..dot"],
    ["[::g]:1", "::g"],
  ];
  for (const [text, host] of cases) {
    assert.throws(
      () => parseAddress(text),
      (error) =>
        error instanceof TypeError &&
        error.message ===
          `Invalid address ${JSON.stringify(text)}: ${
            JSON.stringify(host)
          } is not a host name or IP address`,
      text,
    );
  }
});

Deno.test("formatAddress() brackets IPv6 hosts only", () => {
  assert.equal(
    formatAddress({ hostname: "127.0.0.1", port: 6379 }),
    "127.0.0.1:6379",
  );
  assert.equal(
    formatAddress({ hostname: "localhost", port: 1 }),
    "localhost:1",
  );
  assert.equal(formatAddress({ hostname: "::1", port: 26379 }), "[::1]:26379");
  assert.equal(
    formatAddress({ hostname: "fe80::1%eth0", port: 1 }),
    "[fe80::1%eth0]:1",
  );
});

Deno.test("formatAddress() round-trips with parseAddress()", () => {
  for (
    const text of [
      "127.0.0.1:26379",
      "localhost:6379",
      "Redis-1.example.com:65535",
      "[::1]:26379",
      "[2001:db8::7]:6380",
      "[fe80::1%eth0]:1",
    ]
  ) {
    const address = parseAddress(text);
    assert.equal(formatAddress(address), text);
    assert.deepEqual(parseAddress(formatAddress(address)), address);
  }
});

Deno.test("sameAddress() ignores the case of the host name", () => {
  assert.equal(
    sameAddress(parseAddress("LocalHost:6379"), parseAddress("localhost:6379")),
    true,
  );
  assert.equal(
    sameAddress(parseAddress("[FE80::A]:1"), parseAddress("[fe80::a]:1")),
    true,
  );
});

Deno.test("sameAddress() compares ports and hosts as written", () => {
  assert.equal(
    sameAddress(parseAddress("localhost:6379"), parseAddress("localhost:6380")),
    false,
  );
  assert.equal(
    sameAddress(parseAddress("10.0.0.1:6379"), parseAddress("10.0.0.2:6379")),
    false,
  );
  // Not resolved: two spellings of one IPv6 address are different addresses.
  assert.equal(
    sameAddress(parseAddress("[::1]:1"), parseAddress("[0:0:0:0:0:0:0:1]:1")),
    false,
  );
});

Deno.test("parsePort() accepts whole numbers from 1 to 65535 as numbers or digits", () => {
  assert.equal(parsePort(1), 1);
  assert.equal(parsePort(65535), 65535);
  assert.equal(parsePort("6379"), 6379);
  assert.equal(parsePort("0080"), 80);
});

Deno.test("parsePort() throws RangeError quoting the value otherwise", () => {
  for (
    const value of [
      0,
      65536,
      -1,
      1.5,
      "0",
      "65536",
      "",
      " 80",
      "+80",
      "-80",
      "8e3",
      "0x50",
      "abc",
    ]
  ) {
    assert.throws(
      () => parsePort(value),
      (error) =>
        error instanceof RangeError &&
        error.message ===
          `Invalid port ${JSON.stringify(value)}: ${PORT_RULE}`,
      String(value),
    );
  }
  assert.throws(() => parsePort(NaN), RangeError);
  assert.throws(() => parsePort(Infinity), RangeError);
});

Deno.test("isValidHost() accepts host names and IP addresses without a port", () => {
  for (const host of ["localhost", "127.0.0.1", "a-b.c", "::1", "fe80::1%eth0"]) {
    assert.equal(isValidHost(host), true, host);
  }
  for (const host of ["", "a_b", "-a", "a-", "a..b", "::g", "host name"]) {
    assert.equal(isValidHost(host), false, host);
  }
});
