import assert from "node:assert/strict";
import {
  ConfigError,
  configFromEnvironment,
  loadConfig,
  parseConfig,
  redactConfig,
} from "../src/ops/config.ts";
import { DEFAULT_BIND, DEFAULT_TIMEOUTS, type TunnelConfig } from "../src/shared/settings.ts";

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
      timeouts: DEFAULT_TIMEOUTS,
      maxClients: 10_000,
      tcpKeepAlive: true,
    }],
    maxSentinels: 16,
    maxClients: 10_000,
  });
  assert.equal(DEFAULT_BIND, "127.0.0.1");
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
      timeouts: DEFAULT_TIMEOUTS,
      maxClients: 10_000,
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
    masterAuth: { password: "global-pw", passwordSource: "config" },
    timeouts,
    maxClients: 10_000,
    tcpKeepAlive: true,
  });
  assert.deepEqual(b, {
    name: "b",
    bind: "10.1.2.3",
    port: 6381,
    masterAuth: {
      username: "app",
      password: "b-pw",
      passwordSource: "config",
    },
    timeouts: { ...timeouts, masterConnectMs: 300, clientWaitMs: 100 },
    maxClients: 10_000,
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

Deno.test("parseConfig() treats an empty environment variable as not set", () => {
  const error = configError(
    documented({ sentinelAuth: { passwordEnv: "EMPTY_PW" } }),
    { EMPTY_PW: "" },
  );
  assert.match(
    error.message,
    /sentinelAuth\.passwordEnv: environment variable "EMPTY_PW" is not set/,
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
    `${SOURCE}: databases[1].port: 6380 is used twice: it is also databases[0].port; give each database its own port`,
  );
});

Deno.test("parseConfig() rejects duplicate database names", () => {
  const error = configError(JSON.stringify({
    sentinels: ["127.0.0.1:26379"],
    databases: [
      { name: "a", port: 6380 },
      { name: "b", port: 6381 },
      { name: "a", port: 6382 },
    ],
  }));
  assert.equal(
    error.message,
    `${SOURCE}: databases[2].name: "a" is used twice: it is also databases[0].name; each database is listed once`,
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
      `${SOURCE}: databases[0]: unknown key "prot": did you mean "port"? (known keys: name, port, bind, masterAuth, timeouts, onMasterChange, maxClients)`,
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
      `${SOURCE}: top level: unknown key "databses": did you mean "databases"? (known keys: sentinels, bind, admin, sentinelAuth, masterAuth, timeouts, maxSentinels, maxClients, tcpKeepAlive, onMasterChange, databases)`,
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
    `${SOURCE}: Databases[1].Local_port: 6380 is used twice: it is also Databases[0].Local_port; give each database its own port`,
  );
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
        tcpKeepAlive: true,
      },
      {
        name: "b",
        listen: "127.0.0.1:6381",
        masterAuth: { password: "<redacted>" },
        timeouts: {
          masterConnectMs: 1000,
          masterReplyMs: 1000,
          clientWaitMs: 5000,
          clientIdleMs: 0,
        },
        maxClients: 10_000,
        tcpKeepAlive: true,
      },
    ],
    maxSentinels: 16,
    maxClients: 10_000,
  });
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
  const config = configFromEnvironment((name) => env[name]);
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
  assert.equal(configFromEnvironment(() => undefined), undefined);
});

Deno.test("configFromEnvironment() validates like a file and names the variable", () => {
  const env: Record<string, string> = {
    SENTINEL_TUNNEL_SENTINELS: "127.0.0.1:26379,nohostport",
    SENTINEL_TUNNEL_DATABASES: "mymaster:70000,cache",
  };
  assert.throws(() => configFromEnvironment((name) => env[name]), (error) => {
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
    () =>
      configFromEnvironment((name) => name === "SENTINEL_TUNNEL_DATABASES" ? "m:6380" : undefined),
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
  assert.throws(() => parse(documented({ timeouts: { clientIdleMs: -1 } })), {
    message: /an idle limit is a whole number of milliseconds from 0 \(off\) to 86400000/,
  });
});
