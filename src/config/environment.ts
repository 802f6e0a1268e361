/**
 * The config from `SENTINEL_TUNNEL_*` environment variables alone, for
 * containers, validated like a file and reported in the variables' names.
 *
 * @module
 */
import type { TunnelConfig } from "../shared/settings.ts";
import { ConfigError } from "./config_error.ts";
import { describeValue, formatPath, nearest } from "./messages.ts";
import { validateConfig, type ValidateConfigOptions } from "./resolve.ts";

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
  tls: "SENTINEL_TUNNEL_TLS",
  tlsCaFile: "SENTINEL_TUNNEL_TLS_CA_FILE",
  tlsCertFile: "SENTINEL_TUNNEL_TLS_CERT_FILE",
  tlsKeyFile: "SENTINEL_TUNNEL_TLS_KEY_FILE",
  tlsServerName: "SENTINEL_TUNNEL_TLS_SERVER_NAME",
  tlsVerify: "SENTINEL_TUNNEL_TLS_VERIFY",
  sentinelTls: "SENTINEL_TUNNEL_SENTINEL_TLS",
  listenTlsCertFile: "SENTINEL_TUNNEL_LISTEN_TLS_CERT_FILE",
  listenTlsKeyFile: "SENTINEL_TUNNEL_LISTEN_TLS_KEY_FILE",
} as const;

/** The `tls` field each `SENTINEL_TUNNEL_TLS_*` variable sets. */
const TLS_FIELDS = {
  caFile: ENVIRONMENT_KEYS.tlsCaFile,
  certFile: ENVIRONMENT_KEYS.tlsCertFile,
  keyFile: ENVIRONMENT_KEYS.tlsKeyFile,
  serverName: ENVIRONMENT_KEYS.tlsServerName,
  verify: ENVIRONMENT_KEYS.tlsVerify,
} as const;

/** The `listenTls` field each `SENTINEL_TUNNEL_LISTEN_TLS_*` variable sets. */
const LISTEN_TLS_FIELDS = {
  certFile: ENVIRONMENT_KEYS.listenTlsCertFile,
  keyFile: ENVIRONMENT_KEYS.listenTlsKeyFile,
} as const;

/** Options for {@linkcode configFromEnvironment}. */
export type EnvironmentConfigOptions = Pick<
  ValidateConfigOptions,
  "readTextFile" | "baseDirectory"
>;

/**
 * `SENTINEL_TUNNEL_*` variables that are not config but belong to sentinel-tunnel all the same,
 * so they are no mistake: the buffer sizes that `main.ts` reads, the installer's options, which
 * may linger in the shell that installed it, and the script or executable the tests run.
 */
export const OTHER_ENVIRONMENT_KEYS: readonly string[] = [
  "SENTINEL_TUNNEL_BUFFER_BYTES",
  "SENTINEL_TUNNEL_VERSION",
  "SENTINEL_TUNNEL_PREFIX",
  "SENTINEL_TUNNEL_BASE_URL",
  "SENTINEL_TUNNEL_ENTRY",
  "SENTINEL_TUNNEL_BINARY",
];

const PREFIX = "SENTINEL_TUNNEL_";

/**
 * Builds the config from environment variables alone, for containers:
 * `SENTINEL_TUNNEL_SENTINELS="h:p,h:p"` and `SENTINEL_TUNNEL_DATABASES="name:port,..."`
 * (`name:port:replica` for a read port, `name:port:master` the default),
 * with optional `SENTINEL_TUNNEL_BIND`, `SENTINEL_TUNNEL_ADMIN` and the
 * `SENTINEL_TUNNEL_{SENTINEL,MASTER}_{USERNAME,PASSWORD}` credentials, and TLS:
 * `SENTINEL_TUNNEL_TLS=true` or any `SENTINEL_TUNNEL_TLS_{CA_FILE,CERT_FILE,KEY_FILE,
 * SERVER_NAME,VERIFY}` turns it on, `SENTINEL_TUNNEL_SENTINEL_TLS=false` keeps the
 * Sentinels plaintext, `SENTINEL_TUNNEL_LISTEN_TLS_{CERT,KEY}_FILE` serve the ports
 * over TLS. It is validated like a file, and any other `SENTINEL_TUNNEL_*` variable
 * is a mistake (most likely a misspelt name). Returns `undefined` when no
 * `SENTINEL_TUNNEL_*` config variable, known or not, is set.
 *
 * @param env The environment, such as `Deno.env.toObject()`.
 * @param options How TLS files are read; relative paths are relative to the current directory.
 * @throws {ConfigError} when the variables do not make a valid config
 */
export function configFromEnvironment(
  env: Readonly<Record<string, string | undefined>> = Deno.env.toObject(),
  options: EnvironmentConfigOptions = {},
): TunnelConfig | undefined {
  const getEnv = (name: string) => Object.hasOwn(env, name) ? env[name] : undefined;
  const keys = ENVIRONMENT_KEYS;
  const known: readonly string[] = Object.values(keys);
  const unknown = Object.keys(env).filter((name) =>
    name.startsWith(PREFIX) && env[name] !== undefined && !known.includes(name) &&
    !OTHER_ENVIRONMENT_KEYS.includes(name)
  ).sort();
  const sentinels = getEnv(keys.sentinels);
  const databases = getEnv(keys.databases);
  if (sentinels === undefined && databases === undefined && unknown.length === 0) return undefined;
  const problems = unknown.map((name) => {
    const near = nearest(name.slice(PREFIX.length), known.map((k) => k.slice(PREFIX.length)));
    return `${name}: unknown variable${
      near === undefined ? "" : `: did you mean ${PREFIX}${near}?`
    } (known: ${known.join(", ")}); rename or unset it`;
  });
  const list = (text: string | undefined) =>
    (text ?? "").split(/[\s,]+/).filter((item) => item !== "");
  const credentials = (usernameKey: string, passwordKey: string) => {
    const username = getEnv(usernameKey);
    if (getEnv(passwordKey) === undefined) return undefined;
    return { ...(username ? { username } : {}), passwordEnv: passwordKey };
  };
  const raw: Record<string, unknown> = {
    sentinels: list(sentinels),
    databases: list(databases).map(databaseFromEnvironment),
  };
  const bind = getEnv(keys.bind);
  if (bind) raw.bind = bind;
  const admin = getEnv(keys.admin);
  if (admin) raw.admin = admin;
  const sentinelAuth = credentials(keys.sentinelUsername, keys.sentinelPassword);
  if (sentinelAuth) raw.sentinelAuth = sentinelAuth;
  const masterAuth = credentials(keys.masterUsername, keys.masterPassword);
  if (masterAuth) raw.masterAuth = masterAuth;
  Object.assign(raw, tlsFromEnvironment(getEnv, problems));
  const result = validateConfig(raw, "environment", {
    getEnv,
    describePath: environmentPath,
    ...(options.readTextFile === undefined ? {} : { readTextFile: options.readTextFile }),
    ...(options.baseDirectory === undefined ? {} : { baseDirectory: options.baseDirectory }),
  });
  if ("problems" in result) problems.push(...result.problems);
  if (problems.length > 0) throw new ConfigError("environment", problems);
  return (result as { config: TunnelConfig }).config;
}

/**
 * One entry of `SENTINEL_TUNNEL_DATABASES`: `name:port`, or `name:port:role` with a role such as
 * `replica`. A last part of letters after a port is the role (which the schema then checks);
 * anything else is the port, so a name may hold colons.
 */
function databaseFromEnvironment(entry: string): Record<string, unknown> {
  const withRole = /^(.*:[^:]*):([A-Za-z]+)$/.exec(entry);
  const rest = withRole?.[1] ?? entry;
  const role = withRole === null ? {} : { role: withRole[2] };
  const colon = rest.lastIndexOf(":");
  if (colon === -1) return { name: rest, ...role };
  const port = rest.slice(colon + 1);
  return {
    name: rest.slice(0, colon),
    port: /^\d+$/.test(port) ? Number(port) : port,
    ...role,
  };
}

/**
 * The `tls`, `sentinelTls` and `listenTls` fields the variables set; a problem for each variable
 * that is not true or false where it must be, and for settings that contradict each other. An
 * empty variable counts as unset.
 */
function tlsFromEnvironment(
  getEnv: (name: string) => string | undefined,
  problems: string[],
): Record<string, unknown> {
  const keys = ENVIRONMENT_KEYS;
  const text = (name: string) => getEnv(name) || undefined;
  const flag = (name: string): boolean | undefined => {
    const value = text(name);
    if (value === undefined) return undefined;
    if (/^\s*true\s*$/i.test(value)) return true;
    if (/^\s*false\s*$/i.test(value)) return false;
    problems.push(`${name}: ${describeValue(value)} is not valid: give true or false`);
    return undefined;
  };
  const raw: Record<string, unknown> = {};
  const tls: Record<string, unknown> = {};
  for (const [field, name] of Object.entries(TLS_FIELDS)) {
    const value = name === keys.tlsVerify ? flag(name) : text(name);
    if (value !== undefined) tls[field] = value;
  }
  const given = Object.values(TLS_FIELDS).filter((name) => text(name) !== undefined);
  const pair = (certKey: string, keyKey: string, what: string) => {
    const [cert, key] = [text(certKey), text(keyKey)];
    if ((cert === undefined) === (key === undefined)) return true;
    const [set, unset] = cert === undefined ? [keyKey, certKey] : [certKey, keyKey];
    problems.push(
      `${unset}: missing: ${set} is set, and ${what} needs both a certificate and its private key; set both or neither`,
    );
    return false;
  };
  const tlsOn = flag(keys.tls);
  if (tlsOn === false && given.length > 0) {
    problems.push(
      `${keys.tls}: is false, but ${given.join(" and ")} ${
        given.length === 1 ? "is" : "are"
      } set, which turns TLS on: a contradiction; unset ${keys.tls} to use TLS, or unset ${
        given.length === 1 ? "that" : "those"
      } for plaintext`,
    );
  } else if (
    (tlsOn === true || given.length > 0) &&
    pair(keys.tlsCertFile, keys.tlsKeyFile, "a client certificate")
  ) {
    raw.tls = tls;
  }
  const sentinelTls = flag(keys.sentinelTls);
  if (sentinelTls === false) raw.sentinelTls = false;
  else if (sentinelTls === true && tlsOn !== true && given.length === 0) {
    problems.push(
      `${keys.sentinelTls}: is true, but TLS is off: set ${keys.tls}=true, or a SENTINEL_TUNNEL_TLS_* variable, to turn it on`,
    );
  }
  const listenCert = text(keys.listenTlsCertFile);
  const listenKey = text(keys.listenTlsKeyFile);
  if (
    (listenCert !== undefined || listenKey !== undefined) &&
    pair(keys.listenTlsCertFile, keys.listenTlsKeyFile, "TLS on the local ports")
  ) {
    raw.listenTls = { certFile: listenCert, keyFile: listenKey };
  }
  return raw;
}

/** A path in the words of the environment variables, such as `SENTINEL_TUNNEL_DATABASES[1].port`. */
function environmentPath(path: readonly PropertyKey[]): string {
  const [head, ...rest] = path;
  const field = rest[0] as string;
  if (head === "tls" && rest.length === 1 && Object.hasOwn(TLS_FIELDS, field)) {
    return TLS_FIELDS[field as keyof typeof TLS_FIELDS];
  }
  if (head === "listenTls" && rest.length === 1 && Object.hasOwn(LISTEN_TLS_FIELDS, field)) {
    return LISTEN_TLS_FIELDS[field as keyof typeof LISTEN_TLS_FIELDS];
  }
  if (head === "sentinelTls" && rest.length === 0) return ENVIRONMENT_KEYS.sentinelTls;
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
