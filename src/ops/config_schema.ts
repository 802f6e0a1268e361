/**
 * The config formats as zod schemas: the documented one, from which
 * `config/schema.json` is generated, and the original sentinel_tunnel one.
 * Each rule carries the sentence an operator reads when a value breaks it.
 *
 * @module
 */
import { z } from "zod";
import { isValidHost, parseAddress, parseAdminAddress, parsePort } from "../shared/address.ts";

const PORT_RULE = "a port is a whole number from 1 to 65535";
const MAX_SENTINELS_RULE = "maxSentinels is a whole number from 1 to 256";
const MS_RULE = "a duration is a whole number of milliseconds from 1 to 600000";
const ADDRESS_RULE = 'an address is "host:port", such as "127.0.0.1:26379" or "[::1]:26379"';

const IDLE_RULE =
  "an idle limit is 0 (off) or a whole number of milliseconds from 1000 to 86400000";
// Each idle tunnel checks a timer a quarter of the limit apart: below a second that costs too much.
const idleMillis = z.number({ error: IDLE_RULE }).int({ error: IDLE_RULE })
  .max(86_400_000, { error: IDLE_RULE })
  .refine((ms) => ms === 0 || ms >= 1000, { error: IDLE_RULE });
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

/** The original sentinel_tunnel (RedisLabs) format. */
export const originalSchema = z.strictObject({
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

/** A config in the documented format, as validated. */
export type DocumentedInput = z.infer<typeof documentedSchema>;
/** Credentials as validated. */
export type AuthInput = z.infer<typeof auth>;
/** A config in the original format, as validated. */
export type OriginalInput = z.infer<typeof originalSchema>;
