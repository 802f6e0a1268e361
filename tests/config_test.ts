import assert from "node:assert/strict";
import {
  ConfigError,
  configFromEnvironment,
  ConfigReloadQueue,
  configWarnings,
  loadConfig,
  MAX_CONFIG_BYTES,
  MAX_CONFIG_DEPTH,
  MAX_REPORTED_PROBLEMS,
  parseConfig,
  redactConfig,
} from "../src/config/mod.ts";
import {
  DEFAULT_BIND,
  DEFAULT_MAX_LAG_BYTES,
  DEFAULT_TIMEOUTS,
  type TlsClientSettings,
  type TunnelConfig,
} from "../src/shared/settings.ts";

const SOURCE = "test.jsonc";

function noEnv(_name: string): string | undefined {
  return undefined;
}

function parse(
  text: string,
  env: Record<string, string> = {},
): TunnelConfig {
  return parseConfig(text, SOURCE, { getEnv: (name) => env[name] });
}

/** The ConfigError that parsing `text` throws. */
function configError(
  text: string,
  env: Record<string, string> = {},
): ConfigError {
  try {
    parse(text, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `not a ConfigError: ${error}`);
    assert.equal(error.name, "ConfigError");
    return error;
  }
  assert.fail("parseConfig() did not throw");
}

/** A documented config with one database, with `extra` merged in at the top level. */
function documented(extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    sentinels: ["127.0.0.1:26379"],
    databases: [{ name: "mymaster", port: 6380 }],
    ...extra,
  });
}

Deno.test("parseConfig() resolves a minimal config with the defaults", () => {
  const config = parseConfig(
    '{ "sentinels": ["127.0.0.1:26379"], "databases": [{ "name": "mymaster", "port": 6380 }] }',
    SOURCE,
    { getEnv: noEnv },
  );
  assert.deepEqual(config, {
    format: "documented",
    sentinels: [{ hostname: "127.0.0.1", port: 26379 }],
    timeouts: DEFAULT_TIMEOUTS,
    databases: [{
      name: "mymaster",
      bind: "127.0.0.1",
      port: 6380,
      role: "master",
      maxLagBytes: 1_048_576,
      whenNoReplica: "reject",
      timeouts: DEFAULT_TIMEOUTS,
      maxClients: 10_000,
      preconnect: 0,
      tcpKeepAlive: true,
    }],
    maxSentinels: 16,
    maxClients: 10_000,
  });
  assert.equal(DEFAULT_BIND, "127.0.0.1");
  assert.equal(DEFAULT_MAX_LAG_BYTES, 1_048_576);
  assert.deepEqual(DEFAULT_TIMEOUTS, {
    sentinelConnectMs: 500,
    sentinelReplyMs: 500,
    masterConnectMs: 1000,
    masterReplyMs: 1000,
    pollIntervalMs: 1000,
    clientWaitMs: 5000,
    clientIdleMs: 0,
  });
});

Deno.test("parseConfig() accepts comments and trailing commas", () => {
  const config = parse(`// sentinel-tunnel
{
  /* Sentinels to ask */
  "sentinels": [
    "10.0.0.1:26379",
    "10.0.0.2:26379", // a trailing comma
  ],
  "databases": [
    { "name": "cache", "port": 6380, },
  ],
}
`);
  assert.deepEqual(config.sentinels, [
    { hostname: "10.0.0.1", port: 26379 },
    { hostname: "10.0.0.2", port: 26379 },
  ]);
  assert.equal(config.databases[0]?.name, "cache");
  assert.equal(config.databases[0]?.port, 6380);
});

Deno.test("parseConfig() resolves the original sentinel_tunnel format", () => {
  const config = parse(
    '{"Sentinels_addresses_list": ["127.0.0.1:26379"], "Databases": [{"Name": "db1", "Local_port": "12345"}]}',
  );
  assert.deepEqual(config, {
    format: "original",
    sentinels: [{ hostname: "127.0.0.1", port: 26379 }],
    timeouts: DEFAULT_TIMEOUTS,
    databases: [{
      name: "db1",
      bind: "127.0.0.1",
      port: 12345,
      role: "master",
      maxLagBytes: 1_048_576,
      whenNoReplica: "reject",
      timeouts: DEFAULT_TIMEOUTS,
      maxClients: 10_000,
      preconnect: 0,
      tcpKeepAlive: true,
    }],
    maxSentinels: 16,
    maxClients: 10_000,
  });
});

Deno.test("parseConfig() accepts a number as Local_port in the original format", () => {
  const config = parse(
    '{"Sentinels_addresses_list": ["127.0.0.1:26379"], "Databases": [{"Name": "db1", "Local_port": 6380}]}',
  );
  assert.equal(config.databases[0]?.port, 6380);
});

Deno.test("parseConfig() applies global settings and per-database overrides", () => {
  const config = parse(JSON.stringify({
    sentinels: ["127.0.0.1:26379"],
    bind: "0.0.0.0",
    masterAuth: { password: "global-pw" },
    timeouts: { sentinelReplyMs: 250, masterConnectMs: 2000 },
    databases: [
      { name: "a", port: 6380 },
      {
        name: "b",
        port: 6381,
        bind: "10.1.2.3",
        masterAuth: { username: "app", password: "b-pw" },
        timeouts: { masterConnectMs: 300, clientWaitMs: 100 },
      },
    ],
  }));
  const timeouts = {
    ...DEFAULT_TIMEOUTS,
    sentinelReplyMs: 250,
    masterConnectMs: 2000,
  };
  assert.deepEqual(config.timeouts, timeouts);
  const [a, b] = config.databases;
  assert.deepEqual(a, {
    name: "a",
    bind: "0.0.0.0",
    port: 6380,
    role: "master",
    maxLagBytes: DEFAULT_MAX_LAG_BYTES,
    whenNoReplica: "reject",
    masterAuth: { password: "global-pw", passwordSource: "config" },
    timeouts,
    maxClients: 10_000,
    preconnect: 0,
    tcpKeepAlive: true,
  });
  assert.deepEqual(b, {
    name: "b",
    bind: "10.1.2.3",
    port: 6381,
    role: "master",
    maxLagBytes: DEFAULT_MAX_LAG_BYTES,
    whenNoReplica: "reject",
    masterAuth: {
      username: "app",
      password: "b-pw",
      passwordSource: "config",
    },
    timeouts: { ...timeouts, masterConnectMs: 300, clientWaitMs: 100 },
    maxClients: 10_000,
    preconnect: 0,
    tcpKeepAlive: true,
  });
});

Deno.test("parseConfig() reads passwordEnv through getEnv", () => {
  const asked: string[] = [];
  const config = parseConfig(
    documented({
      sentinelAuth: { passwordEnv: "SENTINEL_PW" },
      masterAuth: { username: "app", passwordEnv: "MASTER_PW" },
    }),
    SOURCE,
    {
      getEnv(name) {
        asked.push(name);
        return { SENTINEL_PW: "from-env-1", MASTER_PW: "from-env-2" }[name];
      },
    },
  );
  assert.deepEqual(asked.sort(), ["MASTER_PW", "SENTINEL_PW"]);
  assert.deepEqual(config.sentinelAuth, {
    password: "from-env-1",
    passwordSource: "env SENTINEL_PW",
  });
  assert.deepEqual(config.databases[0]?.masterAuth, {
    username: "app",
    password: "from-env-2",
    passwordSource: "env MASTER_PW",
  });
});

Deno.test("parseConfig() names the environment variable that is not set", () => {
  const error = configError(
    documented({ masterAuth: { passwordEnv: "MISSING_PW" } }),
  );
  assert.equal(
    error.message,
    `${SOURCE}: masterAuth.passwordEnv: environment variable "MISSING_PW" is not set: export it before starting, or write the password in "password"`,
  );
  assert.deepEqual(error.problems, [error.message]);
});

Deno.test("parseConfig() says that a passwordEnv variable is empty, not that it is not set", () => {
  const error = configError(
    documented({ sentinelAuth: { passwordEnv: "EMPTY_PW" } }),
    { EMPTY_PW: "" },
  );
  assert.equal(
    error.message,
    `${SOURCE}: sentinelAuth.passwordEnv: environment variable "EMPTY_PW" is set but empty: put the password in it, or remove sentinelAuth if no password is needed`,
  );
});

Deno.test("parseConfig() names the database whose passwordEnv is not set", () => {
  const error = configError(JSON.stringify({
    sentinels: ["127.0.0.1:26379"],
    databases: [
      { name: "a", port: 6380 },
      { name: "b", port: 6381, masterAuth: { passwordEnv: "B_PW" } },
    ],
  }));
  assert.match(
    error.message,
    /^test\.jsonc: databases\[1\]\.masterAuth\.passwordEnv: environment variable "B_PW" is not set/,
  );
});

Deno.test("parseConfig() rejects both password and passwordEnv", () => {
  const error = configError(
    documented({ masterAuth: { password: "x", passwordEnv: "PW" } }),
    { PW: "y" },
  );
  assert.match(
    error.message,
    /^test\.jsonc: masterAuth: .* is not valid: give exactly one of "password" and "passwordEnv"$/,
  );
});

Deno.test("parseConfig() rejects auth without password or passwordEnv", () => {
  const error = configError(documented({ sentinelAuth: { username: "u" } }));
  assert.equal(
    error.message,
    `${SOURCE}: sentinelAuth: <redacted> is not valid: give exactly one of "password" and "passwordEnv"`,
  );
});

Deno.test("parseConfig() accepts IPv6 sentinels and an IPv6 bind", () => {
  const config = parse(JSON.stringify({
    sentinels: ["[::1]:26379", "[fe80::1%eth0]:26380"],
    bind: "::1",
    databases: [{ name: "mymaster", port: 6380 }],
  }));
  assert.deepEqual(config.sentinels, [
    { hostname: "::1", port: 26379 },
    { hostname: "fe80::1%eth0", port: 26380 },
  ]);
  assert.equal(config.databases[0]?.bind, "::1");
});

Deno.test("parseConfig() reports a syntax error with source, line and column", () => {
  // The comma after the sentinel list is missing: "databases" on line 3, column 3.
  const text = '{\n  "sentinels": ["127.0.0.1:26379"]\n  "databases": []\n}';
  const error = configError(text);
  assert.equal(
    error.message,
    "test.jsonc:3:3: syntax error: expected ',' between entries",
  );
});

Deno.test("parseConfig() counts columns from 1 on the first line", () => {
  const error = configError('{ "sentinels": [1, } ]');
  assert.match(error.message, /^test\.jsonc:1:20: syntax error: /);
});

Deno.test("parseConfig() rejects empty text and text that is not an object", () => {
  assert.equal(
    configError("").message,
    "test.jsonc:1:1: syntax error: expected a value",
  );
  assert.match(
    configError("[]").message,
    /^test\.jsonc: the config is a JSON object, such as /,
  );
});

Deno.test("parseConfig() rejects a port out of range with path, value and rule", () => {
  const error = configError(JSON.stringify({
    sentinels: ["127.0.0.1:26379"],
    databases: [{ name: "mymaster", port: 70000 }],
  }));
  assert.equal(
    error.message,
    `${SOURCE}: databases[0].port: 70000 is not valid: a port is a whole number from 1 to 65535`,
  );
});

Deno.test("parseConfig() rejects two databases on one port", () => {
  const error = configError(JSON.stringify({
    sentinels: ["127.0.0.1:26379"],
    databases: [{ name: "a", port: 6380 }, { name: "b", port: 6380 }],
  }));
  assert.equal(
    error.message,
    `${SOURCE}: databases[1].port: 6380 is used twice: it is also databases[0].port, so databases[1] ("b", role "master") and databases[0] ("a", role "master") would both listen on 127.0.0.1:6380; give one of them another port`,
  );
});

Deno.test("parseConfig() serves one master name on several ports, each with its role", () => {
  const config = parse(JSON.stringify({
    sentinels: ["127.0.0.1:26379"],
    databases: [
      { name: "a", port: 6380 },
      { name: "a", port: 6381, role: "replica" },
      { name: "a", port: 6382, role: "master" },
      { name: "a", port: 6383, role: "replica", maxLagBytes: 0, whenNoReplica: "master" },
    ],
  }));
  assert.deepEqual(
    config.databases.map((d) => [d.name, d.port, d.role, d.maxLagBytes, d.whenNoReplica]),
    [
      ["a", 6380, "master", 1_048_576, "reject"],
      ["a", 6381, "replica", 1_048_576, "reject"],
      ["a", 6382, "master", 1_048_576, "reject"],
      ["a", 6383, "replica", 0, "master"],
    ],
  );
});

Deno.test("parseConfig() refuses entries of one master name that disagree on a setting of the name's, naming both and the field", () => {
  const fields: [string, Record<string, unknown>, Record<string, unknown>][] = [
    ["masterAuth", { masterAuth: { password: "a" } }, { masterAuth: { password: "b" } }],
    ["fence", { fence: { afterMs: 5000 } }, {}],
    [
      "onMasterChange",
      { onMasterChange: { command: ["/bin/true"] } },
      { onMasterChange: { command: ["/bin/false"] } },
    ],
    [
      "timeouts.masterConnectMs",
      { timeouts: { masterConnectMs: 300 } },
      { timeouts: { masterConnectMs: 400 } },
    ],
    ["timeouts.masterReplyMs", {}, { timeouts: { masterReplyMs: 300 } }],
  ];
  for (const [field, first, second] of fields) {
    const error = configError(JSON.stringify({
      sentinels: ["127.0.0.1:26379"],
      databases: [
        { name: "mymaster", port: 6380, ...first },
        { name: "other", port: 6390 },
        { name: "mymaster", port: 6381, role: "replica", ...second },
      ],
    }));
    const path = Object.keys(second).length > 0 ? `databases[2].${field}` : "databases[2]";
    assert.deepEqual(error.problems, [
      `${SOURCE}: ${path}: ${field} differs from databases[0] ("mymaster", role "master", 127.0.0.1:6380): the entries of one master name share masterAuth, tls, fence, onMasterChange, timeouts.masterConnectMs, timeouts.masterReplyMs, as one control plane checks their master; set ${field} alike on both, or once at the top level`,
    ], field);
  }
});

Deno.test("parseConfig() lets entries of one master name differ in what belongs to their ports", () => {
  const config = parse(JSON.stringify({
    sentinels: ["127.0.0.1:26379"],
    masterAuth: { password: "shared" },
    fence: { afterMs: 5000 },
    databases: [
      { name: "a", port: 6380, maxClients: 10, preconnect: 2, timeouts: { clientWaitMs: 100 } },
      {
        name: "a",
        port: 6381,
        bind: "::1",
        role: "replica",
        maxLagBytes: 10,
        whenNoReplica: "master",
        timeouts: { clientIdleMs: 5000 },
      },
      // The same setting written on an entry counts as agreeing with the inherited one.
      { name: "a", port: 6382, masterAuth: { password: "shared" }, fence: { afterMs: 5000 } },
    ],
  }));
  assert.deepEqual(config.databases.map((d) => d.port), [6380, 6381, 6382]);
  assert.deepEqual(
    config.databases.map((d) => d.masterAuth?.password),
    ["shared", "shared", "shared"],
  );
});

Deno.test("parseConfig() takes maxLagBytes and whenNoReplica at the top level for replica entries", () => {
  const config = parse(JSON.stringify({
    sentinels: ["127.0.0.1:26379"],
    maxLagBytes: 4096,
    whenNoReplica: "master",
    databases: [
      { name: "a", port: 6380 },
      { name: "a", port: 6381, role: "replica" },
      { name: "a", port: 6382, role: "replica", maxLagBytes: 2 ** 40, whenNoReplica: "reject" },
    ],
  }));
  assert.deepEqual(
    config.databases.map((d) => [d.role, d.maxLagBytes, d.whenNoReplica]),
    [["master", 4096, "master"], ["replica", 4096, "master"], ["replica", 2 ** 40, "reject"]],
  );
});

Deno.test("parseConfig() refuses maxLagBytes and whenNoReplica on a master entry, naming it", () => {
  assert.equal(
    configError(documented({
      databases: [{ name: "mymaster", port: 6380, maxLagBytes: 2048 }],
    })).message,
    `${SOURCE}: databases[0].maxLagBytes: 2048 is not valid: maxLagBytes applies to "role": "replica" entries only, and database "mymaster" on port 6380 has role "master" (the default); add "role": "replica" to make it a read port, or remove maxLagBytes`,
  );
  assert.equal(
    configError(documented({
      databases: [{ name: "mymaster", port: 6380, role: "master", whenNoReplica: "master" }],
    })).message,
    `${SOURCE}: databases[0].whenNoReplica: "master" is not valid: whenNoReplica applies to "role": "replica" entries only, and database "mymaster" on port 6380 has role "master"; add "role": "replica" to make it a read port, or remove whenNoReplica`,
  );
});

Deno.test("parseConfig() refuses a role, maxLagBytes or whenNoReplica out of their range", () => {
  const entry = (fields: Record<string, unknown>) =>
    configError(documented({ databases: [{ name: "mymaster", port: 6380, ...fields }] })).message;
  assert.equal(
    entry({ role: "primary" }),
    `${SOURCE}: databases[0].role: "primary" is not valid: role is "master" (the port serves the master; the default) or "replica" (a read port, served by the replicas)`,
  );
  assert.match(entry({ role: 1 }), /databases\[0\]\.role: 1 is not valid: role is "master"/);
  for (const bytes of [-1, 1.5, 2 ** 40 + 1, "1MB"]) {
    assert.equal(
      entry({ role: "replica", maxLagBytes: bytes }),
      `${SOURCE}: databases[0].maxLagBytes: ${
        JSON.stringify(bytes)
      } is not valid: maxLagBytes is a whole number of bytes from 0 to 1099511627776`,
    );
  }
  assert.equal(
    entry({ role: "replica", whenNoReplica: "wait" }),
    `${SOURCE}: databases[0].whenNoReplica: "wait" is not valid: whenNoReplica is "reject" (a client waits clientWaitMs for a usable replica, then gets an error; the default) or "master" (it goes to the master)`,
  );
  assert.match(
    configError(documented({ whenNoReplica: "Master" })).message,
    /^test\.jsonc: whenNoReplica: "Master" is not valid: whenNoReplica is "reject"/,
  );
});

Deno.test("parseConfig() rejects a Sentinel listed twice", () => {
  const error = configError(JSON.stringify({
    sentinels: ["LocalHost:26379", "localhost:26379"],
    databases: [{ name: "a", port: 6380 }],
  }));
  assert.equal(
    error.message,
    `${SOURCE}: sentinels[1]: "localhost:26379" is listed twice: it is also sentinels[0]; list each Sentinel once`,
  );
});

Deno.test("parseConfig() rejects an empty Sentinel list", () => {
  const error = configError(JSON.stringify({
    sentinels: [],
    databases: [{ name: "a", port: 6380 }],
  }));
  assert.equal(
    error.message,
    `${SOURCE}: sentinels: [] is not valid: list at least one Sentinel, such as ["127.0.0.1:26379"]`,
  );
});

Deno.test("parseConfig() rejects malformed Sentinel addresses, one problem each", () => {
  const error = configError(JSON.stringify({
    sentinels: ["localhost", "1.2.3.4:99999"],
    databases: [{ name: "a", port: 6380 }],
  }));
  assert.deepEqual(error.problems, [
    `${SOURCE}: sentinels[0]: "localhost" is not valid: expected "host:port", such as "127.0.0.1:26379" or "[::1]:26379"`,
    `${SOURCE}: sentinels[1]: "1.2.3.4:99999" is not valid: a port is a whole number from 1 to 65535`,
  ]);
  assert.equal(error.message, error.problems.join("\n"));
});

Deno.test("parseConfig() suggests the known key closest to an unknown one", () => {
  const error = configError(JSON.stringify({
    sentinels: ["127.0.0.1:26379"],
    databases: [{ name: "a", prot: 6380 }],
  }));
  assert.ok(
    error.problems.includes(
      `${SOURCE}: databases[0]: unknown key "prot": did you mean "port"? (known keys: name, port, role, maxLagBytes, whenNoReplica, bind, masterAuth, timeouts, onMasterChange, maxClients, tls, listenTls, preconnect, fence)`,
    ),
    error.message,
  );
});

Deno.test("parseConfig() suggests a top-level key for a misspelt one", () => {
  const error = configError(JSON.stringify({
    sentinels: ["127.0.0.1:26379"],
    databses: [{ name: "a", port: 6380 }],
  }));
  assert.ok(
    error.problems.includes(
      `${SOURCE}: top level: unknown key "databses": did you mean "databases"? (known keys: sentinels, bind, admin, sentinelAuth, masterAuth, timeouts, maxSentinels, maxClients, tcpKeepAlive, onMasterChange, tls, sentinelTls, listenTls, maxLagBytes, whenNoReplica, fence, preconnect, databases)`,
    ),
    error.message,
  );
  assert.ok(
    error.problems.includes(
      `${SOURCE}: databases: missing: databases is a list of objects`,
    ),
    error.message,
  );
});

Deno.test("parseConfig() rejects a Local_port that is not a number in the original format", () => {
  const error = configError(
    '{"Sentinels_addresses_list": ["127.0.0.1:26379"], "Databases": [{"Name": "db1", "Local_port": "abc"}]}',
  );
  assert.equal(
    error.message,
    `${SOURCE}: Databases[0].Local_port: "abc" is not valid: a port is a whole number from 1 to 65535`,
  );
});

Deno.test("parseConfig() uses the original key names for duplicates in the original format", () => {
  const error = configError(
    '{"Sentinels_addresses_list": ["127.0.0.1:26379"], "Databases": [{"Name": "a", "Local_port": "6380"}, {"Name": "b", "Local_port": 6380}]}',
  );
  assert.equal(
    error.message,
    `${SOURCE}: Databases[1].Local_port: 6380 is used twice: it is also Databases[0].Local_port, so Databases[1] ("b", role "master") and Databases[0] ("a", role "master") would both listen on 127.0.0.1:6380; give one of them another port`,
  );
});

Deno.test("parseConfig() loads one Name on two ports in the original format, both master ports", () => {
  const config = parse(
    '{"Sentinels_addresses_list": ["127.0.0.1:26379"], "Databases": [{"Name": "db1", "Local_port": "12345"}, {"Name": "db1", "Local_port": "12346"}]}',
  );
  assert.deepEqual(config.databases.map((d) => [d.name, d.port, d.role]), [
    ["db1", 12345, "master"],
    ["db1", 12346, "master"],
  ]);
});

Deno.test("parseConfig() rejects a timeout out of range", () => {
  const error = configError(documented({ timeouts: { pollIntervalMs: 0 } }));
  assert.equal(
    error.message,
    `${SOURCE}: timeouts.pollIntervalMs: 0 is not valid: a duration is a whole number of milliseconds from 1 to 600000`,
  );
});

Deno.test("redactConfig() hides passwords from the config and from the environment", () => {
  const config = parse(
    JSON.stringify({
      sentinels: ["127.0.0.1:26379"],
      sentinelAuth: { password: "file-secret-1" },
      masterAuth: { username: "app", passwordEnv: "MASTER_PW" },
      databases: [
        { name: "a", port: 6380 },
        { name: "b", port: 6381, masterAuth: { password: "file-secret-2" } },
      ],
    }),
    { MASTER_PW: "env-secret-3" },
  );
  // The secrets are in the resolved config, so that they can be sent to Redis.
  assert.equal(config.sentinelAuth?.password, "file-secret-1");
  assert.equal(config.databases[0]?.masterAuth?.password, "env-secret-3");

  const redacted = redactConfig(config);
  const text = JSON.stringify(redacted);
  for (const secret of ["file-secret-1", "env-secret-3", "file-secret-2"]) {
    assert.ok(!text.includes(secret), `${secret} appears in ${text}`);
  }
  assert.deepEqual(JSON.parse(text), {
    format: "documented",
    sentinels: ["127.0.0.1:26379"],
    sentinelAuth: { password: "<redacted>" },
    timeouts: DEFAULT_TIMEOUTS,
    databases: [
      {
        name: "a",
        listen: "127.0.0.1:6380",
        role: "master",
        fence: false,
        masterAuth: {
          username: "app",
          password: "<redacted: from env MASTER_PW>",
        },
        timeouts: {
          masterConnectMs: 1000,
          masterReplyMs: 1000,
          clientWaitMs: 5000,
          clientIdleMs: 0,
        },
        maxClients: 10_000,
        preconnect: 0,
        tcpKeepAlive: true,
      },
      {
        name: "b",
        listen: "127.0.0.1:6381",
        role: "master",
        fence: false,
        masterAuth: { password: "<redacted>" },
        timeouts: {
          masterConnectMs: 1000,
          masterReplyMs: 1000,
          clientWaitMs: 5000,
          clientIdleMs: 0,
        },
        maxClients: 10_000,
        preconnect: 0,
        tcpKeepAlive: true,
      },
    ],
    maxSentinels: 16,
    maxClients: 10_000,
  });
});

Deno.test("redactConfig() shows the role, and the replica settings on replica entries only", () => {
  const redacted = redactConfig(parse(JSON.stringify({
    sentinels: ["127.0.0.1:26379"],
    databases: [
      { name: "a", port: 6380 },
      { name: "a", port: 6381, role: "replica", maxLagBytes: 512 },
    ],
  }))) as { databases: Record<string, unknown>[] };
  assert.deepEqual(
    redacted.databases.map(({ name, listen, role, maxLagBytes, whenNoReplica }) => ({
      name,
      listen,
      role,
      maxLagBytes,
      whenNoReplica,
    })),
    [
      {
        name: "a",
        listen: "127.0.0.1:6380",
        role: "master",
        maxLagBytes: undefined,
        whenNoReplica: undefined,
      },
      {
        name: "a",
        listen: "127.0.0.1:6381",
        role: "replica",
        maxLagBytes: 512,
        whenNoReplica: "reject",
      },
    ],
  );
  assert.ok(!Object.hasOwn(redacted.databases[0]!, "maxLagBytes"));
});

Deno.test("redactConfig() brackets an IPv6 listen address", () => {
  const redacted = redactConfig(parse(documented({ bind: "::1" }))) as {
    databases: { listen: string }[];
  };
  assert.equal(redacted.databases[0]?.listen, "[::1]:6380");
});

Deno.test({
  name: "loadConfig() throws ConfigError naming a missing file",
  permissions: { read: true },
  async fn() {
    const path = "/nonexistent/sentinel-tunnel/config.jsonc";
    await assert.rejects(loadConfig(path), (error) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(
        error.message,
        `${path}: cannot read the config file: no such file; give the path of a JSONC config, such as config/example.jsonc`,
      );
      assert.ok(error.cause instanceof Deno.errors.NotFound);
      return true;
    });
  },
});

Deno.test({
  name: "loadConfig() reads and resolves a config file",
  permissions: { read: true, write: true },
  async fn() {
    const path = await Deno.makeTempFile({ suffix: ".jsonc" });
    try {
      await Deno.writeTextFile(
        path,
        '// test\n{ "sentinels": ["127.0.0.1:26379"], "databases": [{ "name": "m", "port": 7000 }] }\n',
      );
      const config = await loadConfig(path, { getEnv: noEnv });
      assert.equal(config.format, "documented");
      assert.deepEqual(config.databases.map((db) => [db.name, db.port]), [[
        "m",
        7000,
      ]]);

      await Deno.writeTextFile(path, '{ "sentinels": [] }');
      await assert.rejects(loadConfig(path, { getEnv: noEnv }), (error) => {
        assert.ok(error instanceof ConfigError);
        assert.ok(error.problems.length > 0);
        for (const problem of error.problems) {
          assert.ok(problem.startsWith(`${path}: `), problem);
        }
        return true;
      });
    } finally {
      await Deno.remove(path);
    }
  },
});

Deno.test("parseConfig() never echoes credentials in its messages", () => {
  for (
    const masterAuth of [
      { password: "hunter2", passwordEnv: "X" },
      "hunter2",
      { password: "hunter2", usrname: "x" },
    ]
  ) {
    const text = JSON.stringify({
      sentinels: ["127.0.0.1:26379"],
      masterAuth,
      databases: [{ name: "m", port: 6380 }],
    });
    assert.throws(() => parseConfig(text, "t.jsonc", { getEnv: () => undefined }), (error) => {
      assert.ok(error instanceof ConfigError);
      assert.ok(!error.message.includes("hunter2"), error.message);
      assert.match(error.message, /masterAuth/);
      return true;
    });
  }
});

Deno.test("parseConfig() rejects a listen address that carries a port", () => {
  const text = JSON.stringify({
    sentinels: ["127.0.0.1:26379"],
    bind: "127.0.0.1:6380",
    databases: [{ name: "m", port: 6380 }],
  });
  assert.throws(
    () => parseConfig(text, "t.jsonc", { getEnv: () => undefined }),
    /bind: "127\.0\.0\.1:6380" is not valid: a listen address is a host name or IP address without a port/,
  );
});

Deno.test("configFromEnvironment() builds a config from SENTINEL_TUNNEL_* variables", () => {
  const env: Record<string, string> = {
    SENTINEL_TUNNEL_SENTINELS: "127.0.0.1:26379, [::1]:26380",
    SENTINEL_TUNNEL_DATABASES: "mymaster:6380,cache:6381",
    SENTINEL_TUNNEL_BIND: "0.0.0.0",
    SENTINEL_TUNNEL_ADMIN: ":9121",
    SENTINEL_TUNNEL_MASTER_PASSWORD: "env-master-secret",
  };
  const config = configFromEnvironment(env);
  assert.ok(config);
  assert.equal(config.format, "environment");
  assert.deepEqual(config.sentinels, [{ hostname: "127.0.0.1", port: 26379 }, {
    hostname: "::1",
    port: 26380,
  }]);
  assert.deepEqual(config.databases.map((d) => [d.name, d.bind, d.port]), [
    ["mymaster", "0.0.0.0", 6380],
    ["cache", "0.0.0.0", 6381],
  ]);
  assert.deepEqual(config.admin, { hostname: "127.0.0.1", port: 9121 });
  assert.equal(config.databases[0]?.masterAuth?.password, "env-master-secret");
  assert.equal(
    config.databases[0]?.masterAuth?.passwordSource,
    "env SENTINEL_TUNNEL_MASTER_PASSWORD",
  );
  assert.equal(configFromEnvironment({}), undefined);
});

Deno.test("configFromEnvironment() takes an optional role after the port", () => {
  const config = configFromEnvironment({
    SENTINEL_TUNNEL_SENTINELS: "127.0.0.1:26379",
    SENTINEL_TUNNEL_DATABASES: "mymaster:6380,mymaster:6381:replica,cache:6382:master,a:b:6383",
  });
  assert.ok(config);
  assert.deepEqual(config.databases.map((d) => [d.name, d.port, d.role, d.whenNoReplica]), [
    ["mymaster", 6380, "master", "reject"],
    ["mymaster", 6381, "replica", "reject"],
    ["cache", 6382, "master", "reject"],
    ["a:b", 6383, "master", "reject"],
  ]);
  assert.throws(
    () =>
      configFromEnvironment({
        SENTINEL_TUNNEL_SENTINELS: "127.0.0.1:26379",
        SENTINEL_TUNNEL_DATABASES: "mymaster:6380,mymaster:6381:reader,mymaster:6380:replica",
      }),
    (error) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.problems, [
        'environment: SENTINEL_TUNNEL_DATABASES[1].role: "reader" is not valid: role is "master" (the port serves the master; the default) or "replica" (a read port, served by the replicas)',
      ]);
      return true;
    },
  );
  assert.throws(
    () =>
      configFromEnvironment({
        SENTINEL_TUNNEL_SENTINELS: "127.0.0.1:26379",
        SENTINEL_TUNNEL_DATABASES: "mymaster:6380,mymaster:6380:replica",
      }),
    /environment: SENTINEL_TUNNEL_DATABASES\[1\]\.port: 6380 is used twice: it is also SENTINEL_TUNNEL_DATABASES\[0\]\.port/,
  );
});

Deno.test("configFromEnvironment() validates like a file and names the variable", () => {
  const env: Record<string, string> = {
    SENTINEL_TUNNEL_SENTINELS: "127.0.0.1:26379,nohostport",
    SENTINEL_TUNNEL_DATABASES: "mymaster:70000,cache",
  };
  assert.throws(() => configFromEnvironment(env), (error) => {
    assert.ok(error instanceof ConfigError);
    const text = error.message;
    assert.match(text, /environment: SENTINEL_TUNNEL_SENTINELS\[1\]: "nohostport" is not valid/);
    assert.match(
      text,
      /SENTINEL_TUNNEL_DATABASES\[0\]\.port: 70000 is not valid: a port is a whole number/,
    );
    assert.match(text, /SENTINEL_TUNNEL_DATABASES\[1\]\.port: missing/);
    return true;
  });
  assert.throws(
    () => configFromEnvironment({ SENTINEL_TUNNEL_DATABASES: "m:6380" }),
    /SENTINEL_TUNNEL_SENTINELS: \[\] is not valid: list at least one Sentinel/,
  );
});

Deno.test("parseConfig() resolves hooks and the admin address", () => {
  const config = parse(JSON.stringify({
    sentinels: ["127.0.0.1:26379"],
    admin: "[::1]:9121",
    onMasterChange: { command: ["/usr/local/bin/on-failover"] },
    databases: [
      { name: "a", port: 6380 },
      { name: "b", port: 6381, onMasterChange: { command: ["/bin/true", "x"], timeoutMs: 500 } },
    ],
  }));
  assert.deepEqual(config.admin, { hostname: "::1", port: 9121 });
  assert.deepEqual(config.databases[0]?.onMasterChange, {
    command: ["/usr/local/bin/on-failover"],
    timeoutMs: 10_000,
  });
  assert.deepEqual(config.databases[1]?.onMasterChange, {
    command: ["/bin/true", "x"],
    timeoutMs: 500,
  });
  assert.throws(
    () =>
      parse(
        JSON.stringify({
          sentinels: ["127.0.0.1:26379"],
          databases: [{ name: "a", port: 1, onMasterChange: { command: [] } }],
        }),
      ),
    /databases\[0\]\.onMasterChange\.command: \[\] is not valid: command names at least the program to run/,
  );
  assert.throws(
    () =>
      parse(
        JSON.stringify({
          sentinels: ["127.0.0.1:26379"],
          admin: "nowhere",
          databases: [{ name: "a", port: 1 }],
        }),
      ),
    /admin: "nowhere" is not valid: the admin address is "host:port", ":port" or a port/,
  );
});

Deno.test("parseConfig() takes maxSentinels from 1 to 256", () => {
  const config = parse(documented({ maxSentinels: 5 }));
  assert.equal(config.maxSentinels, 5);
  for (const bad of [0, 257, 1.5, "16"]) {
    assert.throws(() => parse(documented({ maxSentinels: bad })), {
      name: "ConfigError",
      message: /maxSentinels is a whole number from 1 to 256/,
    });
  }
});

Deno.test("parseConfig() takes maxClients in total and per database, and tcpKeepAlive", () => {
  const config = parse(documented({ maxClients: 50, tcpKeepAlive: false }));
  assert.equal(config.maxClients, 50);
  assert.equal(config.databases[0]?.maxClients, 50);
  assert.equal(config.databases[0]?.tcpKeepAlive, false);
  const own = parse(JSON.stringify({
    sentinels: ["127.0.0.1:26379"],
    databases: [{ name: "a", port: 6380, maxClients: 7, timeouts: { clientIdleMs: 60_000 } }],
  }));
  assert.equal(own.databases[0]?.maxClients, 7);
  assert.equal(own.maxClients, 10_000);
  assert.equal(own.databases[0]?.timeouts.clientIdleMs, 60_000);
  for (const bad of [0, 1_000_001, 2.5]) {
    assert.throws(() => parse(documented({ maxClients: bad })), {
      message: /maxClients is a whole number from 1 to 1000000/,
    });
  }
  for (const bad of [-1, 1, 999, 86_400_001]) {
    assert.throws(() => parse(documented({ timeouts: { clientIdleMs: bad } })), {
      message: /an idle limit is 0 \(off\) or a whole number of milliseconds from 1000 to 86400000/,
    });
  }
});

// Issue #8: every input is bounded, and every mistake is refused with its line, not crashed on.

/** A config nested `depth` deep in all: `[[[...]]]` as the value of "sentinels". */
function nested(depth: number): string {
  // The outer object is the first level.
  return `{ "sentinels": ${"[".repeat(depth - 1)}${"]".repeat(depth - 1)}, "databases": [] }`;
}

Deno.test("parseConfig() refuses a config nested 5,000 deep with one line, not a RangeError", () => {
  // 5,000 objects deep overflowed the parser's stack.
  const error = configError(`${'{"a":'.repeat(5000)}1${"}".repeat(5000)}`);
  // The 33rd "{", at column 1 + 5 * 32, opens level 33.
  assert.equal(
    error.message,
    `${SOURCE}:1:161: nested deeper than 32 levels of objects and arrays: a config nests 5 at most; remove the extra brackets`,
  );
  assert.match(configError(nested(100_000)).message, /^test\.jsonc:1:47: nested deeper than 32/);
  // Brackets in strings and comments are not nesting.
  const quoted = `// ${"[".repeat(100)}\n${documented({ bind: "[".repeat(100) })}`;
  assert.match(configError(quoted).message, /bind: "\[\[\[/);
  // At the limit the text is parsed, and refused by the schema instead.
  assert.match(
    configError(nested(MAX_CONFIG_DEPTH)).message,
    /sentinels\[0\]: \[\[.* is not valid/,
  );
});

Deno.test("parseConfig() accepts a UTF-8 byte order mark", () => {
  const config = parse(`\uFEFF${documented()}`);
  assert.equal(config.databases[0]?.name, "mymaster");
  // Columns on the first line count from after the mark.
  assert.match(configError("\uFEFF{ x").message, /^test\.jsonc:1:3: syntax error: /);
});

Deno.test("parseConfig() refuses a number too large to hold, at its line and column", () => {
  const error = configError(
    '{\n  "sentinels": ["127.0.0.1:26379"],\n  "maxClients": 1e400,\n  "databases": [{ "name": "m", "port": -1e999 }]\n}',
  );
  assert.deepEqual(error.problems, [
    `${SOURCE}:3:17: maxClients: 1e400 is not valid: the number is too large to hold; write one below 1e308, such as 6380`,
    `${SOURCE}:4:40: databases[0].port: -1e999 is not valid: the number is too large to hold; write one below 1e308, such as 6380`,
  ]);
  assert.doesNotMatch(error.message, /null/);
});

Deno.test("parseConfig() refuses a key given twice, with line, column and the key's path", () => {
  const error = configError(`{
  "sentinels": ["127.0.0.1:26379"],
  "databases": [
    { "name": "a", "port": 6380 },
    { "name": "b", "port": 6381, "port": 6382 }
  ],
  "sentinels": ["127.0.0.1:26380"]
}`);
  assert.deepEqual(error.problems, [
    `${SOURCE}:5:34: databases[1].port: the key "port" is given twice, also at 5:20: keep one of them`,
    `${SOURCE}:7:3: sentinels: the key "sentinels" is given twice, also at 2:3: keep one of them`,
  ]);
  // The same key in two different objects is fine.
  assert.equal(
    parse(documented({ masterAuth: { password: "x" }, sentinelAuth: { password: "y" } })).format,
    "documented",
  );
});

Deno.test("parseConfig() refuses a __proto__ key as unknown, never as a prototype", () => {
  const error = configError(documented().replace("{", '{ "__proto__": { "bind": "0.0.0.0" },'));
  assert.match(error.message, /^test\.jsonc: top level: unknown key "__proto__" \(known keys: /);
});

Deno.test("parseConfig() allows one port on different addresses, refuses the same address twice", () => {
  const config = parse(JSON.stringify({
    sentinels: ["127.0.0.1:26379"],
    databases: [
      { name: "a", port: 6380 },
      { name: "b", port: 6380, bind: "::1" },
      { name: "c", port: 6380, bind: "127.0.0.2" },
    ],
  }));
  assert.deepEqual(config.databases.map((d) => `${d.bind} ${d.port}`), [
    "127.0.0.1 6380",
    "::1 6380",
    "127.0.0.2 6380",
  ]);
  const twice = (binds: [string, string]) =>
    configError(JSON.stringify({
      sentinels: ["127.0.0.1:26379"],
      databases: binds.map((bind, i) => ({ name: `d${i}`, port: 6380, bind })),
    })).message;
  assert.equal(
    twice(["::1", "0:0:0:0:0:0:0:1"]),
    `${SOURCE}: databases[1].port: 6380 is used twice: it is also databases[0].port, so databases[1] ("d1", role "master") and databases[0] ("d0", role "master") would both listen on [0:0:0:0:0:0:0:1]:6380; give one of them another port`,
  );
  assert.equal(
    twice(["0.0.0.0", "127.0.0.1"]),
    `${SOURCE}: databases[1].port: 6380 overlaps databases[0].port: databases[1] ("d1", role "master", 127.0.0.1:6380) and databases[0] ("d0", role "master", 0.0.0.0:6380) cannot both listen, as "0.0.0.0" takes every IPv4 address; give one of them another port`,
  );
  assert.match(
    twice(["::1", "::"]),
    /databases\[1\]\.port: 6380 overlaps databases\[0\]\.port: databases\[1\] \("d1", role "master", \[::\]:6380\) and databases\[0\] \("d0", role "master", \[::1\]:6380\) cannot both listen, as "::" takes every address;/,
  );
  assert.match(twice(["10.0.0.1", "::"]), /as "::" takes every address/);
  assert.match(
    twice(["10.0.0.1", "0.0.0.0"]),
    /6380 overlaps databases\[0\]\.port: .* as "0\.0\.0\.0" takes every IPv4 address/,
  );
  // 0.0.0.0 takes IPv4 addresses only.
  assert.equal(
    parse(JSON.stringify({
      sentinels: ["127.0.0.1:26379"],
      databases: [{ name: "a", port: 6380, bind: "0.0.0.0" }, {
        name: "b",
        port: 6380,
        bind: "::1",
      }],
    })).databases.length,
    2,
  );
});

Deno.test("parseConfig() refuses two entries of one name that clash, naming both with their role", () => {
  const clash = (second: Record<string, unknown>) =>
    configError(JSON.stringify({
      sentinels: ["127.0.0.1:26379"],
      databases: [{ name: "mymaster", port: 6380 }, {
        name: "mymaster",
        port: 6380,
        role: "replica",
        ...second,
      }],
    })).message;
  assert.equal(
    clash({}),
    `${SOURCE}: databases[1].port: 6380 is used twice: it is also databases[0].port, so databases[1] ("mymaster", role "replica") and databases[0] ("mymaster", role "master") would both listen on 127.0.0.1:6380; give one of them another port`,
  );
  assert.equal(
    clash({ bind: "0.0.0.0" }),
    `${SOURCE}: databases[1].port: 6380 overlaps databases[0].port: databases[1] ("mymaster", role "replica", 0.0.0.0:6380) and databases[0] ("mymaster", role "master", 127.0.0.1:6380) cannot both listen, as "0.0.0.0" takes every IPv4 address; give one of them another port`,
  );
  assert.equal(
    parse(documented({
      databases: [{ name: "mymaster", port: 6380 }, {
        name: "mymaster",
        port: 6380,
        bind: "::1",
        role: "replica",
      }],
    })).databases.length,
    2,
  );
});

Deno.test("parseConfig() lists the first 10 problems and counts the rest", () => {
  const databases = Array.from({ length: 30_000 }, () => ({ name: "same", port: 6380 }));
  const error = configError(JSON.stringify({ sentinels: ["127.0.0.1:26379"], databases }));
  // One problem per entry after the first: its port clashes (the name may repeat).
  assert.equal(error.count, databases.length - 1);
  assert.equal(error.problems.length, MAX_REPORTED_PROBLEMS + 1);
  assert.equal(error.message.split("\n").length, MAX_REPORTED_PROBLEMS + 1);
  assert.equal(
    error.problems.at(-1),
    `${SOURCE}: and ${
      error.count - MAX_REPORTED_PROBLEMS
    } more problems not shown: fix the ones above, then check again with --check`,
  );
});

Deno.test("parseConfig() refuses text over the size limit before parsing it", () => {
  const error = configError(" ".repeat(MAX_CONFIG_BYTES) + documented());
  assert.match(
    error.message,
    /^test\.jsonc: the config is \d+ characters long, over the limit of 1048576: /,
  );
});

Deno.test("configFromEnvironment() refuses an unknown SENTINEL_TUNNEL_* variable, suggesting the nearest", () => {
  const env = {
    SENTINEL_TUNNEL_SENTINELS: "127.0.0.1:26379",
    SENTINEL_TUNNEL_DATABASES: "mymaster:6380",
    SENTINEL_TUNNEL_MASTER_PASWORD: "secret-in-a-typo",
    SENTINEL_TUNNEL_BUFFER_BYTES: "1024,65536",
    OTHER_VARIABLE: "ignored",
  };
  assert.throws(() => configFromEnvironment(env), (error) => {
    assert.ok(error instanceof ConfigError);
    assert.match(
      error.message,
      /^environment: SENTINEL_TUNNEL_MASTER_PASWORD: unknown variable: did you mean SENTINEL_TUNNEL_MASTER_PASSWORD\? \(known: SENTINEL_TUNNEL_SENTINELS, SENTINEL_TUNNEL_DATABASES, .*\); rename or unset it$/,
    );
    assert.ok(!error.message.includes("secret-in-a-typo"));
    return true;
  });
  // A misspelt required variable alone is a mistake too, not "no config given".
  assert.throws(
    () => configFromEnvironment({ SENTINEL_TUNNEL_SENTINEL: "127.0.0.1:26379" }),
    /SENTINEL_TUNNEL_SENTINEL: unknown variable: did you mean SENTINEL_TUNNEL_SENTINELS\?/,
  );
  assert.equal(configFromEnvironment({ SENTINEL_TUNNEL_BUFFER_BYTES: "1024,65536" }), undefined);
});

Deno.test("configFromEnvironment() says that an empty password variable is empty", () => {
  assert.throws(
    () =>
      configFromEnvironment({
        SENTINEL_TUNNEL_SENTINELS: "127.0.0.1:26379",
        SENTINEL_TUNNEL_DATABASES: "mymaster:6380",
        SENTINEL_TUNNEL_MASTER_PASSWORD: "",
      }),
    {
      message:
        "environment: SENTINEL_TUNNEL_MASTER_PASSWORD: is set but empty: put the password in it, or unset it if no password is needed",
    },
  );
});

/** `promise`, or a failure after `ms`: a read that blocks fails the test instead of hanging it. */
async function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no result within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The one-line ConfigError that loading `path` rejects with. */
async function loadError(path: string, options = {}): Promise<string> {
  try {
    await within(10_000, loadConfig(path, { getEnv: noEnv, ...options }));
  } catch (error) {
    assert.ok(error instanceof ConfigError, `not a ConfigError: ${error}`);
    assert.equal(error.problems.length, 1, error.message);
    return error.message;
  }
  assert.fail(`loadConfig(${path}) did not throw`);
}

Deno.test({
  name: "loadConfig() refuses a FIFO, a device and a directory at once, without reading them",
  permissions: { read: true, write: true, run: ["sh"] },
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const fifo = `${dir}/config.jsonc`;
      const made = await new Deno.Command("sh", { args: ["-c", 'mkfifo "$0"', fifo] }).output();
      assert.equal(made.code, 0, new TextDecoder().decode(made.stderr));
      assert.equal(
        await loadError(fifo),
        `${fifo}: cannot read the config file: it is a FIFO (named pipe), not a regular file; give the path of a JSONC config file`,
      );
      assert.equal(
        await loadError("/dev/zero"),
        "/dev/zero: cannot read the config file: it is a character device, not a regular file; give the path of a JSONC config file",
      );
      // Through a symbolic link too.
      await Deno.symlink("/dev/zero", `${dir}/zero.jsonc`);
      assert.match(await loadError(`${dir}/zero.jsonc`), /it is a character device/);
      assert.equal(
        await loadError(dir),
        `${dir}: cannot read the config file: it is a directory, not a regular file; give the path of a JSONC config file`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "loadConfig() refuses a file over 1 MiB and reads one at the limit, BOM and all",
  permissions: { read: true, write: true },
  async fn() {
    const path = await Deno.makeTempFile({ suffix: ".jsonc" });
    try {
      const bytes = new TextEncoder().encode(`\uFEFF${documented()}`);
      const padded = new Uint8Array(MAX_CONFIG_BYTES).fill(0x20);
      padded.set(bytes);
      await Deno.writeFile(path, padded);
      assert.equal((await loadConfig(path, { getEnv: noEnv })).databases[0]?.name, "mymaster");
      await Deno.writeFile(path, new Uint8Array(MAX_CONFIG_BYTES + 1).fill(0x20));
      assert.equal(
        await loadError(path),
        `${path}: cannot read the config file: it is 1048577 bytes, over the limit of 1048576 bytes (1 MiB): a config is a few kilobytes; check that this is the config`,
      );
    } finally {
      await Deno.remove(path);
    }
  },
});

Deno.test({
  name: "loadConfig() gives up reading when its signal aborts",
  permissions: { read: true },
  async fn() {
    assert.equal(
      await loadError("config/example.jsonc", {
        signal: AbortSignal.abort(new Error("test deadline")),
      }),
      "config/example.jsonc: cannot read the config file: gave up reading it: test deadline; check the file system it is on",
    );
  },
});

Deno.test("ConfigReloadQueue runs one reload at a time and folds requests during one into one more", async () => {
  const events: string[] = [];
  const gates: PromiseWithResolvers<void>[] = [];
  const queue = new ConfigReloadQueue(async () => {
    const gate = Promise.withResolvers<void>();
    gates.push(gate);
    events.push(`start ${gates.length}`);
    await gate.promise;
    events.push(`end ${gates.length}`);
  });
  queue.request();
  for (let i = 0; i < 5; i++) queue.request();
  assert.deepEqual(events, ["start 1"]);
  gates[0]!.resolve();
  // The five requests during the first reload make one more.
  await within(
    5_000,
    (async () => {
      while (gates.length < 2) await new Promise((resolve) => setTimeout(resolve, 1));
    })(),
  );
  gates[1]!.resolve();
  await within(5_000, queue.idle);
  assert.deepEqual(events, ["start 1", "end 1", "start 2", "end 2"]);
});

Deno.test("ConfigReloadQueue reports a reload that throws and goes on with the next", async () => {
  const errors: unknown[] = [];
  let runs = 0;
  const queue = new ConfigReloadQueue(() => {
    runs++;
    return runs === 1 ? Promise.reject(new RangeError("boom")) : Promise.resolve();
  }, { onError: (error) => errors.push(error) });
  queue.request();
  await within(5_000, queue.idle);
  queue.request();
  await within(5_000, queue.idle);
  assert.equal(runs, 2);
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof RangeError);
});

Deno.test("parseConfig() never echoes a password from a misplaced object", () => {
  for (
    const config of [
      { sentinels: ["127.0.0.1:26379"], databases: { masterAuth: { password: "hunter2" } } },
      { sentinels: ["127.0.0.1:26379", { password: "hunter2" }], databases: [] },
      { sentinels: ["127.0.0.1:26379"], databases: [[{ password: "hunter2" }]] },
    ]
  ) {
    const error = configError(JSON.stringify(config));
    assert.ok(!error.message.includes("hunter2"), error.message);
    assert.match(error.message, /(an object with keys|a list of \d+ item)/);
  }
});

// TLS: files are read when the config is validated. The contents need only look like PEM here.

const CA_PEM = "-----BEGIN CERTIFICATE-----\nQ0EtQ0VSVA==\n-----END CERTIFICATE-----\n";
const CLIENT_CERT_PEM =
  "-----BEGIN CERTIFICATE-----\nQ0xJRU5ULUNFUlQ=\n-----END CERTIFICATE-----\n";
const CLIENT_KEY_PEM =
  "-----BEGIN PRIVATE KEY-----\nCLIENT-KEY-SECRET\n-----END PRIVATE KEY-----\n";
const SERVER_CERT_PEM =
  "-----BEGIN CERTIFICATE-----\nU0VSVkVSLUNFUlQ=\n-----END CERTIFICATE-----\n";
const SERVER_KEY_PEM =
  "-----BEGIN EC PRIVATE KEY-----\nSERVER-KEY-SECRET\n-----END EC PRIVATE KEY-----\n";

/** Runs `fn` with a temporary directory that holds PEM-looking files and some that are not PEM. */
async function withPemDirectory(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "tls-config-" }));
  try {
    const files: Record<string, string> = {
      "ca.pem": CA_PEM,
      "other-ca.pem": CA_PEM,
      "client.crt": CLIENT_CERT_PEM,
      "client.key": CLIENT_KEY_PEM,
      "server.crt": SERVER_CERT_PEM,
      "server.key": SERVER_KEY_PEM,
      "notes.txt": "NOT-PEM-SECRET-TEXT\n",
      "encrypted.key":
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nENCRYPTED-SECRET\n-----END ENCRYPTED PRIVATE KEY-----\n",
    };
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, text);
    }
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Parses `config` (an object) with relative TLS paths taken from `dir`. */
function parseIn(dir: string, config: Record<string, unknown>, env: Record<string, string> = {}) {
  return parseConfig(JSON.stringify(config), SOURCE, {
    getEnv: (name) => env[name],
    baseDirectory: dir,
  });
}

/** The problems (without the source) that parsing `config` in `dir` reports. */
function problemsIn(dir: string, config: Record<string, unknown>): string[] {
  try {
    parseIn(dir, config);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `not a ConfigError: ${error}`);
    return error.problems.map((line) => line.slice(`${SOURCE}: `.length));
  }
  assert.fail("parseConfig() did not throw");
}

const BASE = { sentinels: ["127.0.0.1:26379"] };

Deno.test({
  name: "loadConfig() reads the TLS files, relative to the config file's directory",
  permissions: { read: true, write: true },
  async fn() {
    await withPemDirectory(async (dir) => {
      const path = `${dir}/tunnel.jsonc`;
      await Deno.writeTextFile(
        path,
        JSON.stringify({
          ...BASE,
          tls: {
            caFile: "ca.pem",
            certFile: "./client.crt",
            keyFile: `${dir}/client.key`,
            serverName: "redis.internal",
          },
          listenTls: { certFile: "server.crt", keyFile: "server.key" },
          databases: [{ name: "mymaster", port: 6380 }],
        }),
      );
      // The current directory is not `dir`: the paths resolve against the file's directory.
      assert.notEqual(Deno.cwd(), dir);
      const config = await loadConfig(path, { getEnv: noEnv });
      const tls = {
        caFile: `${dir}/ca.pem`,
        ca: CA_PEM,
        certFile: `${dir}/client.crt`,
        cert: CLIENT_CERT_PEM,
        keyFile: `${dir}/client.key`,
        key: CLIENT_KEY_PEM,
        serverName: "redis.internal",
        verify: true,
      };
      assert.deepEqual(config.sentinelTls, tls);
      assert.deepEqual(config.databases[0]?.tls, tls);
      assert.deepEqual(config.databases[0]?.listenTls, {
        certFile: `${dir}/server.crt`,
        cert: SERVER_CERT_PEM,
        keyFile: `${dir}/server.key`,
        key: SERVER_KEY_PEM,
      });
    });
  },
});

Deno.test({
  name: "parseConfig() resolves TLS: {} is the default roots, verified; no tls is plaintext",
  permissions: { read: true, write: true },
  async fn() {
    await withPemDirectory((dir) => {
      const plain = parseIn(dir, { ...BASE, databases: [{ name: "m", port: 6380 }] });
      assert.equal(plain.sentinelTls, undefined);
      assert.equal(plain.databases[0]?.tls, undefined);
      assert.equal(plain.databases[0]?.listenTls, undefined);
      assert.ok(!("tls" in plain.databases[0]!) && !("sentinelTls" in plain));
      const defaults = parseIn(dir, { ...BASE, tls: {}, databases: [{ name: "m", port: 6380 }] });
      assert.deepEqual(defaults.sentinelTls, { verify: true });
      assert.deepEqual(defaults.databases[0]?.tls, { verify: true });
      const unverified = parseIn(dir, {
        ...BASE,
        tls: { verify: false, serverName: "10.0.0.5" },
        databases: [{ name: "m", port: 6380 }],
      });
      assert.deepEqual(unverified.sentinelTls, { serverName: "10.0.0.5", verify: false });
    });
  },
});

Deno.test({
  name:
    "parseConfig() inherits tls, sentinelTls and listenTls: absent inherits, false is off, an object replaces",
  permissions: { read: true, write: true },
  async fn() {
    await withPemDirectory((dir) => {
      const top = { caFile: "ca.pem", serverName: "redis.internal" };
      const topResolved = {
        caFile: `${dir}/ca.pem`,
        ca: CA_PEM,
        serverName: "redis.internal",
        verify: true,
      };
      const listen = { certFile: "server.crt", keyFile: "server.key" };
      const listenResolved = {
        certFile: `${dir}/server.crt`,
        cert: SERVER_CERT_PEM,
        keyFile: `${dir}/server.key`,
        key: SERVER_KEY_PEM,
      };
      const databases = [
        { name: "inherits", port: 6380 },
        { name: "plain", port: 6381, tls: false, listenTls: false },
        // Replaces the top-level object: no serverName, no caFile from it.
        {
          name: "own",
          port: 6382,
          tls: { caFile: "other-ca.pem", verify: false },
          listenTls: { certFile: "client.crt", keyFile: "client.key" },
        },
      ];
      const config = parseIn(dir, { ...BASE, tls: top, listenTls: listen, databases });
      assert.deepEqual(config.sentinelTls, topResolved);
      const [inherits, plain, own] = config.databases;
      assert.deepEqual(inherits?.tls, topResolved);
      assert.deepEqual(inherits?.listenTls, listenResolved);
      assert.equal(plain?.tls, undefined);
      assert.equal(plain?.listenTls, undefined);
      assert.deepEqual(own?.tls, { caFile: `${dir}/other-ca.pem`, ca: CA_PEM, verify: false });
      assert.deepEqual(own?.listenTls, {
        certFile: `${dir}/client.crt`,
        cert: CLIENT_CERT_PEM,
        keyFile: `${dir}/client.key`,
        key: CLIENT_KEY_PEM,
      });

      // sentinelTls false: plaintext Sentinels, TLS masters.
      const plainSentinels = parseIn(dir, { ...BASE, tls: top, sentinelTls: false, databases });
      assert.equal(plainSentinels.sentinelTls, undefined);
      assert.deepEqual(plainSentinels.databases[0]?.tls, topResolved);
      // sentinelTls an object: replaces tls for the Sentinels only.
      const ownSentinels = parseIn(dir, {
        ...BASE,
        tls: top,
        sentinelTls: { certFile: "client.crt", keyFile: "client.key" },
        databases,
      });
      assert.deepEqual(ownSentinels.sentinelTls, {
        certFile: `${dir}/client.crt`,
        cert: CLIENT_CERT_PEM,
        keyFile: `${dir}/client.key`,
        key: CLIENT_KEY_PEM,
        verify: true,
      });
      assert.deepEqual(ownSentinels.databases[0]?.tls, topResolved);
      // TLS to the Sentinels and one master only, without a top-level tls.
      const some = parseIn(dir, {
        ...BASE,
        sentinelTls: {},
        databases: [{ name: "a", port: 6380 }, { name: "b", port: 6381, tls: {} }],
      });
      assert.deepEqual(some.sentinelTls, { verify: true });
      assert.equal(some.databases[0]?.tls, undefined);
      assert.deepEqual(some.databases[1]?.tls, { verify: true });
      // A per-database listenTls without a top-level one.
      const oneListener = parseIn(dir, {
        ...BASE,
        databases: [{ name: "a", port: 6380 }, { name: "b", port: 6381, listenTls: listen }],
      });
      assert.equal(oneListener.databases[0]?.listenTls, undefined);
      assert.deepEqual(oneListener.databases[1]?.listenTls, listenResolved);
    });
  },
});

Deno.test({
  name:
    "parseConfig() refuses entries of one master name with different TLS to the master, and takes the same files written twice",
  permissions: { read: true, write: true },
  async fn() {
    await withPemDirectory((dir) => {
      const tls = { caFile: "ca.pem", serverName: "redis.internal" };
      const same = parseIn(dir, {
        ...BASE,
        tls,
        databases: [
          { name: "m", port: 6380 },
          { name: "m", port: 6381, role: "replica", tls: { ...tls } },
        ],
      });
      assert.deepEqual(same.databases[1]?.tls, same.databases[0]?.tls);
      const problems = problemsIn(dir, {
        ...BASE,
        tls,
        databases: [
          { name: "m", port: 6380 },
          { name: "m", port: 6381, role: "replica", tls: { ...tls, serverName: "other" } },
        ],
      });
      assert.equal(problems.length, 1);
      assert.match(
        problems[0]!,
        /^databases\[1\]\.tls: tls differs from databases\[0\] \("m", role "master", 127\.0\.0\.1:6380\): /,
      );
    });
  },
});

Deno.test({
  name: "parseConfig() names the field, the path and the fix for each TLS file it cannot use",
  permissions: { read: true, write: true },
  async fn() {
    await withPemDirectory((dir) => {
      const problems = problemsIn(dir, {
        ...BASE,
        tls: { caFile: "missing.pem", certFile: "notes.txt", keyFile: "ca.pem" },
        sentinelTls: { caFile: `${dir}/client.key` },
        listenTls: { certFile: dir, keyFile: "encrypted.key" },
        databases: [{ name: "m", port: 6380, tls: { caFile: `${dir}/gone/ca.pem` } }],
      });
      const rel = (given: string) => `"${dir}/${given}" ("${given}" relative to "${dir}")`;
      assert.deepEqual(problems, [
        `tls.caFile: cannot read ${
          rel("missing.pem")
        }: No such file or directory; fix the path or the file's permissions`,
        `tls.certFile: ${
          rel("notes.txt")
        } is not a PEM certificate: it holds no "-----BEGIN CERTIFICATE-----" block; give the certificate chain in PEM (openssl x509 -inform der -in cert.der -out cert.pem converts DER)`,
        `tls.keyFile: ${
          rel("ca.pem")
        } is not a PEM private key: it holds no "-----BEGIN ... PRIVATE KEY-----" block; give the unencrypted key in PEM`,
        `sentinelTls.caFile: "${dir}/client.key" is not a PEM certificate: it holds no "-----BEGIN CERTIFICATE-----" block; give the CA certificates in PEM (openssl x509 -inform der -in cert.der -out cert.pem converts DER)`,
        `listenTls.certFile: cannot read "${dir}": it is a directory, not a file; fix the path or the file's permissions`,
        `listenTls.keyFile: ${
          rel("encrypted.key")
        } is an encrypted private key, which needs a passphrase the tunnel cannot take; decrypt it (openssl pkey -in key.pem -out plain-key.pem) and keep that file readable by this user only`,
        `databases[0].tls.caFile: cannot read "${dir}/gone/ca.pem": No such file or directory; fix the path or the file's permissions`,
      ]);
      // No file's contents reach a message.
      for (const secret of ["NOT-PEM-SECRET-TEXT", "CLIENT-KEY-SECRET", "ENCRYPTED-SECRET"]) {
        assert.ok(!problems.join("\n").includes(secret), secret);
      }
    });
  },
});

Deno.test({
  name: "parseConfig() refuses a relative TLS path that is not in the config's directory",
  permissions: { read: true, write: true },
  async fn() {
    await withPemDirectory(async (dir) => {
      await Deno.mkdir(`${dir}/conf`);
      await Deno.writeTextFile(
        `${dir}/conf/tunnel.jsonc`,
        JSON.stringify({ ...BASE, tls: { caFile: "ca.pem" }, databases: [{ name: "m", port: 1 }] }),
      );
      // ca.pem is next to conf/, not in it.
      assert.equal(
        await loadError(`${dir}/conf/tunnel.jsonc`),
        `${dir}/conf/tunnel.jsonc: tls.caFile: cannot read "${dir}/conf/ca.pem" ("ca.pem" relative to "${dir}/conf"): No such file or directory; fix the path or the file's permissions`,
      );
      await Deno.writeTextFile(
        `${dir}/conf/tunnel.jsonc`,
        JSON.stringify({
          ...BASE,
          tls: { caFile: "../ca.pem" },
          databases: [{ name: "m", port: 1 }],
        }),
      );
      const config = await loadConfig(`${dir}/conf/tunnel.jsonc`, { getEnv: noEnv });
      assert.equal(config.sentinelTls?.caFile, `${dir}/ca.pem`);
    });
  },
});

Deno.test("parseConfig() refuses certFile without keyFile, a bad serverName and malformed TLS objects", () => {
  const problems = (config: Record<string, unknown>) =>
    configError(JSON.stringify({ ...BASE, databases: [{ name: "m", port: 6380 }], ...config }))
      .problems;
  const pair =
    '"certFile" and "keyFile" go together: give both (the client certificate and its private key) or neither';
  assert.deepEqual(problems({ tls: { certFile: "/etc/c.crt" } }), [
    `${SOURCE}: tls.keyFile: missing: ${pair}`,
  ]);
  assert.deepEqual(problems({ sentinelTls: { keyFile: "/etc/c.key" } }), [
    `${SOURCE}: sentinelTls.certFile: missing: ${pair}`,
  ]);
  assert.deepEqual(problems({ tls: { serverName: "not a host!" } }), [
    `${SOURCE}: tls.serverName: "not a host!" is not valid: serverName is a host name or IP address that the certificates name, such as "redis.internal"`,
  ]);
  assert.deepEqual(problems({ tls: false }), [
    `${SOURCE}: tls: false is not valid: tls is an object, such as { "caFile": "/etc/redis/tls/ca.crt" }; {} is TLS with the default roots`,
  ]);
  assert.deepEqual(problems({ tls: { caFile: "", verify: "no" } }), [
    `${SOURCE}: tls.caFile: "" is not valid: a file path is a non-empty string, such as "/etc/redis/tls/ca.crt"`,
    `${SOURCE}: tls.verify: "no" is not valid: verify is true or false`,
  ]);
  assert.deepEqual(problems({ sentinelTls: true }), [
    `${SOURCE}: sentinelTls: true is not valid: sentinelTls is false (plaintext) or an object, such as { "caFile": "/etc/redis/tls/ca.crt" }`,
  ]);
  // Inside `false or an object`, an object's own problems are named, not the union's rule.
  assert.deepEqual(
    problems({
      databases: [{ name: "m", port: 6380, tls: { cafile: "/x", serverName: "a b" } }],
    }),
    [
      `${SOURCE}: databases[0].tls.serverName: "a b" is not valid: serverName is a host name or IP address that the certificates name, such as "redis.internal"`,
      `${SOURCE}: databases[0].tls: unknown key "cafile": did you mean "caFile"? (known keys: caFile, certFile, keyFile, serverName, verify)`,
    ],
  );
  assert.deepEqual(
    problems({ databases: [{ name: "m", port: 6380, tls: { serverName: "a b" } }] }),
    [
      `${SOURCE}: databases[0].tls.serverName: "a b" is not valid: serverName is a host name or IP address that the certificates name, such as "redis.internal"`,
    ],
  );
  assert.deepEqual(problems({ listenTls: { certFile: "/etc/s.crt" } }), [
    `${SOURCE}: listenTls.keyFile: missing: listenTls needs "keyFile": the private key of "certFile" (PEM)`,
  ]);
  assert.deepEqual(problems({ databases: [{ name: "m", port: 6380, listenTls: {} }] }), [
    `${SOURCE}: databases[0].listenTls.certFile: missing: listenTls needs "certFile": the certificate chain the port serves (PEM)`,
    `${SOURCE}: databases[0].listenTls.keyFile: missing: listenTls needs "keyFile": the private key of "certFile" (PEM)`,
  ]);
  assert.deepEqual(problems({ databases: [{ name: "m", port: 6380, listenTls: "on" }] }), [
    `${SOURCE}: databases[0].listenTls: "on" is not valid: listenTls is false (plaintext) or an object with "certFile" and "keyFile", such as { "certFile": "/etc/sentinel-tunnel/tls.crt", "keyFile": "/etc/sentinel-tunnel/tls.key" }`,
  ]);
  // The original format has no TLS.
  assert.match(
    configError(JSON.stringify({
      Sentinels_addresses_list: ["127.0.0.1:26379"],
      Databases: [{ Name: "db1", Local_port: "12345" }],
      tls: {},
    })).message,
    /^test\.jsonc: top level: unknown key "tls"/,
  );
});

Deno.test("parseConfig() reads each TLS file once per validation, and again on the next", () => {
  const reads: string[] = [];
  const readTextFile = (path: string) => {
    reads.push(path);
    return path.endsWith(".key") ? CLIENT_KEY_PEM : CA_PEM;
  };
  const text = JSON.stringify({
    ...BASE,
    tls: { caFile: "/tls/ca.pem", certFile: "/tls/c.crt", keyFile: "/tls/c.key" },
    sentinelTls: { caFile: "/tls/ca.pem" },
    listenTls: { certFile: "/tls/c.crt", keyFile: "/tls/c.key" },
    databases: [
      { name: "a", port: 6380 },
      { name: "b", port: 6381, tls: { caFile: "/tls/../tls/ca.pem" } },
    ],
  });
  const options = { getEnv: noEnv, readTextFile };
  const first = parseConfig(text, SOURCE, options);
  assert.deepEqual(reads, ["/tls/ca.pem", "/tls/c.crt", "/tls/c.key"]);
  assert.equal(first.databases[1]?.tls?.caFile, "/tls/ca.pem");
  // A reload validates again, and so reads the (possibly rotated) files again.
  parseConfig(text, SOURCE, options);
  assert.equal(reads.length, 6);
});

Deno.test("redactConfig() shows TLS file paths, serverName and verify, never PEM text", () => {
  const secrets = ["CA-TEXT-SECRET", "CERT-TEXT-SECRET", "KEY-TEXT-SECRET", "LISTEN-KEY-SECRET"];
  const readTextFile = (path: string) =>
    path.includes("listen")
      ? `-----BEGIN PRIVATE KEY-----\nLISTEN-KEY-SECRET\n-----END PRIVATE KEY-----\n-----BEGIN CERTIFICATE-----\n`
      : path.endsWith(".key")
      ? `-----BEGIN RSA PRIVATE KEY-----\nKEY-TEXT-SECRET\n-----END RSA PRIVATE KEY-----\n`
      : path.endsWith("ca.pem")
      ? `-----BEGIN CERTIFICATE-----\nCA-TEXT-SECRET\n-----END CERTIFICATE-----\n`
      : `-----BEGIN CERTIFICATE-----\nCERT-TEXT-SECRET\n-----END CERTIFICATE-----\n`;
  const config = parseConfig(
    JSON.stringify({
      ...BASE,
      tls: {
        caFile: "/tls/ca.pem",
        certFile: "/tls/c.crt",
        keyFile: "/tls/c.key",
        serverName: "redis.internal",
      },
      sentinelTls: { verify: false },
      listenTls: { certFile: "/tls/listen.pem", keyFile: "/tls/listen.pem" },
      databases: [{ name: "a", port: 6380 }, { name: "b", port: 6381, tls: false }],
    }),
    SOURCE,
    { getEnv: noEnv, readTextFile },
  );
  // The secrets are in the resolved config, so that they can be handed to TLS.
  assert.ok(config.databases[0]?.tls?.key?.includes("KEY-TEXT-SECRET"));
  assert.ok(config.databases[0]?.listenTls?.key.includes("LISTEN-KEY-SECRET"));
  const text = JSON.stringify(redactConfig(config));
  for (const secret of [...secrets, "-----BEGIN", "PRIVATE KEY"]) {
    assert.ok(!text.includes(secret), `${secret} appears in ${text}`);
  }
  const redacted = JSON.parse(text);
  assert.deepEqual(redacted.sentinelTls, { verify: false });
  assert.deepEqual(redacted.databases[0].tls, {
    caFile: "/tls/ca.pem",
    certFile: "/tls/c.crt",
    keyFile: "/tls/c.key",
    serverName: "redis.internal",
    verify: true,
  });
  assert.deepEqual(redacted.databases[0].listenTls, {
    certFile: "/tls/listen.pem",
    keyFile: "/tls/listen.pem",
  });
  assert.equal(redacted.databases[1].tls, undefined);
  assert.deepEqual(redacted.databases[1].listenTls, redacted.databases[0].listenTls);
});

Deno.test("redactConfig() shows no TLS text even for a config built by hand with odd fields", () => {
  // Only named fields are copied: a key text anywhere in the settings cannot leak.
  const key = "-----BEGIN PRIVATE KEY-----\nHAND-MADE-SECRET\n-----END PRIVATE KEY-----";
  const base = parse(documented());
  const config: TunnelConfig = {
    ...base,
    sentinelTls: { ca: key, cert: key, key, verify: true, extra: key } as TlsClientSettings,
    databases: base.databases.map((db) => ({
      ...db,
      tls: { key, verify: true },
      listenTls: { certFile: "/c", cert: key, keyFile: "/k", key, extra: key } as never,
    })),
  };
  const text = JSON.stringify(redactConfig(config));
  assert.ok(!text.includes("HAND-MADE-SECRET"), text);
  assert.ok(!text.includes("PRIVATE KEY"), text);
});

Deno.test("configWarnings() names each place where verify is false", () => {
  const readTextFile = () => CA_PEM;
  const config = (extra: Record<string, unknown>) =>
    parseConfig(
      JSON.stringify({
        ...BASE,
        databases: [{ name: "mymaster", port: 6380 }, { name: "other", port: 6381 }],
        ...extra,
      }),
      SOURCE,
      { getEnv: noEnv, readTextFile },
    );
  const sentinels =
    'tls.verify is false for the Sentinels: their certificates are not checked, so anyone on the network path can pose as a Sentinel and name any master; set "verify": true and give "caFile"';
  const database = (name: string) =>
    `tls.verify is false for database "${name}": the master's certificate is not checked, so anyone on the network path can pose as it; set "verify": true and give "caFile"`;
  assert.deepEqual(configWarnings(config({})), []);
  assert.deepEqual(configWarnings(config({ tls: {} })), []);
  assert.deepEqual(configWarnings(config({ tls: { verify: false } })), [
    sentinels,
    database("mymaster"),
    database("other"),
  ]);
  assert.deepEqual(
    configWarnings(config({
      tls: { caFile: "/ca.pem" },
      databases: [
        { name: "mymaster", port: 6380, tls: { verify: false } },
        { name: "other", port: 6381, tls: false },
      ],
    })),
    [database("mymaster")],
  );
  assert.deepEqual(
    configWarnings(config({ tls: { verify: false }, sentinelTls: false })),
    [database("mymaster"), database("other")],
  );
  const fromEnvironment = configFromEnvironment({
    SENTINEL_TUNNEL_SENTINELS: "127.0.0.1:26379",
    SENTINEL_TUNNEL_DATABASES: "mymaster:6380",
    SENTINEL_TUNNEL_TLS_VERIFY: "false",
  })!;
  assert.deepEqual(configWarnings(fromEnvironment), [
    "SENTINEL_TUNNEL_TLS_VERIFY is false for the Sentinels: their certificates are not checked, so anyone on the network path can pose as a Sentinel and name any master; unset SENTINEL_TUNNEL_TLS_VERIFY (or set it to true) and set SENTINEL_TUNNEL_TLS_CA_FILE",
    'SENTINEL_TUNNEL_TLS_VERIFY is false for database "mymaster": the master\'s certificate is not checked, so anyone on the network path can pose as it; unset SENTINEL_TUNNEL_TLS_VERIFY (or set it to true) and set SENTINEL_TUNNEL_TLS_CA_FILE',
  ]);
});

const ENV_BASE = {
  SENTINEL_TUNNEL_SENTINELS: "127.0.0.1:26379",
  SENTINEL_TUNNEL_DATABASES: "mymaster:6380",
};

Deno.test({
  name: "configFromEnvironment() turns TLS on from SENTINEL_TUNNEL_TLS and SENTINEL_TUNNEL_TLS_*",
  permissions: { read: true, write: true, env: true },
  async fn() {
    await withPemDirectory((dir) => {
      const options = { baseDirectory: dir };
      const none = configFromEnvironment(ENV_BASE, options)!;
      assert.equal(none.sentinelTls, undefined);
      assert.equal(none.databases[0]?.tls, undefined);
      const on = configFromEnvironment({ ...ENV_BASE, SENTINEL_TUNNEL_TLS: "true" }, options)!;
      assert.deepEqual(on.sentinelTls, { verify: true });
      assert.deepEqual(on.databases[0]?.tls, { verify: true });
      const off = configFromEnvironment({ ...ENV_BASE, SENTINEL_TUNNEL_TLS: "FALSE" }, options)!;
      assert.equal(off.databases[0]?.tls, undefined);
      const full = configFromEnvironment({
        ...ENV_BASE,
        SENTINEL_TUNNEL_TLS_CA_FILE: "ca.pem",
        SENTINEL_TUNNEL_TLS_CERT_FILE: `${dir}/client.crt`,
        SENTINEL_TUNNEL_TLS_KEY_FILE: "client.key",
        SENTINEL_TUNNEL_TLS_SERVER_NAME: "redis.internal",
        SENTINEL_TUNNEL_TLS_VERIFY: "true",
        SENTINEL_TUNNEL_SENTINEL_TLS: "false",
        SENTINEL_TUNNEL_LISTEN_TLS_CERT_FILE: "server.crt",
        SENTINEL_TUNNEL_LISTEN_TLS_KEY_FILE: "server.key",
        // Empty counts as unset.
        SENTINEL_TUNNEL_TLS: "",
      }, options)!;
      assert.equal(full.format, "environment");
      assert.equal(full.sentinelTls, undefined);
      assert.deepEqual(full.databases[0]?.tls, {
        caFile: `${dir}/ca.pem`,
        ca: CA_PEM,
        certFile: `${dir}/client.crt`,
        cert: CLIENT_CERT_PEM,
        keyFile: `${dir}/client.key`,
        key: CLIENT_KEY_PEM,
        serverName: "redis.internal",
        verify: true,
      });
      assert.deepEqual(full.databases[0]?.listenTls, {
        certFile: `${dir}/server.crt`,
        cert: SERVER_CERT_PEM,
        keyFile: `${dir}/server.key`,
        key: SERVER_KEY_PEM,
      });
      // Without a baseDirectory, relative paths are relative to the current directory.
      const here = configFromEnvironment({
        ...ENV_BASE,
        SENTINEL_TUNNEL_TLS_CA_FILE: "ca.pem",
      }, { readTextFile: () => CA_PEM })!;
      assert.equal(here.sentinelTls?.caFile, `${Deno.cwd()}/ca.pem`);
    });
  },
});

Deno.test("configFromEnvironment() names the TLS variable of each problem", () => {
  const problems = (env: Record<string, string>) => {
    try {
      configFromEnvironment({ ...ENV_BASE, ...env }, {
        baseDirectory: "/tls",
        readTextFile: (path) => {
          if (path === "/tls/missing.pem") throw new Deno.errors.NotFound("gone");
          return path.endsWith(".key") ? CLIENT_KEY_PEM : "NOT PEM AT ALL";
        },
      });
    } catch (error) {
      assert.ok(error instanceof ConfigError, `not a ConfigError: ${error}`);
      return error.problems;
    }
    assert.fail("configFromEnvironment() did not throw");
  };
  assert.deepEqual(
    problems({ SENTINEL_TUNNEL_TLS: "false", SENTINEL_TUNNEL_TLS_CA_FILE: "/tls/ca.pem" }),
    [
      "environment: SENTINEL_TUNNEL_TLS: is false, but SENTINEL_TUNNEL_TLS_CA_FILE is set, which turns TLS on: a contradiction; unset SENTINEL_TUNNEL_TLS to use TLS, or unset that for plaintext",
    ],
  );
  assert.deepEqual(
    problems({ SENTINEL_TUNNEL_TLS: "yes", SENTINEL_TUNNEL_TLS_VERIFY: "0" }),
    [
      'environment: SENTINEL_TUNNEL_TLS_VERIFY: "0" is not valid: give true or false',
      'environment: SENTINEL_TUNNEL_TLS: "yes" is not valid: give true or false',
    ],
  );
  assert.deepEqual(problems({ SENTINEL_TUNNEL_SENTINEL_TLS: "true" }), [
    "environment: SENTINEL_TUNNEL_SENTINEL_TLS: is true, but TLS is off: set SENTINEL_TUNNEL_TLS=true, or a SENTINEL_TUNNEL_TLS_* variable, to turn it on",
  ]);
  assert.deepEqual(problems({ SENTINEL_TUNNEL_TLS_CERT_FILE: "/tls/c.crt" }), [
    "environment: SENTINEL_TUNNEL_TLS_KEY_FILE: missing: SENTINEL_TUNNEL_TLS_CERT_FILE is set, and a client certificate needs both a certificate and its private key; set both or neither",
  ]);
  assert.deepEqual(problems({ SENTINEL_TUNNEL_LISTEN_TLS_KEY_FILE: "/tls/s.key" }), [
    "environment: SENTINEL_TUNNEL_LISTEN_TLS_CERT_FILE: missing: SENTINEL_TUNNEL_LISTEN_TLS_KEY_FILE is set, and TLS on the local ports needs both a certificate and its private key; set both or neither",
  ]);
  assert.deepEqual(
    problems({
      SENTINEL_TUNNEL_TLS_CA_FILE: "missing.pem",
      SENTINEL_TUNNEL_TLS_SERVER_NAME: "not a name",
    }),
    [
      'environment: SENTINEL_TUNNEL_TLS_SERVER_NAME: "not a name" is not valid: serverName is a host name or IP address that the certificates name, such as "redis.internal"',
    ],
  );
  assert.deepEqual(
    problems({
      SENTINEL_TUNNEL_TLS_CA_FILE: "missing.pem",
      SENTINEL_TUNNEL_LISTEN_TLS_CERT_FILE: "/tls/s.crt",
      SENTINEL_TUNNEL_LISTEN_TLS_KEY_FILE: "/tls/s.key",
    }),
    [
      'environment: SENTINEL_TUNNEL_TLS_CA_FILE: cannot read "/tls/missing.pem" ("missing.pem" relative to "/tls"): No such file or directory; fix the path or the file\'s permissions',
      'environment: SENTINEL_TUNNEL_LISTEN_TLS_CERT_FILE: "/tls/s.crt" is not a PEM certificate: it holds no "-----BEGIN CERTIFICATE-----" block; give the certificate chain in PEM (openssl x509 -inform der -in cert.der -out cert.pem converts DER)',
    ],
  );
});

Deno.test("config/example.jsonc: its commented TLS settings are valid once uncommented", async () => {
  const text = await Deno.readTextFile(new URL("../config/example.jsonc", import.meta.url));
  // Each top-level `// "tls": ...` setting, through the line where its brackets close.
  const settings: string[] = [];
  let depth = 0;
  let current: string[] | undefined;
  for (const line of text.split("\n")) {
    const code = /^ {2}\/\/ ?(.*)$/.exec(line)?.[1];
    if (current === undefined) {
      if (code === undefined || !/^"(tls|sentinelTls|listenTls)":/.test(code)) continue;
      current = [];
      depth = 0;
    }
    assert.ok(code !== undefined, `not commented: ${line}`);
    current.push(code.replace(/\s\/\/.*$/, ""));
    depth += (code.match(/[{[]/g) ?? []).length - (code.match(/[}\]]/g) ?? []).length;
    if (depth === 0) {
      settings.push(current.join("\n").replace(/,\s*$/, ""));
      current = undefined;
    }
  }
  assert.deepEqual(settings.map((s) => s.slice(0, s.indexOf(":"))), [
    '"tls"',
    '"sentinelTls"',
    '"listenTls"',
  ]);
  const config = parseConfig(
    `{ "sentinels": ["127.0.0.1:26379"], "databases": [{ "name": "m", "port": 6380 }], ${
      settings.join(",\n")
    } }`,
    "example.jsonc",
    {
      getEnv: noEnv,
      readTextFile: (path) => path.endsWith(".key") ? CLIENT_KEY_PEM : CA_PEM,
    },
  );
  assert.equal(config.sentinelTls, undefined);
  assert.equal(config.databases[0]?.tls?.serverName, "redis.internal");
  assert.equal(config.databases[0]?.listenTls?.certFile, "/etc/sentinel-tunnel/tls.crt");
});

Deno.test("parseConfig() reads the write fence: off by default, top level for every database, false per database", () => {
  assert.equal(parse(documented()).databases[0]!.fence, undefined);
  const config = parse(documented({
    fence: { afterMs: 5000 },
    databases: [
      { name: "a", port: 6380 },
      { name: "a", port: 6381, role: "replica" },
      { name: "b", port: 6382, fence: false },
      { name: "c", port: 6383, fence: { afterMs: 2500 } },
    ],
  }));
  assert.deepEqual(config.databases.map((d) => d.fence), [
    { afterMs: 5000 },
    { afterMs: 5000 },
    undefined,
    { afterMs: 2500 },
  ]);
  const redacted = redactConfig(config) as { databases: Record<string, unknown>[] };
  assert.deepEqual(redacted.databases.map((d) => d.fence), [
    { afterMs: 5000 },
    { afterMs: 5000 },
    false,
    { afterMs: 2500 },
  ]);
});

Deno.test("parseConfig() refuses a fence that is not { afterMs } within bounds, saying what it takes", () => {
  for (const fence of [{ afterMs: 10 }, { afterMs: 1.5e7 }, { after: 1000 }, true, 5000]) {
    const error = configError(documented({ fence }));
    assert.match(
      error.message,
      /fence is false \(off\) or \{ "afterMs": N \}, N a whole number of milliseconds from 100 to 3600000/,
      JSON.stringify(fence),
    );
  }
});

Deno.test("parseConfig() refuses a fence that would close between two healthy checks", () => {
  const error = configError(documented({ fence: { afterMs: 2000 } }));
  assert.ok(
    error.problems.includes(
      `${SOURCE}: fence.afterMs: 2000 is too short for databases[0] ("mymaster", role "master"): the Sentinels are asked every pollIntervalMs (1000) and answer within sentinelConnectMs + sentinelReplyMs (1000), so the fence would close between two healthy checks; give it more than 2000 ms`,
    ),
    error.message,
  );
  const own = configError(JSON.stringify({
    sentinels: ["127.0.0.1:26379"],
    timeouts: { pollIntervalMs: 200 },
    databases: [{ name: "a", port: 6380, fence: { afterMs: 1000 } }],
  }));
  assert.match(
    own.message,
    /databases\[0\]\.fence\.afterMs: 1000 is too short: .*more than 1200 ms/,
  );
  assert.equal(
    parse(documented({ fence: { afterMs: 2001 } })).databases[0]!.fence?.afterMs,
    2001,
  );
});

Deno.test({
  name:
    "parseConfig() resolves preconnect: 4 with TLS to the master, else 0; top level and per entry; not on read ports",
  permissions: { read: true, write: true },
  async fn() {
    await withPemDirectory((dir) => {
      const config = parseIn(dir, {
        ...BASE,
        databases: [
          { name: "plain", port: 6380 },
          { name: "secure", port: 6381, tls: {} },
          { name: "secure-off", port: 6382, tls: {}, preconnect: 0 },
          { name: "plain-on", port: 6383, preconnect: 16 },
          { name: "plain", port: 6384, role: "replica" },
        ],
      });
      assert.deepEqual(config.databases.map((d) => d.preconnect), [0, 4, 0, 16, 0]);
      const topLevel = parseIn(dir, {
        ...BASE,
        tls: {},
        preconnect: 2,
        databases: [{ name: "a", port: 6380 }, { name: "a", port: 6381, role: "replica" }],
      });
      assert.deepEqual(topLevel.databases.map((d) => d.preconnect), [2, 0]);
      assert.deepEqual(
        problemsIn(dir, {
          ...BASE,
          databases: [
            { name: "a", port: 6380, role: "replica", preconnect: 2 },
            { name: "b", port: 6381, preconnect: 1001 },
            { name: "c", port: 6382, preconnect: 1.5 },
          ],
        }),
        [
          'databases[0].preconnect: 2 is not valid: preconnect applies to "role": "master" entries only, and database "a" on port 6380 is a read port ("role": "replica"); remove preconnect, or add it to the name\'s master entry',
          "databases[1].preconnect: 1001 is not valid: preconnect is a whole number of connections from 0 to 1000",
          "databases[2].preconnect: 1.5 is not valid: preconnect is a whole number of connections from 0 to 1000",
        ],
      );
    });
  },
});
