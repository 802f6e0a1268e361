/**
 * config/schema.json, which editors use through "$schema", says what the
 * validator accepts: it is generated from the validator, and this test fails
 * when the committed file falls behind.
 */
import assert from "node:assert/strict";
import { configJsonSchema, parseConfig } from "../src/config/mod.ts";

const SCHEMA_PATH = new URL("../config/schema.json", import.meta.url);

Deno.test("config/schema.json is the schema generated from the validator (run make schema)", async () => {
  const committed = JSON.parse(await Deno.readTextFile(SCHEMA_PATH));
  assert.deepEqual(committed, configJsonSchema());
});

Deno.test("config/schema.json describes every field", async () => {
  const schema = JSON.parse(await Deno.readTextFile(SCHEMA_PATH));
  const undescribed: string[] = [];
  const walk = (node: Record<string, unknown>, path: string) => {
    for (const [key, child] of Object.entries(node.properties ?? {})) {
      if (typeof child.description !== "string") undescribed.push(`${path}.${key}`);
      walk(child, `${path}.${key}`);
    }
    // `false` or an object, as tls and listenTls in a database are.
    for (const option of (node.anyOf ?? []) as Record<string, unknown>[]) walk(option, path);
    if (node.items !== undefined) walk(node.items as Record<string, unknown>, `${path}[]`);
  };
  walk(schema, "");
  assert.deepEqual(undescribed, []);
});

Deno.test("config/schema.json lists every key the validator accepts, and only those", async () => {
  const schema = JSON.parse(await Deno.readTextFile(SCHEMA_PATH));
  const topLevel = Object.keys(schema.properties).sort();
  const database = Object.keys(schema.properties.databases.items.properties).sort();
  assert.equal(schema.additionalProperties, false);
  assert.deepEqual(database.slice().sort(), [
    "bind",
    "fence",
    "listenTls",
    "masterAuth",
    "maxClients",
    "maxLagBytes",
    "name",
    "onMasterChange",
    "port",
    "preconnect",
    "role",
    "timeouts",
    "tls",
    "whenNoReplica",
  ]);
  const tls = {
    caFile: "ca.pem",
    certFile: "/etc/tls/client.crt",
    keyFile: "/etc/tls/client.key",
    serverName: "redis.internal",
    verify: true,
  };
  assert.deepEqual(Object.keys(tls).sort(), Object.keys(schema.properties.tls.properties).sort());
  // A config that sets every key the schema names is valid.
  const full = {
    $schema: "./schema.json",
    sentinels: ["127.0.0.1:26379"],
    bind: "127.0.0.1",
    admin: "127.0.0.1:9121",
    sentinelAuth: { password: "x" },
    masterAuth: { username: "u", passwordEnv: "PW" },
    timeouts: Object.fromEntries(
      // 1000: a value every duration takes (clientIdleMs starts there).
      Object.keys(schema.properties.timeouts.properties).map((k) => [k, 1000]),
    ),
    maxSentinels: 8,
    maxClients: 100,
    tcpKeepAlive: true,
    onMasterChange: { command: ["/bin/true"], timeoutMs: 100 },
    tls,
    sentinelTls: tls,
    listenTls: { certFile: "/etc/tls/server.crt", keyFile: "/etc/tls/server.key" },
    maxLagBytes: 4096,
    whenNoReplica: "master",
    fence: { afterMs: 5000 },
    preconnect: 2,
    databases: [{
      name: "m",
      port: 6380,
      role: "replica",
      maxLagBytes: 0,
      whenNoReplica: "reject",
      bind: "::1",
      masterAuth: { password: "y" },
      maxClients: 10,
      timeouts: Object.fromEntries(
        Object.keys(schema.properties.databases.items.properties.timeouts.properties).map((
          k,
        ) => [k, 1000]),
      ),
      onMasterChange: { command: ["/bin/true"] },
      tls: false,
      listenTls: { certFile: "/etc/tls/server.crt", keyFile: "/etc/tls/server.key" },
      fence: { afterMs: 5000 },
    }, { name: "n", port: 6381, preconnect: 8 }],
  };
  assert.deepEqual(Object.keys(full).sort(), topLevel);
  const config = parseConfig(JSON.stringify(full), "full.jsonc", {
    getEnv: () => "secret",
    baseDirectory: "/etc/tls",
    // Each file holds what any TLS field needs.
    readTextFile: () => "-----BEGIN CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\n",
  });
  assert.equal(config.databases[0]?.timeouts.clientWaitMs, 1000);
  assert.equal(config.sentinelTls?.caFile, "/etc/tls/ca.pem");
  assert.equal(config.databases[0]?.tls, undefined);
  assert.equal(config.databases[0]?.listenTls?.keyFile, "/etc/tls/server.key");
  assert.deepEqual(
    [
      config.databases[0]?.role,
      config.databases[0]?.maxLagBytes,
      config.databases[0]?.whenNoReplica,
    ],
    ["replica", 0, "reject"],
  );
  // preconnect is a master entry's: a read port has none, the top level's is a default.
  assert.deepEqual([config.databases[0]?.preconnect, config.databases[1]?.preconnect], [0, 8]);
  // Each shipped example names the schema.
  for (const example of ["example.jsonc", "demo.jsonc"]) {
    const text = await Deno.readTextFile(new URL(`../config/${example}`, import.meta.url));
    assert.match(
      text,
      /"\$schema": "\.\/schema\.json"/,
      `config/${example} does not reference the schema`,
    );
  }
});
