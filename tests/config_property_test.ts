/**
 * Properties of the config parser over generated input (fast-check): a valid
 * config reads back as written, and no text at all, however broken, deep or
 * large, makes it throw anything but a short ConfigError.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { resolve } from "node:path";
import {
  ConfigError,
  MAX_CONFIG_DEPTH,
  MAX_REPORTED_PROBLEMS,
  parseConfig,
} from "../src/config/mod.ts";
import { DEFAULT_MAX_LAG_BYTES, DEFAULT_TIMEOUTS } from "../src/shared/settings.ts";

/** Runs per property: enough to find the classes of bugs above, few enough for 2 shared cores. */
const RUNS = { numRuns: 300 };

/** What every TLS file holds here: what caFile, certFile and keyFile each need, and its path. */
function pemText(path: string): string {
  return `-----BEGIN CERTIFICATE-----\n${path}\n-----BEGIN PRIVATE KEY-----\n`;
}

function parse(text: string) {
  // The TLS files are never read from disk: any path a generated config names is "there".
  return parseConfig(text, "p.jsonc", {
    getEnv: (name) => `env-${name}`,
    readTextFile: pemText,
    baseDirectory: "/conf",
  });
}

/** Parses `text`; returns the ConfigError it throws, and fails on any other throw. */
function outcome(text: string): ConfigError | undefined {
  try {
    parse(text);
    return undefined;
  } catch (error) {
    if (!(error instanceof ConfigError)) {
      throw new Error(`not a ConfigError: ${error}`, { cause: error });
    }
    const lines = error.message.split("\n");
    assert.ok(lines.length <= MAX_REPORTED_PROBLEMS + 1, `${lines.length} lines`);
    assert.deepEqual(lines, error.problems);
    for (const line of lines) assert.ok(line.startsWith("p.jsonc"), line);
    return error;
  }
}

const port = fc.integer({ min: 1, max: 65535 });
const host = fc.oneof(fc.ipV4(), fc.ipV6(), fc.domain());
const sentinelAddress = fc.tuple(host, port).map(([h, p]) =>
  h.includes(":") ? `[${h}]:${p}` : `${h}:${p}`
);
const millis = fc.integer({ min: 1, max: 600_000 });
const timeouts = fc.record({
  sentinelConnectMs: millis,
  sentinelReplyMs: millis,
  masterConnectMs: millis,
  pollIntervalMs: millis,
  clientWaitMs: millis,
  clientIdleMs: fc.oneof(fc.constant(0), fc.integer({ min: 1000, max: 86_400_000 })),
}, { requiredKeys: [] });
const databaseTimeouts = fc.record({
  masterConnectMs: millis,
  masterReplyMs: millis,
  clientWaitMs: millis,
}, { requiredKeys: [] });
const bind = fc.constantFrom("127.0.0.1", "::1", "0.0.0.0", "10.1.2.3", "localhost");
const pemPath = fc.constantFrom("ca.pem", "../tls/ca.pem", "/etc/tls/a.pem", "/etc/tls/b.pem");
const tls = fc.record({
  caFile: pemPath,
  serverName: fc.domain(),
  verify: fc.boolean(),
  pair: fc.tuple(pemPath, pemPath),
}, { requiredKeys: [] }).map(({ pair, ...rest }) =>
  pair === undefined ? rest : { ...rest, certFile: pair[0], keyFile: pair[1] }
);
const listenTls = fc.record({ certFile: pemPath, keyFile: pemPath });

/** What `input` (a TLS object) resolves to, its files read by {@linkcode pemText}. */
function resolvedTls(input: Record<string, unknown>) {
  const result: Record<string, unknown> = {};
  const fields = [["caFile", "ca"], ["certFile", "cert"], ["keyFile", "key"]] as const;
  for (const [field, text] of fields) {
    if (input[field] === undefined) continue;
    const path = resolve("/conf", `${input[field]}`);
    result[field] = path;
    result[text] = pemText(path);
  }
  if (input.serverName !== undefined) result.serverName = input.serverName;
  result.verify = input.verify ?? true;
  return result;
}

const maxLagBytes = fc.integer({ min: 0, max: 2 ** 40 });
const whenNoReplica = fc.constantFrom("master" as const, "reject" as const);
interface RoleFields {
  role?: "master" | "replica";
  maxLagBytes?: number;
  whenNoReplica?: "master" | "reject";
}
/** What a port serves: absent or master, with no replica settings; or replica, with some. */
const roleFields = fc.oneof(
  fc.record({ role: fc.constant("master" as const) }, { requiredKeys: [] }),
  fc.record({ role: fc.constant("replica" as const), maxLagBytes, whenNoReplica }, {
    requiredKeys: ["role"],
  }),
);

/**
 * Entries whose master-side settings agree within each name, as a valid config must have them:
 * every entry of a name takes the TLS and master deadlines of the name's first entry.
 */
function agreeByName<
  D extends { name: string; tls?: unknown; timeouts?: Record<string, number | undefined> },
>(databases: D[]): D[] {
  const first = new Map<string, D>();
  return databases.map((d) => {
    const head = first.get(d.name);
    if (!head) {
      first.set(d.name, d);
      return d;
    }
    const { tls: _tls, timeouts: ownTimeouts, ...rest } = d;
    const { masterConnectMs: _c, masterReplyMs: _r, ...portTimeouts } = ownTimeouts ?? {};
    const masterTimeouts = Object.fromEntries(
      Object.entries(head.timeouts ?? {}).filter(([key]) =>
        key === "masterConnectMs" || key === "masterReplyMs"
      ),
    );
    const timeouts = { ...portTimeouts, ...masterTimeouts };
    return {
      ...rest,
      ...(head.tls === undefined ? {} : { tls: head.tls }),
      ...(Object.keys(timeouts).length === 0 ? {} : { timeouts }),
    } as D;
  });
}

/** A valid documented config: Sentinels and ports each used once; a name may repeat. */
const documentedConfig = fc.record({
  sentinels: fc.uniqueArray(sentinelAddress, {
    minLength: 1,
    maxLength: 5,
    selector: (a) => a.toLowerCase(),
  }),
  databases: fc.uniqueArray(
    fc.record({
      // A few fixed names make a name on several ports common.
      name: fc.oneof(
        fc.constantFrom("mymaster", "cache"),
        fc.string({ minLength: 1, maxLength: 20, unit: "grapheme" }),
      ),
      port,
      timeouts: databaseTimeouts,
      maxClients: fc.integer({ min: 1, max: 1_000_000 }),
      tls: fc.oneof(fc.constant(false as const), tls),
      listenTls: fc.oneof(fc.constant(false as const), listenTls),
    }, { requiredKeys: ["name", "port"] }).chain((db) =>
      roleFields.map((fields): typeof db & RoleFields => ({ ...db, ...fields }))
    ),
    { minLength: 1, maxLength: 5, selector: (d) => d.port },
  ).map(agreeByName),
  bind,
  timeouts,
  maxSentinels: fc.integer({ min: 1, max: 256 }),
  maxClients: fc.integer({ min: 1, max: 1_000_000 }),
  tcpKeepAlive: fc.boolean(),
  maxLagBytes,
  whenNoReplica,
  tls,
  sentinelTls: fc.oneof(fc.constant(false as const), tls),
  listenTls,
  masterAuth: fc.record({ username: fc.string({ minLength: 1 }), passwordEnv: fc.constant("PW") }, {
    requiredKeys: ["passwordEnv"],
  }),
}, { requiredKeys: ["sentinels", "databases"] });

Deno.test("parseConfig() reads back every valid config as written, in any layout", () => {
  fc.assert(
    fc.property(
      documentedConfig,
      fc.constantFrom("compact", "indented", "bom", "comments"),
      (input, layout) => {
        const json = JSON.stringify(input, null, layout === "compact" ? undefined : 2);
        const text = layout === "bom"
          ? `\uFEFF${json}`
          : layout === "comments"
          ? `// generated\n${json.replace(/\n/g, " /* x */\n")}`
          : json;
        const config = parse(text);
        assert.equal(config.format, "documented");
        assert.deepEqual(
          config.sentinels.map((s) =>
            s.hostname.includes(":") ? `[${s.hostname}]:${s.port}` : `${s.hostname}:${s.port}`
          ),
          input.sentinels,
        );
        const global = { ...DEFAULT_TIMEOUTS, ...input.timeouts };
        assert.deepEqual(config.timeouts, global);
        assert.equal(config.maxSentinels, input.maxSentinels ?? 16);
        assert.equal(config.maxClients, input.maxClients ?? 10_000);
        assert.deepEqual(
          config.databases.map((d) => ({
            name: d.name,
            port: d.port,
            role: d.role,
            maxLagBytes: d.maxLagBytes,
            whenNoReplica: d.whenNoReplica,
            bind: d.bind,
            timeouts: d.timeouts,
            maxClients: d.maxClients,
            tcpKeepAlive: d.tcpKeepAlive,
            username: d.masterAuth?.username,
            tls: d.tls,
            listenTls: d.listenTls,
          })),
          input.databases.map((d) => ({
            name: d.name,
            port: d.port,
            role: d.role ?? "master",
            // Master entries carry the defaults too, so that every entry has every field.
            maxLagBytes: d.maxLagBytes ?? input.maxLagBytes ?? DEFAULT_MAX_LAG_BYTES,
            whenNoReplica: d.whenNoReplica ?? input.whenNoReplica ?? "reject",
            bind: input.bind ?? "127.0.0.1",
            timeouts: { ...global, ...d.timeouts },
            maxClients: d.maxClients ?? input.maxClients ?? 10_000,
            tcpKeepAlive: input.tcpKeepAlive ?? true,
            username: input.masterAuth?.username,
            // A database's own TLS object replaces the top-level one; false is plaintext.
            tls: tlsOf(d.tls === undefined ? input.tls : d.tls),
            listenTls: listenTlsOf(d.listenTls === undefined ? input.listenTls : d.listenTls),
          })),
        );
        assert.deepEqual(
          config.sentinelTls,
          tlsOf(input.sentinelTls === undefined ? input.tls : input.sentinelTls),
        );
      },
    ),
    RUNS,
  );
});

function tlsOf(input: Record<string, unknown> | false | undefined) {
  return input === undefined || input === false ? undefined : resolvedTls(input);
}

function listenTlsOf(input: { certFile: string; keyFile: string } | false | undefined) {
  if (input === undefined || input === false) return undefined;
  const certFile = resolve("/conf", input.certFile);
  const keyFile = resolve("/conf", input.keyFile);
  return { certFile, cert: pemText(certFile), keyFile, key: pemText(keyFile) };
}

Deno.test("parseConfig() refuses any valid config with one more entry of a name whose master deadline differs", () => {
  fc.assert(
    fc.property(documentedConfig, millis, (input, replyMs) => {
      const first = input.databases[0]!;
      // The top level sets no masterReplyMs here: the first entry's own, or the default.
      const effective = first.timeouts?.masterReplyMs ?? DEFAULT_TIMEOUTS.masterReplyMs;
      fc.pre(replyMs !== effective);
      const port = Math.max(...input.databases.map((d) => d.port)) % 65535 + 1;
      fc.pre(!input.databases.some((d) => d.port === port));
      const index = input.databases.length;
      const databases = [
        ...input.databases,
        { name: first.name, port, timeouts: { masterReplyMs: replyMs } },
      ];
      let error: unknown;
      try {
        parse(JSON.stringify({ ...input, databases }));
      } catch (e) {
        error = e;
      }
      assert.ok(error instanceof ConfigError, "accepted entries of one name that disagree");
      assert.ok(
        error.problems.some((p) =>
          p.includes(
            `databases[${index}].timeouts.masterReplyMs: timeouts.masterReplyMs differs from databases[0] (`,
          )
        ),
        error.message,
      );
    }),
    RUNS,
  );
});

Deno.test("parseConfig() reads back the original sentinel_tunnel format", () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(sentinelAddress, {
        minLength: 1,
        maxLength: 3,
        selector: (a) => a.toLowerCase(),
      }),
      // One name may be served on several ports: a few fixed names make repeats common.
      fc.uniqueArray(
        fc.tuple(
          fc.oneof(fc.constantFrom("db1", "db2"), fc.stringMatching(/^[a-z][a-z0-9]{0,9}$/)),
          port,
          fc.boolean(),
        ),
        { minLength: 1, maxLength: 4, selector: ([, p]) => p },
      ),
      (sentinels, databases) => {
        const config = parse(JSON.stringify({
          Sentinels_addresses_list: sentinels,
          Databases: databases.map(([Name, p, asText]) => ({
            Name,
            Local_port: asText ? String(p) : p,
          })),
        }));
        assert.equal(config.format, "original");
        assert.deepEqual(
          config.databases.map((d) => [d.name, d.port]),
          databases.map(([n, p]) => [n, p]),
        );
        assert.ok(config.databases.every((d) => d.role === "master"));
      },
    ),
    RUNS,
  );
});

Deno.test("parseConfig() throws only a short ConfigError for any text", () => {
  const jsonish = fc.array(
    fc.constantFrom(
      "{",
      "}",
      "[",
      "]",
      ",",
      ":",
      '"',
      '"a"',
      '"sentinels"',
      '"databases"',
      '"__proto__"',
      "1e400",
      "-1e999",
      "0",
      "true",
      "null",
      "// c\n",
      "/*",
      "*/",
      "\\",
      "\uFEFF",
      " ",
      "\n",
    ),
    { maxLength: 200 },
  ).map((parts) => parts.join(""));
  fc.assert(
    fc.property(fc.oneof(fc.string({ unit: "binary" }), fc.json(), jsonish), (text) => {
      outcome(text);
    }),
    { numRuns: 1000 },
  );
});

Deno.test("parseConfig() throws only a short ConfigError for any JSON value in any known key", () => {
  const keys = [
    "sentinels",
    "databases",
    "bind",
    "admin",
    "sentinelAuth",
    "masterAuth",
    "timeouts",
    "maxSentinels",
    "maxClients",
    "tcpKeepAlive",
    "onMasterChange",
    "tls",
    "sentinelTls",
    "listenTls",
    "maxLagBytes",
    "whenNoReplica",
    "__proto__",
    "Databases",
  ];
  fc.assert(
    fc.property(
      fc.dictionary(fc.constantFrom(...keys), fc.jsonValue({ maxDepth: 6 })),
      fc.array(fc.jsonValue({ maxDepth: 4 }), { maxLength: 3 }),
      (top, entries) => {
        const text = JSON.stringify({
          sentinels: ["127.0.0.1:26379"],
          databases: [{ name: "m", port: 6380 }, ...entries],
          ...top,
        });
        outcome(text);
      },
    ),
    RUNS,
  );
});

Deno.test("parseConfig() refuses any nesting past the limit with one line, however deep", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: MAX_CONFIG_DEPTH + 1, max: 100_000 }),
      fc.constantFrom("[", '{"a":'),
      (depth, opener) => {
        const close = opener === "[" ? "]" : "}";
        const error = outcome(`${opener.repeat(depth - 1)}[]${close.repeat(depth - 1)}`);
        assert.ok(error);
        assert.match(error.message, /^p\.jsonc:1:\d+: nested deeper than 32 levels/);
        assert.equal(error.problems.length, 1);
      },
    ),
    { numRuns: 50 },
  );
});

Deno.test("parseConfig() refuses a key given twice anywhere, naming it", () => {
  fc.assert(
    fc.property(documentedConfig, fc.nat(), (input, pick) => {
      const json = JSON.stringify(input);
      // Repeat one key of the text right after itself: `"port":6380` becomes `"port":6380,"port":6380`.
      const pairs = [...json.matchAll(/"([a-zA-Z]+)":(\d+|true|false|"[^"\\]*")(?=[,}])/g)];
      fc.pre(pairs.length > 0);
      const pair = pairs[pick % pairs.length]!;
      const end = pair.index + pair[0].length;
      const text = `${json.slice(0, end)},${pair[0]}${json.slice(end)}`;
      const error = outcome(text);
      assert.ok(error, text);
      assert.match(error.message, new RegExp(`the key "${pair[1]}" is given twice`));
    }),
    RUNS,
  );
});
