/**
 * The config from `SENTINEL_TUNNEL_*` environment variables alone, for
 * containers, validated like a file and reported in the variables' names.
 *
 * @module
 */
import type { TunnelConfig } from "../shared/settings.ts";
import { ConfigError } from "./config_error.ts";
import { formatPath, nearest } from "./config_messages.ts";
import { validateConfig } from "./config_resolve.ts";

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
 * `SENTINEL_TUNNEL_*` variables that are not config but belong to sentinel-tunnel all the same,
 * so they are no mistake: the buffer sizes that `main.ts` reads, the installer's options, which
 * may linger in the shell that installed it, and the script the tests run.
 */
export const OTHER_ENVIRONMENT_KEYS: readonly string[] = [
  "SENTINEL_TUNNEL_BUFFER_BYTES",
  "SENTINEL_TUNNEL_VERSION",
  "SENTINEL_TUNNEL_PREFIX",
  "SENTINEL_TUNNEL_BASE_URL",
  "SENTINEL_TUNNEL_ENTRY",
];

const PREFIX = "SENTINEL_TUNNEL_";

/**
 * Builds the config from environment variables alone, for containers:
 * `SENTINEL_TUNNEL_SENTINELS="h:p,h:p"` and `SENTINEL_TUNNEL_DATABASES="name:port,..."`,
 * with optional `SENTINEL_TUNNEL_BIND`, `SENTINEL_TUNNEL_ADMIN` and the
 * `SENTINEL_TUNNEL_{SENTINEL,MASTER}_{USERNAME,PASSWORD}` credentials. It is
 * validated like a file, and any other `SENTINEL_TUNNEL_*` variable is a
 * mistake (most likely a misspelt name). Returns `undefined` when no
 * `SENTINEL_TUNNEL_*` config variable, known or not, is set.
 *
 * @param env The environment, such as `Deno.env.toObject()`.
 * @throws {ConfigError} when the variables do not make a valid config
 */
export function configFromEnvironment(
  env: Readonly<Record<string, string | undefined>> = Deno.env.toObject(),
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
  const result = validateConfig(raw, "environment", { getEnv, describePath: environmentPath });
  if ("problems" in result) problems.push(...result.problems);
  if (problems.length > 0) throw new ConfigError("environment", problems);
  return (result as { config: TunnelConfig }).config;
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
