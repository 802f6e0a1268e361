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
const SERVER_NAME_RULE =
  'serverName is a host name or IP address that the certificates name, such as "redis.internal"';
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
const ROLE_RULE =
  'role is "master" (the port serves the master; the default) or "replica" (a read port, served by the replicas)';
const role = z.enum(["master", "replica"], { error: ROLE_RULE });
/** 2^40 bytes (1 TiB): far past any replication backlog, and exact as a JSON number. */
const MAX_LAG_BYTES_RULE = "maxLagBytes is a whole number of bytes from 0 to 1099511627776";
const maxLagBytes = z.number({ error: MAX_LAG_BYTES_RULE }).int({ error: MAX_LAG_BYTES_RULE })
  .min(0, { error: MAX_LAG_BYTES_RULE }).max(2 ** 40, { error: MAX_LAG_BYTES_RULE });
const WHEN_NO_REPLICA_RULE =
  'whenNoReplica is "reject" (a client waits clientWaitMs for a usable replica, then gets an error; the default) or "master" (it goes to the master)';
const whenNoReplica = z.enum(["master", "reject"], { error: WHEN_NO_REPLICA_RULE });
const maxLagDescription =
  "A replica further behind the master than this many bytes of replication stream gets no new client and loses its clients";
const whenNoReplicaDescription =
  'With no usable replica: "reject" (a client waits clientWaitMs, then gets a RESP error) or "master" (it goes to the confirmed master, so writes succeed through the read port)';
const PRECONNECT_RULE = "preconnect is a whole number of connections from 0 to 1000";
const preconnect = z.number({ error: PRECONNECT_RULE }).int({ error: PRECONNECT_RULE })
  .min(0, { error: PRECONNECT_RULE }).max(1000, { error: PRECONNECT_RULE });
const preconnectDescription =
  "Connections kept open and untouched (no AUTH, no command; with TLS, handshake done) to the confirmed master, each handed to a new client at once instead of a dial; emptied whenever the master stops being confirmed. They count against maxClients. 0 turns it off";
const FENCE_RULE =
  'fence is false (off) or { "afterMs": N }, N a whole number of milliseconds from 100 to 3600000, such as { "afterMs": 5000 }';
const fence = z.strictObject({
  afterMs: z.number({ error: FENCE_RULE }).int({ error: FENCE_RULE }).min(100, {
    error: FENCE_RULE,
  }).max(3_600_000, { error: FENCE_RULE }).describe(
    "How long the master may go without the confirmation of a majority of the configured Sentinels before the fence closes",
  ),
}, { error: FENCE_RULE });
const fenceDescription =
  "The write fence, off by default: when no majority of the configured Sentinels has confirmed the current master for afterMs, its clients are cut and new ones refused with a RESP error until a majority confirms a master again. Safety over availability when the tunnel is cut off from the Sentinels";
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
  username: nonEmpty("a username").optional().describe(
    "An ACL user name. Default: the default user",
  ),
  password: nonEmpty("a password").optional().describe(
    'The password, written in this file; or give "passwordEnv"',
  ),
  passwordEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
    error: "an environment variable name is letters, digits and underscores",
  }).optional().describe(
    "The name of the environment variable that holds the password, to keep it out of this file",
  ),
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
  }).min(1, { error: "command names at least the program to run" }).describe(
    "The program and its arguments; no shell is involved",
  ),
  timeoutMs: millis.optional().describe(
    "How long it may run before it is killed, with its process group (milliseconds). Default 10000",
  ),
}, { error: 'onMasterChange is an object, such as { "command": ["/usr/local/bin/on-failover"] }' });
const PEM_PATH_RULE = 'a file path is a non-empty string, such as "/etc/redis/tls/ca.crt"';
/** A path to a PEM file; `missing` is the sentence when a required one is absent. */
const pemPath = (missing = PEM_PATH_RULE) =>
  z.string({ error: (issue) => issue.input === undefined ? missing : PEM_PATH_RULE })
    .min(1, { error: PEM_PATH_RULE });
const TLS_RULE =
  'tls is an object, such as { "caFile": "/etc/redis/tls/ca.crt" }; {} is TLS with the default roots';
const CERT_KEY_RULE =
  '"certFile" and "keyFile" go together: give both (the client certificate and its private key) or neither';
const tlsFileDescription = (what: string) =>
  `${what}. A PEM file; a relative path is relative to the config file's directory. Read at start and on every reload`;
/** TLS towards Sentinels or masters. */
const tlsClient = z.strictObject({
  caFile: pemPath().optional().describe(
    tlsFileDescription(
      "CA certificates to trust, instead of the roots Deno trusts by default (Mozilla's): with caFile, a certificate must chain to one of its CAs",
    ),
  ),
  certFile: pemPath().optional().describe(
    tlsFileDescription(
      'A client certificate chain, for servers with "tls-auth-clients yes"; needs "keyFile"',
    ),
  ),
  keyFile: pemPath().optional().describe(
    tlsFileDescription('The private key of "certFile", unencrypted'),
  ),
  serverName: z.string({ error: SERVER_NAME_RULE }).refine(isValidHost, {
    error: SERVER_NAME_RULE,
  }).optional().describe(
    "The name every node's certificate is checked against. Default: the host name or IP address dialled",
  ),
  verify: z.boolean({ error: "verify is true or false" }).optional().describe(
    "Whether the peer's certificate is checked at all; false lets anyone on the network path pose as it, and is logged as a warning. Default true",
  ),
}, { error: TLS_RULE }).superRefine((tls, ctx) => {
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
    ctx.addIssue({
      code: "custom",
      path: [tls.certFile === undefined ? "certFile" : "keyFile"],
      message: CERT_KEY_RULE,
    });
  }
});
/** `false` (plaintext) or TLS settings that replace the top-level ones. */
const tlsOrOff = (what: string) =>
  z.union([z.literal(false), tlsClient], {
    error:
      `${what} is false (plaintext) or an object, such as { "caFile": "/etc/redis/tls/ca.crt" }`,
  });
const LISTEN_TLS_RULE =
  'listenTls is an object with "certFile" and "keyFile", such as { "certFile": "/etc/sentinel-tunnel/tls.crt", "keyFile": "/etc/sentinel-tunnel/tls.key" }';
/** TLS on the local ports. */
const listenTls = z.strictObject({
  certFile: pemPath(
    'listenTls needs "certFile": the certificate chain the port serves (PEM)',
  ).describe(tlsFileDescription("The certificate chain the port serves")),
  keyFile: pemPath('listenTls needs "keyFile": the private key of "certFile" (PEM)').describe(
    tlsFileDescription('The private key of "certFile", unencrypted'),
  ),
}, { error: LISTEN_TLS_RULE });
const tlsDescription =
  "TLS to the Sentinels and every master (with Redis's tls-port); plaintext when absent. {} is TLS with the default roots";
const listenTlsDescription =
  "Serve the local ports over TLS with this certificate; clients then connect with TLS. Plaintext when absent";

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
  tls: tlsClient.optional().describe(tlsDescription),
  sentinelTls: tlsOrOff("sentinelTls").optional().describe(
    "TLS to the Sentinels: false for plaintext Sentinels while the masters use TLS, or an object that replaces the top-level tls for them entirely (no field is merged). Default: the top-level tls",
  ),
  listenTls: listenTls.optional().describe(`${listenTlsDescription}; for every database`),
  maxLagBytes: maxLagBytes.optional().describe(
    `${maxLagDescription}; for every "role": "replica" entry. Default 1048576 (1 MiB)`,
  ),
  whenNoReplica: whenNoReplica.optional().describe(
    `${whenNoReplicaDescription}; for every "role": "replica" entry. Default "reject"`,
  ),
  fence: fence.optional().describe(`${fenceDescription}; for every database`),
  preconnect: preconnect.optional().describe(
    `${preconnectDescription}; for every "role": "master" entry. Default 4 for a database with TLS to its master, else 0`,
  ),
  databases: z.array(
    z.strictObject({
      name: nonEmpty("a database name (the Sentinel master name)").describe(
        "The Sentinel master name",
      ),
      port: port.describe("The local port clients connect to"),
      role: role.optional().describe(
        'What the port serves: "master", or "replica" for a read port served by the replicas. Default "master"',
      ),
      maxLagBytes: maxLagBytes.optional().describe(
        `${maxLagDescription}. "role": "replica" entries only. Default: the top-level maxLagBytes, else 1048576 (1 MiB)`,
      ),
      whenNoReplica: whenNoReplica.optional().describe(
        `${whenNoReplicaDescription}. "role": "replica" entries only. Default: the top-level whenNoReplica, else "reject"`,
      ),
      bind: bind.optional().describe("Where this database's port listens"),
      masterAuth: auth.optional().describe(`${authDescription}, for this database's ROLE checks`),
      timeouts: z.strictObject(databaseTimeoutFields).optional().describe(
        "This database's master deadlines",
      ),
      onMasterChange: hook.optional().describe(hookDescription),
      maxClients: maxClients.optional().describe(
        "The most live clients of this database. Default: the top-level maxClients",
      ),
      tls: tlsOrOff("tls").optional().describe(
        "TLS to this database's master: false for plaintext, or an object that replaces the top-level tls entirely (no field is merged: repeat caFile and the rest). Default: the top-level tls",
      ),
      listenTls: z.union([z.literal(false), listenTls], {
        error:
          'listenTls is false (plaintext) or an object with "certFile" and "keyFile", such as { "certFile": "/etc/sentinel-tunnel/tls.crt", "keyFile": "/etc/sentinel-tunnel/tls.key" }',
      }).optional().describe(
        `${listenTlsDescription}: false turns a top-level listenTls off for this database; an object replaces it. Default: the top-level listenTls`,
      ),
      preconnect: preconnect.optional().describe(
        `${preconnectDescription}. "role": "master" entries only. Default: the top-level preconnect, else 4 with TLS to the master, 0 without`,
      ),
      fence: z.union([z.literal(false), fence], { error: FENCE_RULE }).optional().describe(
        `${fenceDescription}. false turns a top-level fence off for this database. Default: the top-level fence`,
      ),
    }).superRefine((db, ctx) => {
      // Zod may run this on an entry with other problems: only a role known to be master counts.
      if (db.role === "replica" && db.preconnect !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["preconnect"],
          message: `preconnect applies to "role": "master" entries only, and database ${
            JSON.stringify(db.name)
          } on port ${db.port} is a read port ("role": "replica"); remove preconnect, or add it to the name's master entry`,
        });
      }
      if (db.role !== undefined && db.role !== "master") return;
      for (const field of ["maxLagBytes", "whenNoReplica"] as const) {
        if (db[field] === undefined) continue;
        ctx.addIssue({
          code: "custom",
          path: [field],
          message: `${field} applies to "role": "replica" entries only, and database ${
            JSON.stringify(db.name)
          } on port ${db.port} has role "master"${
            db.role === undefined ? " (the default)" : ""
          }; add "role": "replica" to make it a read port, or remove ${field}`,
        });
      }
    }),
    { error: "databases is a list of objects" },
  ).min(1, {
    error: 'list at least one database, such as [{ "name": "mymaster", "port": 6380 }]',
  }).describe(
    "One entry per local port: a Sentinel master name and what the port serves. A name may have several entries, such as a master port and a read port",
  ),
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
/** TLS towards Sentinels or masters, as validated. */
export type TlsClientInput = z.infer<typeof tlsClient>;
/** TLS on a local port, as validated. */
export type TlsServerInput = z.infer<typeof listenTls>;
/** Credentials as validated. */
export type AuthInput = z.infer<typeof auth>;
/** A config in the original format, as validated. */
export type OriginalInput = z.infer<typeof originalSchema>;
