/**
 * The configuration: a JSONC file in the documented format or in the original
 * sentinel_tunnel (RedisLabs) format, validated and resolved into
 * {@linkcode TunnelConfig}. Every problem is reported with the field path, the
 * value and the rule, so that an operator can fix the file without reading code.
 *
 * @module
 */
import { parse as parseJsonc, type ParseError, printParseErrorCode } from "jsonc-parser";
import { z } from "zod";
import {
  formatAddress,
  isValidHost,
  parseAddress,
  parseAdminAddress,
  parsePort,
} from "../shared/address.ts";
import {
  type Credentials,
  type DatabaseConfig,
  DEFAULT_BIND,
  DEFAULT_HOOK_TIMEOUT_MS,
  DEFAULT_MAX_CLIENTS,
  DEFAULT_MAX_SENTINELS,
  DEFAULT_TIMEOUTS,
  type Timeouts,
  type TunnelConfig,
} from "../shared/settings.ts";

/**
 * The configuration cannot be used. Each problem is one line that starts with
 * the source (`file:` or `file:line:col:`); the message joins them.
 */
export class ConfigError extends Error {
  override name = "ConfigError";
  readonly problems: readonly string[];
  constructor(
    source: string,
    problems: readonly string[],
    options?: ErrorOptions,
  ) {
    const lines = problems.map((p) => /^\d+:\d+: /.test(p) ? `${source}:${p}` : `${source}: ${p}`);
    super(lines.join("\n"), options);
    this.problems = lines;
  }
}

const PORT_RULE = "a port is a whole number from 1 to 65535";
const MAX_SENTINELS_RULE = "maxSentinels is a whole number from 1 to 256";
const MS_RULE = "a duration is a whole number of milliseconds from 1 to 600000";
const ADDRESS_RULE = 'an address is "host:port", such as "127.0.0.1:26379" or "[::1]:26379"';

const IDLE_RULE = "an idle limit is a whole number of milliseconds from 0 (off) to 86400000";
const idleMillis = z.number({ error: IDLE_RULE }).int({ error: IDLE_RULE })
  .min(0, { error: IDLE_RULE }).max(86_400_000, { error: IDLE_RULE });
const MAX_CLIENTS_RULE = "maxClients is a whole number from 1 to 1000000";
const maxClients = z.number({ error: MAX_CLIENTS_RULE }).int({ error: MAX_CLIENTS_RULE })
  .min(1, { error: MAX_CLIENTS_RULE }).max(1_000_000, { error: MAX_CLIENTS_RULE });
const port = z.number({ error: PORT_RULE }).int({ error: PORT_RULE })
  .min(1, { error: PORT_RULE }).max(65535, { error: PORT_RULE });
const millis = z.number({ error: MS_RULE }).int({ error: MS_RULE })
  .min(1, { error: MS_RULE }).max(600_000, { error: MS_RULE });
const nonEmpty = (what: string) =>
  z.string({ error: `${what} is a non-empty string` }).min(1, {
    error: `${what} is a non-empty string`,
  });
const address = z.string({ error: ADDRESS_RULE }).transform((text, ctx) => {
  try {
    return parseAddress(text);
  } catch (error) {
    ctx.issues.push({
      code: "custom",
      input: text,
      message: (error as Error).message.replace(
        /^Invalid (address|port) "[^"]*": /,
        "",
      ),
    });
    return z.NEVER;
  }
});
const bind = nonEmpty("a listen address").refine(isValidHost, {
  error:
    'a listen address is a host name or IP address without a port, such as "127.0.0.1" or "::1"',
});
const auth = z.strictObject({
  username: nonEmpty("a username").optional(),
  password: nonEmpty("a password").optional(),
  passwordEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
    error: "an environment variable name is letters, digits and underscores",
  }).optional(),
}, {
  error:
    'credentials are an object, such as { "passwordEnv": "REDIS_PASSWORD" } or { "username": "tunnel", "password": "..." }',
}).refine((a) => (a.password === undefined) !== (a.passwordEnv === undefined), {
  error: 'give exactly one of "password" and "passwordEnv"',
});
const ADMIN_RULE = 'the admin address is "host:port", ":port" or a port, such as "127.0.0.1:9121"';
const adminAddress = z.union([z.string(), z.number()], { error: ADMIN_RULE }).transform(
  (value, ctx) => {
    try {
      return parseAdminAddress(value);
    } catch {
      ctx.issues.push({ code: "custom", input: value, message: ADMIN_RULE });
      return z.NEVER;
    }
  },
);
const hook = z.strictObject({
  command: z.array(nonEmpty("a command word"), {
    error:
      'command is a list: the program and its arguments, such as ["/usr/local/bin/on-failover", "--quiet"]',
  }).min(1, { error: "command names at least the program to run" }),
  timeoutMs: millis.optional(),
}, { error: 'onMasterChange is an object, such as { "command": ["/usr/local/bin/on-failover"] }' });
const ms = (description: string) => millis.optional().describe(`${description} (milliseconds)`);
const timeoutFields = {
  sentinelConnectMs: ms("Deadline to connect to a Sentinel. Default 500"),
  sentinelReplyMs: ms("Deadline for a Sentinel's reply. Default 500"),
  masterConnectMs: ms("Deadline to connect to a master. Default 1000"),
  masterReplyMs: ms("Deadline for the master's reply to AUTH and ROLE. Default 1000"),
  pollIntervalMs: ms("How often Sentinels are polled, as a fallback to pub/sub. Default 1000"),
  clientWaitMs: ms("How long a new client waits for a confirmed master. Default 5000"),
  clientIdleMs: idleMillis.optional().describe(
    "Close a tunnel that carries no byte either way for this long; 0 is off (pub/sub and blocking clients idle legitimately). Default 0",
  ),
};
const databaseTimeoutFields = {
  masterConnectMs: timeoutFields.masterConnectMs,
  masterReplyMs: timeoutFields.masterReplyMs,
  clientWaitMs: timeoutFields.clientWaitMs,
  clientIdleMs: timeoutFields.clientIdleMs,
};
const authDescription =
  'Credentials: "password" or "passwordEnv" (the name of an environment variable), and an optional ACL "username"';
const hookDescription =
  "A command run on every confirmed master change, with SENTINEL_TUNNEL_DATABASE, _OLD_MASTER and _NEW_MASTER in its environment";

/** The documented config format. `config/schema.json` is generated from it. */
export const documentedSchema = z.strictObject({
  $schema: z.string().optional().describe("The JSON Schema of this file, for editors"),
  sentinels: z.array(address, { error: "sentinels is a list of addresses" })
    .min(1, {
      error: 'list at least one Sentinel, such as ["127.0.0.1:26379"]',
    }).describe('The Sentinels to ask, in order: "host:port", with IPv6 in brackets'),
  bind: bind.optional().describe("Where the local ports listen. Default 127.0.0.1"),
  admin: adminAddress.optional().describe(
    'Where the admin HTTP API listens: "host:port" or a port on 127.0.0.1. Off when absent',
  ),
  sentinelAuth: auth.optional().describe(`${authDescription}, sent to every Sentinel`),
  masterAuth: auth.optional().describe(
    `${authDescription}, used only for the tunnel's ROLE checks`,
  ),
  timeouts: z.strictObject(timeoutFields).optional().describe("Deadlines and intervals"),
  maxSentinels: z.number({ error: MAX_SENTINELS_RULE }).int({ error: MAX_SENTINELS_RULE })
    .min(1, { error: MAX_SENTINELS_RULE }).max(256, { error: MAX_SENTINELS_RULE }).optional()
    .describe(
      "The most Sentinels that count for one master, configured ones included; Sentinels discovered beyond it are ignored. Default 16",
    ),
  maxClients: maxClients.optional().describe(
    "The most live clients of every database together; the one over gets a RESP error. Default 10000",
  ),
  tcpKeepAlive: z.boolean({ error: "tcpKeepAlive is true or false" }).optional().describe(
    "TCP keepalive on both sockets of every tunnel, with the system's timers. Default true",
  ),
  onMasterChange: hook.optional().describe(`${hookDescription}; for every database`),
  databases: z.array(
    z.strictObject({
      name: nonEmpty("a database name (the Sentinel master name)").describe(
        "The Sentinel master name",
      ),
      port: port.describe("The local port clients connect to"),
      bind: bind.optional().describe("Where this database's port listens"),
      masterAuth: auth.optional().describe(`${authDescription}, for this database's ROLE checks`),
      timeouts: z.strictObject(databaseTimeoutFields).optional().describe(
        "This database's master deadlines",
      ),
      onMasterChange: hook.optional().describe(hookDescription),
      maxClients: maxClients.optional().describe(
        "The most live clients of this database. Default: the top-level maxClients",
      ),
    }),
    { error: "databases is a list of objects" },
  ).min(1, {
    error: 'list at least one database, such as [{ "name": "mymaster", "port": 6380 }]',
  }).describe("One entry per Sentinel master name, each on its own local port"),
});

/** The JSON Schema of the documented config format, for editors (`config/schema.json`). */
export function configJsonSchema(): unknown {
  return {
    ...z.toJSONSchema(documentedSchema, { io: "input", unrepresentable: "any" }),
    title: "sentinel-tunnel config",
  };
}

const originalSchema = z.strictObject({
  Sentinels_addresses_list: z.array(address, {
    error: "Sentinels_addresses_list is a list of addresses",
  }).min(1, {
    error: 'list at least one Sentinel, such as ["127.0.0.1:26379"]',
  }),
  Databases: z.array(
    z.strictObject({
      Name: nonEmpty("Name (the Sentinel master name)"),
      Local_port: z.union([z.string(), z.number()], { error: PORT_RULE })
        .transform(
          (value, ctx) => {
            try {
              return parsePort(value);
            } catch {
              ctx.issues.push({
                code: "custom",
                input: value,
                message: PORT_RULE,
              });
              return z.NEVER;
            }
          },
        ),
    }),
    { error: "Databases is a list of objects" },
  ).min(1, {
    error: 'list at least one database, such as [{ "Name": "db1", "Local_port": "12345" }]',
  }),
});

type DocumentedInput = z.infer<typeof documentedSchema>;
type AuthInput = z.infer<typeof auth>;

/** Options for {@linkcode parseConfig}. */
export interface ParseConfigOptions {
  /** Where environment variables named by `passwordEnv` are read. @default {Deno.env.get} */
  getEnv?: (name: string) => string | undefined;
}

/**
 * Reads and resolves a config file.
 *
 * @throws {ConfigError} when the file cannot be read or is not a valid config
 */
export async function loadConfig(
  path: string,
  options: ParseConfigOptions = {},
): Promise<TunnelConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    const cause = error instanceof Deno.errors.NotFound
      ? "no such file; give the path of a JSONC config, such as config/example.jsonc"
      : error instanceof Deno.errors.PermissionDenied
      ? "permission denied; make the file readable by this user"
      : error instanceof Deno.errors.IsADirectory
      ? "it is a directory; give the path of a JSONC config file"
      : (error as Error).message;
    throw new ConfigError(path, [`cannot read the config file: ${cause}`], {
      cause: error,
    });
  }
  return parseConfig(text, path, options);
}

/**
 * Parses and resolves config text. `source` names the text in messages.
 *
 * @throws {ConfigError} when the text is not a valid config
 */
export function parseConfig(
  text: string,
  source: string,
  options: ParseConfigOptions = {},
): TunnelConfig {
  const getEnv = options.getEnv ?? ((name: string) => Deno.env.get(name));
  const errors: ParseError[] = [];
  const raw: unknown = parseJsonc(text, errors, {
    allowTrailingComma: true,
    disallowComments: false,
  });
  if (errors.length > 0) {
    throw new ConfigError(
      source,
      errors.slice(0, 1).map((e) => {
        const { line, column } = lineAndColumn(text, e.offset);
        return `${line}:${column}: syntax error: ${
          describeParseError(printParseErrorCode(e.error))
        }`;
      }),
    );
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(source, [
      'the config is a JSON object, such as { "sentinels": ["127.0.0.1:26379"], "databases": [{ "name": "mymaster", "port": 6380 }] }',
    ]);
  }
  const format = "Sentinels_addresses_list" in raw || "Databases" in raw
    ? "original"
    : "documented";
  return validate(raw, format, source, getEnv);
}

/** Names of the environment variables that {@linkcode configFromEnvironment} reads. */
export const ENVIRONMENT_KEYS = {
  sentinels: "SENTINEL_TUNNEL_SENTINELS",
  databases: "SENTINEL_TUNNEL_DATABASES",
  bind: "SENTINEL_TUNNEL_BIND",
  admin: "SENTINEL_TUNNEL_ADMIN",
  sentinelUsername: "SENTINEL_TUNNEL_SENTINEL_USERNAME",
  sentinelPassword: "SENTINEL_TUNNEL_SENTINEL_PASSWORD",
  masterUsername: "SENTINEL_TUNNEL_MASTER_USERNAME",
  masterPassword: "SENTINEL_TUNNEL_MASTER_PASSWORD",
} as const;

/**
 * Builds the config from environment variables alone, for containers:
 * `SENTINEL_TUNNEL_SENTINELS="h:p,h:p"` and `SENTINEL_TUNNEL_DATABASES="name:port,..."`,
 * with optional `SENTINEL_TUNNEL_BIND`, `SENTINEL_TUNNEL_ADMIN` and the
 * `SENTINEL_TUNNEL_{SENTINEL,MASTER}_{USERNAME,PASSWORD}` credentials. It is
 * validated like a file. Returns `undefined` when neither of the two required
 * variables is set.
 *
 * @throws {ConfigError} when the variables do not make a valid config
 */
export function configFromEnvironment(
  getEnv: (name: string) => string | undefined = (name) => Deno.env.get(name),
): TunnelConfig | undefined {
  const keys = ENVIRONMENT_KEYS;
  const sentinels = getEnv(keys.sentinels);
  const databases = getEnv(keys.databases);
  if (sentinels === undefined && databases === undefined) return undefined;
  const list = (text: string | undefined) =>
    (text ?? "").split(/[\s,]+/).filter((item) => item !== "");
  const credentials = (usernameKey: string, passwordKey: string) => {
    const username = getEnv(usernameKey);
    if (getEnv(passwordKey) === undefined) return undefined;
    return { ...(username ? { username } : {}), passwordEnv: passwordKey };
  };
  const raw: Record<string, unknown> = {
    sentinels: list(sentinels),
    databases: list(databases).map((entry) => {
      const colon = entry.lastIndexOf(":");
      if (colon === -1) return { name: entry };
      const port = entry.slice(colon + 1);
      return { name: entry.slice(0, colon), port: /^\d+$/.test(port) ? Number(port) : port };
    }),
  };
  const bind = getEnv(keys.bind);
  if (bind) raw.bind = bind;
  const admin = getEnv(keys.admin);
  if (admin) raw.admin = admin;
  const sentinelAuth = credentials(keys.sentinelUsername, keys.sentinelPassword);
  if (sentinelAuth) raw.sentinelAuth = sentinelAuth;
  const masterAuth = credentials(keys.masterUsername, keys.masterPassword);
  if (masterAuth) raw.masterAuth = masterAuth;
  return validate(raw, "environment", "environment", getEnv);
}

function validate(
  raw: object,
  format: TunnelConfig["format"],
  source: string,
  getEnv: (name: string) => string | undefined,
): TunnelConfig {
  const schema = format === "original" ? originalSchema : documentedSchema;
  const result = schema.safeParse(raw);
  if (!result.success) {
    throw new ConfigError(
      source,
      result.error.issues.flatMap((issue) => describeIssue(issue, raw, schema, format)),
    );
  }
  const input: DocumentedInput = format === "original"
    ? fromOriginal(result.data as z.infer<typeof originalSchema>)
    : result.data as DocumentedInput;
  return resolve(input, format, source, getEnv);
}

function fromOriginal(
  original: z.infer<typeof originalSchema>,
): DocumentedInput {
  return {
    sentinels: original.Sentinels_addresses_list,
    databases: original.Databases.map((db) => ({
      name: db.Name,
      port: db.Local_port,
    })),
  };
}

function resolve(
  input: DocumentedInput,
  format: TunnelConfig["format"],
  source: string,
  getEnv: (name: string) => string | undefined,
): TunnelConfig {
  const problems: string[] = [];
  const credentials = (
    a: AuthInput | undefined,
    path: string,
  ): Credentials | undefined => {
    if (a === undefined) return undefined;
    let password = a.password;
    let passwordSource = "config";
    if (a.passwordEnv !== undefined) {
      password = getEnv(a.passwordEnv);
      passwordSource = `env ${a.passwordEnv}`;
      if (password === undefined || password === "") {
        problems.push(
          `${path}.passwordEnv: environment variable ${
            JSON.stringify(a.passwordEnv)
          } is not set: export it before starting, or write the password in "password"`,
        );
        return undefined;
      }
    }
    return {
      ...(a.username === undefined ? {} : { username: a.username }),
      password: password!,
      passwordSource,
    };
  };

  const sentinelKey = format === "original" ? "Sentinels_addresses_list" : "sentinels";
  const seenSentinels = new Map<string, number>();
  input.sentinels.forEach((s, i) => {
    const key = formatAddress(s).toLowerCase();
    const first = seenSentinels.get(key);
    if (first !== undefined) {
      problems.push(
        `${sentinelKey}[${i}]: ${
          JSON.stringify(formatAddress(s))
        } is listed twice: it is also ${sentinelKey}[${first}]; list each Sentinel once`,
      );
    } else seenSentinels.set(key, i);
  });

  const timeouts = withOverrides(DEFAULT_TIMEOUTS, input.timeouts);
  const sentinelAuth = credentials(input.sentinelAuth, "sentinelAuth");
  const globalMasterAuth = credentials(input.masterAuth, "masterAuth");
  const databasesKey = format === "original" ? "Databases" : "databases";
  const nameKey = format === "original" ? "Name" : "name";
  const portKey = format === "original" ? "Local_port" : "port";
  const seenNames = new Map<string, number>();
  const seenPorts = new Map<number, number>();
  const databases = input.databases.map((db, i): DatabaseConfig => {
    const firstName = seenNames.get(db.name);
    if (firstName !== undefined) {
      problems.push(
        `${databasesKey}[${i}].${nameKey}: ${
          JSON.stringify(db.name)
        } is used twice: it is also ${databasesKey}[${firstName}].${nameKey}; each database is listed once`,
      );
    } else seenNames.set(db.name, i);
    const firstPort = seenPorts.get(db.port);
    if (firstPort !== undefined) {
      problems.push(
        `${databasesKey}[${i}].${portKey}: ${db.port} is used twice: it is also ${databasesKey}[${firstPort}].${portKey}; give each database its own port`,
      );
    } else seenPorts.set(db.port, i);
    const masterAuth = db.masterAuth === undefined
      ? globalMasterAuth
      : credentials(db.masterAuth, `databases[${i}].masterAuth`);
    const hookInput = db.onMasterChange ?? input.onMasterChange;
    return {
      name: db.name,
      bind: db.bind ?? input.bind ?? DEFAULT_BIND,
      port: db.port,
      ...(masterAuth === undefined ? {} : { masterAuth }),
      timeouts: withOverrides(timeouts, db.timeouts),
      maxClients: db.maxClients ?? input.maxClients ?? DEFAULT_MAX_CLIENTS,
      tcpKeepAlive: input.tcpKeepAlive ?? true,
      ...(hookInput === undefined ? {} : {
        onMasterChange: {
          command: hookInput.command,
          timeoutMs: hookInput.timeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS,
        },
      }),
    };
  });
  if (problems.length > 0) throw new ConfigError(source, problems);
  return {
    format,
    sentinels: input.sentinels,
    ...(sentinelAuth === undefined ? {} : { sentinelAuth }),
    timeouts,
    databases,
    ...(input.admin === undefined ? {} : { admin: input.admin }),
    maxSentinels: input.maxSentinels ?? DEFAULT_MAX_SENTINELS,
    maxClients: input.maxClients ?? DEFAULT_MAX_CLIENTS,
  };
}

/** `base` with every value that `overrides` sets; an `undefined` value keeps the base. */
function withOverrides(
  base: Timeouts,
  overrides: Partial<Record<keyof Timeouts, number | undefined>> | undefined,
): Timeouts {
  const result = { ...base };
  for (const [key, value] of Object.entries(overrides ?? {})) {
    if (value !== undefined) result[key as keyof Timeouts] = value;
  }
  return result;
}

/** The config as JSON with every password replaced, for `--check` and the logs. */
export function redactConfig(config: TunnelConfig): unknown {
  const credentials = (c: Credentials | undefined) =>
    c === undefined ? undefined : {
      ...(c.username === undefined ? {} : { username: c.username }),
      password: c.passwordSource === "config"
        ? "<redacted>"
        : `<redacted: from ${c.passwordSource}>`,
    };
  return {
    format: config.format,
    sentinels: config.sentinels.map(formatAddress),
    sentinelAuth: credentials(config.sentinelAuth),
    timeouts: config.timeouts,
    databases: config.databases.map((db) => ({
      name: db.name,
      listen: formatAddress({ hostname: db.bind, port: db.port }),
      masterAuth: credentials(db.masterAuth),
      timeouts: {
        masterConnectMs: db.timeouts.masterConnectMs,
        masterReplyMs: db.timeouts.masterReplyMs,
        clientWaitMs: db.timeouts.clientWaitMs,
        clientIdleMs: db.timeouts.clientIdleMs,
      },
      maxClients: db.maxClients,
      tcpKeepAlive: db.tcpKeepAlive,
      onMasterChange: db.onMasterChange,
    })),
    admin: config.admin === undefined ? undefined : formatAddress(config.admin),
    maxSentinels: config.maxSentinels,
    maxClients: config.maxClients,
  };
}

function describeIssue(
  issue: z.core.$ZodIssue,
  raw: unknown,
  schema: z.ZodType,
  format: TunnelConfig["format"],
): string[] {
  const path = format === "environment" ? environmentPath(issue.path) : formatPath(issue.path);
  const where = path === "" ? "top level" : path;
  if (issue.code === "unrecognized_keys") {
    const known = knownKeys(schema, issue.path);
    return issue.keys.map((key) => {
      const near = nearest(key, known);
      return `${where}: unknown key ${JSON.stringify(key)}${
        near === undefined ? "" : `: did you mean ${JSON.stringify(near)}?`
      }${known.length > 0 ? ` (known keys: ${known.join(", ")})` : ""}`;
    });
  }
  const value = valueAt(raw, issue.path);
  if (value === undefined) return [`${where}: missing: ${issue.message}`];
  // Credentials may hold a password, even when misplaced: never echo them.
  const secret = issue.path.some((part) => typeof part === "string" && /auth$/i.test(part));
  return [
    `${where}: ${secret ? "<redacted>" : describeValue(value)} is not valid: ${issue.message}`,
  ];
}

function describeValue(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** A path in the words of the environment variables, such as `SENTINEL_TUNNEL_DATABASES[1].port`. */
function environmentPath(path: readonly PropertyKey[]): string {
  const [head, ...rest] = path;
  const variable = head === "sentinels"
    ? ENVIRONMENT_KEYS.sentinels
    : head === "databases"
    ? ENVIRONMENT_KEYS.databases
    : head === "bind"
    ? ENVIRONMENT_KEYS.bind
    : head === "admin"
    ? ENVIRONMENT_KEYS.admin
    : undefined;
  return variable === undefined
    ? formatPath(path)
    : variable + formatPath(rest).replace(/^(?=[^[])/, rest.length ? "." : "");
}

function formatPath(path: readonly PropertyKey[]): string {
  let text = "";
  for (const part of path) {
    text += typeof part === "number"
      ? `[${part}]`
      : text === ""
      ? String(part)
      : `.${String(part)}`;
  }
  return text;
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let value = raw;
  for (const part of path) {
    if (typeof value !== "object" || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[part];
  }
  return value;
}

function knownKeys(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let node: unknown = schema;
  for (const part of [...path, undefined]) {
    for (;;) {
      if (node instanceof z.ZodOptional || node instanceof z.ZodDefault) {
        node = node.unwrap();
      } else if (node instanceof z.ZodPipe) node = node.in;
      else break;
    }
    if (part === undefined) break;
    if (node instanceof z.ZodArray) node = node.element;
    else if (node instanceof z.ZodObject) node = node.shape[part as string];
    else return [];
  }
  return node instanceof z.ZodObject ? Object.keys(node.shape).filter((k) => k !== "$schema") : [];
}

/** The known key closest to `key`, if it is close enough to be a likely typo. */
function nearest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}

function lineAndColumn(
  text: string,
  offset: number,
): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text[i] === "\n") {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

function describeParseError(code: string): string {
  const descriptions: Record<string, string> = {
    InvalidSymbol: "unexpected character",
    InvalidNumberFormat: "malformed number",
    PropertyNameExpected: "expected a property name in double quotes",
    ValueExpected: "expected a value",
    ColonExpected: "expected ':'",
    CommaExpected: "expected ',' between entries",
    CloseBraceExpected: "expected '}'",
    CloseBracketExpected: "expected ']'",
    EndOfFileExpected: "unexpected text after the end of the config",
    InvalidCommentToken: "malformed comment",
    UnexpectedEndOfComment: "comment is not closed",
    UnexpectedEndOfString: "string is not closed",
    UnexpectedEndOfNumber: "number is not complete",
    InvalidUnicode: "invalid unicode escape",
    InvalidEscapeCharacter: "invalid escape character",
    InvalidCharacter: "invalid character in string",
  };
  return descriptions[code] ?? code;
}
