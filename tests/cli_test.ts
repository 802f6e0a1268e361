/**
 * The CLI as an operator meets it: usage, --version, --check, and a clear
 * message with a non-zero exit for every kind of bad config, before any port
 * opens. No Redis is needed.
 */
import assert from "node:assert/strict";
import { startFakeRedis } from "./_fake_redis.ts";
import { type LogRecord, runCli, startTunnel, writeConfig } from "./_tunnel.ts";

function assertNoStackTrace(stderr: string): void {
  assert.doesNotMatch(
    stderr,
    /^\s+at /m,
    `stderr has a stack trace:\n${stderr}`,
  );
}

async function assertConfigRejected(
  config: unknown,
  ...expected: (string | RegExp)[]
): Promise<string> {
  const path = await writeConfig(config);
  try {
    const { code, stdout, stderr } = await runCli([path]);
    assert.equal(
      code,
      1,
      `exit code for ${JSON.stringify(config)}; stderr:\n${stderr}`,
    );
    assert.equal(stdout, "");
    for (const text of expected) {
      if (typeof text === "string") {
        assert.ok(
          stderr.includes(text),
          `stderr lacks ${JSON.stringify(text)}:\n${stderr}`,
        );
      } else assert.match(stderr, text);
    }
    assertNoStackTrace(stderr);
    return stderr;
  } finally {
    await Deno.remove(path);
  }
}

const GOOD = {
  sentinels: ["127.0.0.1:26379"],
  databases: [{ name: "mymaster", port: 16380 }],
};

Deno.test("sentinel-tunnel --help prints usage and exits 0", async () => {
  const { code, stdout } = await runCli(["--help"]);
  assert.equal(code, 0);
  assert.match(
    stdout,
    /^Usage: sentinel-tunnel \[options\] <config> \[log-file\]/,
  );
  for (
    const option of ["--check", "--log-level", "--log-format", "--version"]
  ) assert.ok(stdout.includes(option));
});

Deno.test("sentinel-tunnel --version prints the version and the Deno version", async () => {
  const { code, stdout } = await runCli(["--version"]);
  assert.equal(code, 0);
  assert.match(
    stdout,
    /^sentinel-tunnel \d+\.\d+\.\d+ \(deno \d+\.\d+\.\d+\)\n$/,
  );
});

Deno.test("sentinel-tunnel without a config exits 2 with a hint", async () => {
  const { code, stderr } = await runCli([]);
  assert.equal(code, 2);
  assert.match(stderr, /Missing the config file argument/);
  assert.match(stderr, /--help/);
});

Deno.test("sentinel-tunnel with an unknown option exits 2 and names it", async () => {
  const { code, stderr } = await runCli(["--frobnicate", "x.jsonc"]);
  assert.equal(code, 2);
  assert.match(stderr, /--frobnicate/);
  assertNoStackTrace(stderr);
});

Deno.test("sentinel-tunnel --log-format rejects an unknown format", async () => {
  const { code, stderr } = await runCli(["--log-format", "xml", "x.jsonc"]);
  assert.equal(code, 2);
  assert.match(stderr, /Invalid --log-format "xml": use text or json/);
});

Deno.test("sentinel-tunnel --check prints the resolved config with passwords redacted", async () => {
  const path = await writeConfig(`{
    // comments and trailing commas are fine
    "sentinels": ["127.0.0.1:26379", "[::1]:26380",],
    "sentinelAuth": { "password": "s3cret-sentinel" },
    "masterAuth": { "username": "tunnel", "passwordEnv": "ST_TEST_MASTER_PW" },
    "databases": [{ "name": "mymaster", "port": 16380, "bind": "::1" }],
  }`);
  try {
    const { code, stdout, stderr } = await runCli(["--check", path], {
      ST_TEST_MASTER_PW: "s3cret-master",
    });
    assert.equal(code, 0, stderr);
    assert.ok(!stdout.includes("s3cret"), `a password leaked:\n${stdout}`);
    const resolved = JSON.parse(stdout);
    assert.equal(resolved.format, "documented");
    assert.deepEqual(resolved.sentinels, ["127.0.0.1:26379", "[::1]:26380"]);
    assert.equal(resolved.sentinelAuth.password, "<redacted>");
    assert.equal(resolved.databases[0].listen, "[::1]:16380");
    assert.deepEqual(resolved.databases[0].masterAuth, {
      username: "tunnel",
      password: "<redacted: from env ST_TEST_MASTER_PW>",
    });
    assert.equal(resolved.timeouts.clientWaitMs, 5000);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("sentinel-tunnel --check shows TLS by file paths, never the files' contents", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "st-tls-" }));
  try {
    await Deno.writeTextFile(
      `${dir}/ca.pem`,
      "-----BEGIN CERTIFICATE-----\nCA-CONTENT\n-----END CERTIFICATE-----\n",
    );
    await Deno.writeTextFile(
      `${dir}/tls.key`,
      "-----BEGIN PRIVATE KEY-----\nKEY-CONTENT\n-----END PRIVATE KEY-----\n",
    );
    await Deno.writeTextFile(
      `${dir}/tunnel.jsonc`,
      JSON.stringify({
        ...GOOD,
        tls: { caFile: "ca.pem", serverName: "redis.internal" },
        sentinelTls: false,
        listenTls: { certFile: "ca.pem", keyFile: "tls.key" },
      }),
    );
    const { code, stdout, stderr } = await runCli(["--check", `${dir}/tunnel.jsonc`]);
    assert.equal(code, 0, stderr);
    assert.doesNotMatch(stdout, /CONTENT|BEGIN/, `a file's contents leaked:\n${stdout}`);
    const resolved = JSON.parse(stdout);
    assert.equal(resolved.sentinelTls, undefined);
    assert.deepEqual(resolved.databases[0].tls, {
      caFile: `${dir}/ca.pem`,
      serverName: "redis.internal",
      verify: true,
    });
    assert.deepEqual(resolved.databases[0].listenTls, {
      certFile: `${dir}/ca.pem`,
      keyFile: `${dir}/tls.key`,
    });

    // A file that cannot be read fails the check, naming the field and the path.
    await Deno.remove(`${dir}/ca.pem`);
    const failed = await runCli(["--check", `${dir}/tunnel.jsonc`]);
    assert.equal(failed.code, 1);
    assert.match(
      failed.stderr,
      new RegExp(`tls\\.caFile: cannot read "${dir}/ca\\.pem" \\("ca\\.pem" relative to`),
    );
    assertNoStackTrace(failed.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sentinel-tunnel --check accepts the original sentinel_tunnel config format", async () => {
  const { code, stdout, stderr } = await runCli([
    "--check",
    "config/original.json",
  ]);
  assert.equal(code, 0, stderr);
  const resolved = JSON.parse(stdout);
  assert.equal(resolved.format, "original");
  assert.deepEqual(
    resolved.databases.map((
      d: { name: string; listen: string },
    ) => [d.name, d.listen]),
    [
      ["db1", "127.0.0.1:12345"],
      ["db2", "127.0.0.1:12346"],
    ],
  );
});

Deno.test("sentinel-tunnel --check accepts every config shipped in config/", async () => {
  for (const entry of Deno.readDirSync("config")) {
    if (!/\.jsonc?$/.test(entry.name) || entry.name === "schema.json") continue;
    const { code, stderr } = await runCli(["--check", `config/${entry.name}`]);
    assert.equal(code, 0, `config/${entry.name}: ${stderr}`);
  }
});

Deno.test("sentinel-tunnel reports a syntax error as file:line:col", async () => {
  const stderr = await assertConfigRejected(
    '{\n  "sentinels": ["127.0.0.1:26379"]\n  "databases": []\n}',
    "syntax error",
  );
  assert.match(
    stderr,
    /st-config-[^:]+\.jsonc:3:3: syntax error: expected ',' between entries/,
  );
});

Deno.test("sentinel-tunnel rejects port 70000 naming the field, value and rule", async () => {
  await assertConfigRejected(
    { ...GOOD, databases: [{ name: "mymaster", port: 70000 }] },
    "databases[0].port: 70000 is not valid: a port is a whole number from 1 to 65535",
  );
});

Deno.test("sentinel-tunnel rejects two databases on one port", async () => {
  await assertConfigRejected(
    {
      ...GOOD,
      databases: [{ name: "a", port: 16380 }, { name: "b", port: 16380 }],
    },
    "databases[1].port: 16380 is used twice: it is also databases[0].port",
  );
});

Deno.test("sentinel-tunnel rejects an empty Sentinel list", async () => {
  await assertConfigRejected(
    { ...GOOD, sentinels: [] },
    "sentinels: [] is not valid: list at least one Sentinel",
  );
});

Deno.test("sentinel-tunnel rejects a malformed Sentinel address", async () => {
  await assertConfigRejected(
    { ...GOOD, sentinels: ["127.0.0.1:26379", "localhost"] },
    'sentinels[1]: "localhost" is not valid: expected "host:port"',
  );
  await assertConfigRejected(
    { ...GOOD, sentinels: ["::1:26379"] },
    'sentinels[0]: "::1:26379" is not valid: write an IPv6 address in brackets, such as "[::1]:26379"',
  );
});

Deno.test("sentinel-tunnel names an unknown key and suggests the nearest one", async () => {
  await assertConfigRejected(
    { ...GOOD, databases: [{ name: "mymaster", prot: 16380 }] },
    'databases[0]: unknown key "prot": did you mean "port"?',
  );
  await assertConfigRejected(
    { ...GOOD, sentinel: [] },
    'top level: unknown key "sentinel": did you mean "sentinels"?',
  );
});

Deno.test("sentinel-tunnel names a missing config file", async () => {
  const { code, stderr } = await runCli(["/nonexistent/tunnel.jsonc"]);
  assert.equal(code, 1);
  assert.match(
    stderr,
    /\/nonexistent\/tunnel\.jsonc: cannot read the config file: no such file/,
  );
});

Deno.test("sentinel-tunnel names an unset passwordEnv variable", async () => {
  await assertConfigRejected(
    { ...GOOD, masterAuth: { passwordEnv: "ST_TEST_SURELY_UNSET" } },
    'masterAuth.passwordEnv: environment variable "ST_TEST_SURELY_UNSET" is not set',
  );
});

Deno.test("sentinel-tunnel names a port that is already taken", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const freePort = free.addr.port;
  free.close();
  await assertConfigRejected(
    {
      ...GOOD,
      databases: [{ name: "first", port: freePort }, {
        name: "second",
        port: taken.addr.port,
      }],
    },
    `Cannot listen on 127.0.0.1:${taken.addr.port} for database "second": port ${taken.addr.port} is already in use`,
  );
});

Deno.test("sentinel-tunnel --check takes its config from SENTINEL_TUNNEL_* without a file", async () => {
  const { code, stdout, stderr } = await runCli(["--check"], {
    SENTINEL_TUNNEL_SENTINELS: "127.0.0.1:26379,[::1]:26380",
    SENTINEL_TUNNEL_DATABASES: "mymaster:16380",
    SENTINEL_TUNNEL_MASTER_PASSWORD: "env-only-secret",
  });
  assert.equal(code, 0, stderr);
  assert.ok(!stdout.includes("env-only-secret"));
  const resolved = JSON.parse(stdout);
  assert.equal(resolved.format, "environment");
  assert.deepEqual(resolved.sentinels, ["127.0.0.1:26379", "[::1]:26380"]);
  assert.equal(resolved.databases[0].listen, "127.0.0.1:16380");
});

Deno.test("sentinel-tunnel names the environment variable that is wrong", async () => {
  const { code, stderr } = await runCli(["--check"], {
    SENTINEL_TUNNEL_SENTINELS: "127.0.0.1:26379",
    SENTINEL_TUNNEL_DATABASES: "mymaster:99999",
  });
  assert.equal(code, 1);
  assert.match(stderr, /environment: SENTINEL_TUNNEL_DATABASES\[0\]\.port: 99999 is not valid/);
  assertNoStackTrace(stderr);
});

// Issue #8: no config file can crash, hang or flood the tunnel, at start or on SIGHUP.

/** A port free a moment ago. */
function freePort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return listener.addr.port;
}

/** Makes a FIFO at `path` (no Deno API makes one). */
async function mkfifo(path: string): Promise<void> {
  const made = await new Deno.Command("sh", { args: ["-c", 'mkfifo "$0"', path] }).output();
  assert.equal(made.code, 0, new TextDecoder().decode(made.stderr));
}

/** `{ "a": { "a": ... } }` nested `depth` deep: 5,000 overflowed the parser's stack. */
function deeplyNested(depth: number): string {
  return `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
}

Deno.test("sentinel-tunnel refuses a config nested 5,000 deep with one line and exit 1", async () => {
  const stderr = await assertConfigRejected(
    deeplyNested(5000),
    /st-config-[^:]+\.jsonc:1:\d+: nested deeper than 32 levels of objects and arrays/,
  );
  assert.equal(stderr.trim().split("\n").length, 1, stderr);
});

Deno.test("sentinel-tunnel refuses a FIFO or a device as its config at once, with one line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await mkfifo(`${dir}/tunnel.jsonc`);
    // runCli gives up after 30 s: a FIFO that blocked the read would fail here, not hang.
    for (
      const [path, kind] of [[`${dir}/tunnel.jsonc`, "a FIFO"], ["/dev/zero", "a character device"]]
    ) {
      const { code, stderr } = await runCli([path!]);
      assert.equal(code, 1, stderr);
      assert.equal(
        stderr,
        `sentinel-tunnel: ${path}: cannot read the config file: it is ${kind}${
          kind === "a FIFO" ? " (named pipe)" : ""
        }, not a regular file; give the path of a JSONC config file\n`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sentinel-tunnel lists 10 of a config's thousands of problems and counts the rest", async () => {
  const databases = Array.from({ length: 20_000 }, () => ({ name: "same", port: 16380 }));
  const stderr = await assertConfigRejected(
    JSON.stringify({ ...GOOD, databases }),
    "databases[1].port: 16380 is used twice",
    /: and 19989 more problems not shown: fix the ones above, then check again with --check\n$/,
  );
  assert.equal(stderr.trim().split("\n").length, 11, stderr);
});

Deno.test("sentinel-tunnel names an unknown SENTINEL_TUNNEL_* variable when configured by environment", async () => {
  const { code, stderr } = await runCli(["--check"], {
    SENTINEL_TUNNEL_SENTINELS: "127.0.0.1:26379",
    SENTINEL_TUNNEL_DATABASES: "mymaster:16380",
    SENTINEL_TUNNEL_BND: "0.0.0.0",
  });
  assert.equal(code, 1, stderr);
  assert.match(
    stderr,
    /^sentinel-tunnel: environment: SENTINEL_TUNNEL_BND: unknown variable: did you mean SENTINEL_TUNNEL_BIND\? \(known: /,
  );
  assertNoStackTrace(stderr);
});

Deno.test("a running sentinel-tunnel refuses hostile configs on SIGHUP, stays up, and reloads a valid one after", async () => {
  const [port, addedPort] = [freePort(), freePort()];
  // No Sentinel answers there; the tunnel listens and reloads all the same.
  const sentinels = [`127.0.0.1:${freePort()}`];
  await using tunnel = await startTunnel({ sentinels, databases: [{ name: "first", port }] }, {
    ports: [port],
  });
  const path = tunnel.configPath;
  const refusals = () => tunnel.logs.filter((r) => /^Reload refused/.test(String(r.message)));
  /** Sends SIGHUP and returns the refusal it causes. */
  const refused = async (): Promise<LogRecord> => {
    const before = refusals().length;
    tunnel.kill("SIGHUP");
    await tunnel.waitForLog(() => refusals().length > before);
    return refusals()[before]!;
  };
  await Deno.writeTextFile(path, deeplyNested(5000));
  assert.match(String((await refused()).error), /:1:\d+: nested deeper than 32 levels/);

  await Deno.remove(path);
  await mkfifo(path);
  assert.match(String((await refused()).error), /it is a FIFO \(named pipe\), not a regular file/);

  await Deno.remove(path);
  await Deno.symlink("/dev/zero", path);
  assert.match(String((await refused()).error), /it is a character device, not a regular file/);

  await Deno.remove(path);
  await Deno.writeTextFile(path, " ".repeat(10 * 1024 * 1024));
  assert.match(String((await refused()).error), /it is 10485760 bytes, over the limit of 1048576/);

  await Deno.writeTextFile(
    path,
    JSON.stringify({
      sentinels,
      databases: [{ name: "first", port }, { name: "second", port: addedPort }],
    }),
  );
  tunnel.kill("SIGHUP");
  const reloaded = await tunnel.waitForLog((r) => /^Reloaded/.test(String(r.message)));
  assert.deepEqual(reloaded.added, ["second"]);
  assert.equal(tunnel.logs.filter((r) => r.level === "RAW").length, 0, "a line that is not a log");
  const status = await tunnel.stop();
  assert.equal(status.code, 0);
});

// Issue 19: --check --online checks the config against the deployment (tests/online_check_test.ts).

Deno.test("sentinel-tunnel --help documents --check --online and its exit codes", async () => {
  const { code, stdout } = await runCli(["--help"]);
  assert.equal(code, 0);
  assert.match(stdout, /--check --online {5}validate the config, then check it against the/);
  for (
    const exit of ["3  a Sentinel", "4  a master name", "5  no confirmed master", "6  a read port"]
  ) {
    assert.ok(stdout.includes(exit), `--help lacks ${JSON.stringify(exit)}`);
  }
  assert.match(stdout, /the lowest of the codes that apply/);
});

Deno.test("sentinel-tunnel --online without --check is a usage error", async () => {
  const { code, stdout, stderr } = await runCli(["--online", "config/example.jsonc"]);
  assert.equal(code, 2);
  assert.equal(stdout, "");
  assert.match(stderr, /--online works with --check only: use --check --online/);
});

Deno.test("sentinel-tunnel --check --online refuses a bad config with exit 1 before reaching anything", async () => {
  await using sentinel = await startFakeRedis();
  const path = await writeConfig({
    sentinels: [sentinel.address],
    databases: [{ name: "mymaster", port: 70000 }],
  });
  try {
    const { code, stdout, stderr } = await runCli(["--check", "--online", path]);
    assert.equal(code, 1);
    assert.equal(stdout, "");
    assert.match(stderr, /databases\[0\]\.port: 70000 is not valid/);
    assertNoStackTrace(stderr);
    assert.equal(sentinel.connections, 0);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("sentinel-tunnel --check --online takes its config from SENTINEL_TUNNEL_* and exits 3 when no Sentinel answers", async () => {
  const sentinel = `127.0.0.1:${freePort()}`;
  const { code, stdout, stderr } = await runCli(["--check", "--online"], {
    SENTINEL_TUNNEL_SENTINELS: sentinel,
    SENTINEL_TUNNEL_DATABASES: "mymaster:16380",
    SENTINEL_TUNNEL_SENTINEL_PASSWORD: "env-only-secret",
  });
  assert.equal(code, 3, stderr);
  assert.equal(stderr, "");
  assert.ok(!stdout.includes("env-only-secret"), `a password leaked:\n${stdout}`);
  const lines = stdout.trimEnd().split("\n");
  assert.equal(lines.length, 2, stdout);
  assert.ok(lines[0]!.startsWith(`${sentinel}: `), stdout);
  assert.match(lines[1]!, /^mymaster \(port 16380\): no confirmed master: no Sentinel reachable /);
});
