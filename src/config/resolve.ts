/**
 * From a parsed config value to {@linkcode TunnelConfig}: validated against its
 * format's schema, then resolved: defaults and overrides applied, passwords read
 * from the environment, TLS files read, every Sentinel checked to be listed
 * once, and every two listen addresses checked not to clash. One master name may
 * have several entries (a master port and read ports), each on its own port.
 *
 * @module
 */
import { formatAddress } from "../shared/address.ts";
import {
  MASTER_FIELDS,
  type MasterField,
  masterFieldsDiffering,
} from "../shared/master_settings.ts";
import {
  type Credentials,
  type DatabaseConfig,
  DEFAULT_BIND,
  DEFAULT_HOOK_TIMEOUT_MS,
  DEFAULT_MAX_CLIENTS,
  DEFAULT_MAX_LAG_BYTES,
  DEFAULT_MAX_SENTINELS,
  DEFAULT_TIMEOUTS,
  DEFAULT_TLS_PRECONNECT,
  type Timeouts,
  type TunnelConfig,
} from "../shared/settings.ts";
import { describeIssue, type DescribePath, formatPath } from "./messages.ts";
import { TlsFiles } from "./tls_files.ts";
import {
  type AuthInput,
  type DocumentedInput,
  documentedSchema,
  type OriginalInput,
  originalSchema,
} from "./schema.ts";

/** Options for {@linkcode validateConfig}. */
export interface ValidateConfigOptions {
  /** Reads the environment variables named by `passwordEnv`. */
  getEnv: (name: string) => string | undefined;
  /** How messages write a field path. @default {formatPath} */
  describePath?: DescribePath;
  /**
   * Reads the TLS files (`caFile`, `certFile`, `keyFile`), on every validation so that a reload
   * reads rotated files. @default {readPemFileSync} (Deno.readTextFileSync of a regular file of
   * at most 1 MiB)
   */
  readTextFile?: (path: string) => string;
  /**
   * What relative TLS file paths are relative to: the config file's directory, or the current
   * directory for the environment. @default {Deno.cwd()}
   */
  baseDirectory?: string;
}

/** A valid config, or the problems that make it invalid (one line each, without the source). */
export type Validated = { config: TunnelConfig } | { problems: string[] };

/** Validates a parsed config value in `format` and resolves it. */
export function validateConfig(
  raw: object,
  format: TunnelConfig["format"],
  options: ValidateConfigOptions,
): Validated {
  const schema = format === "original" ? originalSchema : documentedSchema;
  const result = schema.safeParse(raw);
  if (!result.success) {
    return {
      problems: result.error.issues.flatMap((issue) =>
        describeIssue(issue, raw, schema, options.describePath ?? formatPath)
      ),
    };
  }
  const input: DocumentedInput = format === "original"
    ? fromOriginal(result.data as OriginalInput)
    : result.data as DocumentedInput;
  return resolve(input, format, options);
}

function fromOriginal(original: OriginalInput): DocumentedInput {
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
  options: ValidateConfigOptions,
): Validated {
  const { getEnv } = options;
  const problems: string[] = [];
  const credentials = (
    a: AuthInput | undefined,
    path: string,
  ): Credentials | undefined => {
    if (a === undefined) return undefined;
    let password = a.password;
    let passwordSource = "config";
    if (a.passwordEnv !== undefined) {
      const name = JSON.stringify(a.passwordEnv);
      password = getEnv(a.passwordEnv);
      passwordSource = `env ${a.passwordEnv}`;
      if (password === undefined) {
        problems.push(
          `${path}.passwordEnv: environment variable ${name} is not set: export it before starting, or write the password in "password"`,
        );
        return undefined;
      }
      if (password === "") {
        problems.push(
          format === "environment"
            ? `${a.passwordEnv}: is set but empty: put the password in it, or unset it if no password is needed`
            : `${path}.passwordEnv: environment variable ${name} is set but empty: put the password in it, or remove ${path} if no password is needed`,
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

  const describePath = options.describePath ?? formatPath;
  const sentinelKey = format === "original" ? "Sentinels_addresses_list" : "sentinels";
  const seenSentinels = new Map<string, number>();
  input.sentinels.forEach((s, i) => {
    const key = formatAddress(s).toLowerCase();
    const first = seenSentinels.get(key);
    if (first !== undefined) {
      problems.push(
        `${describePath([sentinelKey, i])}: ${
          JSON.stringify(formatAddress(s))
        } is listed twice: it is also ${
          describePath([sentinelKey, first])
        }; list each Sentinel once`,
      );
    } else seenSentinels.set(key, i);
  });

  const timeouts = withOverrides(DEFAULT_TIMEOUTS, input.timeouts);
  const sentinelAuth = credentials(input.sentinelAuth, "sentinelAuth");
  const globalMasterAuth = credentials(input.masterAuth, "masterAuth");
  // Each TLS setting is resolved once: a database that inherits the top-level one shares it.
  const tlsFiles = new TlsFiles({
    ...(options.readTextFile === undefined ? {} : { readTextFile: options.readTextFile }),
    ...(options.baseDirectory === undefined ? {} : { baseDirectory: options.baseDirectory }),
    describePath,
  }, problems);
  const globalTls = input.tls && tlsFiles.client(input.tls, ["tls"]);
  const sentinelTls = input.sentinelTls === undefined
    ? globalTls
    : input.sentinelTls && tlsFiles.client(input.sentinelTls, ["sentinelTls"]);
  const globalListenTls = input.listenTls && tlsFiles.server(input.listenTls, ["listenTls"]);
  const databasesKey = format === "original" ? "Databases" : "databases";
  const portKey = format === "original" ? "Local_port" : "port";
  const listens = new ListenAddresses();
  /** An entry in messages: `databases[1] ("mymaster", role "replica")`. */
  const entry = (index: number, withAddress: boolean) => {
    const db = input.databases[index]!;
    const address = formatAddress({
      hostname: db.bind ?? input.bind ?? DEFAULT_BIND,
      port: db.port,
    });
    return `${describePath([databasesKey, index])} (${JSON.stringify(db.name)}, role "${
      db.role ?? "master"
    }"${withAddress ? `, ${address}` : ""})`;
  };
  const databases = input.databases.map((db, i): DatabaseConfig => {
    const bind = db.bind ?? input.bind ?? DEFAULT_BIND;
    const clash = listens.add(bind, db.port, i);
    if (clash !== undefined) {
      const here = describePath([databasesKey, i, portKey]);
      const there = describePath([databasesKey, clash.index, portKey]);
      problems.push(
        clash.wildcard === undefined
          ? `${here}: ${db.port} is used twice: it is also ${there}, so ${entry(i, false)} and ${
            entry(clash.index, false)
          } would both listen on ${
            formatAddress({ hostname: bind, port: db.port })
          }; give one of them another port`
          : `${here}: ${db.port} overlaps ${there}: ${entry(i, true)} and ${
            entry(clash.index, true)
          } cannot both listen, as ${JSON.stringify(clash.wildcard)} takes every ${
            clash.wildcard === "0.0.0.0" ? "IPv4 " : ""
          }address; give one of them another port`,
      );
    }
    const fence = db.fence === undefined ? input.fence : db.fence || undefined;
    // A healthy check brings the Sentinels' word at most this far apart: a shorter fence would
    // close between two of them.
    const checkSpanMs = timeouts.pollIntervalMs + timeouts.sentinelConnectMs +
      timeouts.sentinelReplyMs;
    if (fence && fence.afterMs <= checkSpanMs) {
      const own = db.fence !== undefined;
      problems.push(
        `${
          describePath(own ? [databasesKey, i, "fence", "afterMs"] : ["fence", "afterMs"])
        }: ${fence.afterMs} is too short${
          own ? "" : ` for ${entry(i, false)}`
        }: the Sentinels are asked every pollIntervalMs (${timeouts.pollIntervalMs}) and answer within sentinelConnectMs + sentinelReplyMs (${
          timeouts.sentinelConnectMs + timeouts.sentinelReplyMs
        }), so the fence would close between two healthy checks; give it more than ${checkSpanMs} ms`,
      );
    }
    const masterAuth = db.masterAuth === undefined
      ? globalMasterAuth
      : credentials(db.masterAuth, `databases[${i}].masterAuth`);
    const hookInput = db.onMasterChange ?? input.onMasterChange;
    const tls = db.tls === undefined
      ? globalTls
      : db.tls && tlsFiles.client(db.tls, ["databases", i, "tls"]);
    const listenTls = db.listenTls === undefined
      ? globalListenTls
      : db.listenTls && tlsFiles.server(db.listenTls, ["databases", i, "listenTls"]);
    return {
      name: db.name,
      bind,
      port: db.port,
      role: db.role ?? "master",
      maxLagBytes: db.maxLagBytes ?? input.maxLagBytes ?? DEFAULT_MAX_LAG_BYTES,
      whenNoReplica: db.whenNoReplica ?? input.whenNoReplica ?? "reject",
      ...(fenceOf(db.fence, input.fence)),
      ...(masterAuth === undefined ? {} : { masterAuth }),
      timeouts: withOverrides(timeouts, db.timeouts),
      maxClients: db.maxClients ?? input.maxClients ?? DEFAULT_MAX_CLIENTS,
      preconnect: (db.role ?? "master") === "replica"
        ? 0
        : db.preconnect ?? input.preconnect ?? (tls ? DEFAULT_TLS_PRECONNECT : 0),
      tcpKeepAlive: input.tcpKeepAlive ?? true,
      ...(hookInput === undefined ? {} : {
        onMasterChange: {
          command: hookInput.command,
          timeoutMs: hookInput.timeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS,
        },
      }),
      ...(tls ? { tls } : {}),
      ...(listenTls ? { listenTls } : {}),
    };
  });
  problems.push(...disagreements(databases, (i, field) => {
    const [head, ...rest] = field.split(".");
    const own = input.databases[i] as Record<string, unknown>;
    // Name the entry's own key when it set one, else the entry.
    const set = head === "timeouts"
      ? (own.timeouts as Record<string, unknown> | undefined)?.[rest[0]!] !== undefined
      : own[head!] !== undefined;
    return describePath(set ? [databasesKey, i, head!, ...rest] : [databasesKey, i]);
  }, entry));
  if (problems.length > 0) return { problems };
  return {
    config: {
      format,
      sentinels: input.sentinels,
      ...(sentinelAuth === undefined ? {} : { sentinelAuth }),
      ...(sentinelTls ? { sentinelTls } : {}),
      timeouts,
      databases,
      ...(input.admin === undefined ? {} : { admin: input.admin }),
      maxSentinels: input.maxSentinels ?? DEFAULT_MAX_SENTINELS,
      maxClients: input.maxClients ?? DEFAULT_MAX_CLIENTS,
    },
  };
}

/**
 * Entries of one master name that disagree on a setting of the name's: one
 * control plane checks the master for all of them, with one set of
 * credentials, TLS, deadlines, fence and hook. Each problem names both entries
 * and the field.
 */
function disagreements(
  databases: readonly DatabaseConfig[],
  pathOf: (index: number, field: MasterField) => string,
  entry: (index: number, withAddress: boolean) => string,
): string[] {
  const problems: string[] = [];
  const first = new Map<string, number>();
  databases.forEach((database, i) => {
    const j = first.get(database.name);
    if (j === undefined) {
      first.set(database.name, i);
      return;
    }
    for (const field of masterFieldsDiffering(databases[j]!, database)) {
      problems.push(
        `${pathOf(i, field)}: ${field} differs from ${
          entry(j, true)
        }: the entries of one master name share ${
          MASTER_FIELDS.join(", ")
        }, as one control plane checks their master; set ${field} alike on both, or once at the top level`,
      );
    }
  });
  return problems;
}

/**
 * The listen addresses taken so far, to find two databases that cannot both listen: the same
 * address and port, or a port on a wildcard address (`0.0.0.0` takes every IPv4 address, `::`
 * every address, IPv4 included on a dual-stack system) and the same port on another address.
 * The same port on two specific addresses is fine. Each check is a few map lookups.
 */
class ListenAddresses {
  #exact = new Map<string, { bind: string; index: number }>();
  /** Per port: the first database on `::`, on `0.0.0.0`, on any address, on an IPv4 one. */
  #ports = new Map<
    number,
    Partial<Record<"v6Any" | "v4Any" | "first" | "firstV4", { bind: string; index: number }>>
  >();

  /**
   * Records `bind:port` for database `index`; returns the earlier database it clashes with, and
   * for a clash that is not the same address, the wildcard (`::` or `0.0.0.0`) that causes it.
   */
  add(
    bind: string,
    port: number,
    index: number,
  ): { bind: string; index: number; wildcard?: string } | undefined {
    const host = normalizeHost(bind);
    const key = `${host} ${port}`;
    const same = this.#exact.get(key);
    if (same !== undefined) return same;
    const entry = { bind, index };
    this.#exact.set(key, entry);
    let seen = this.#ports.get(port);
    if (seen === undefined) this.#ports.set(port, seen = {});
    const v6 = host.includes(":");
    const clash = host === "::"
      ? seen.first
      : host === "0.0.0.0"
      ? seen.v6Any ?? seen.firstV4
      : seen.v6Any ?? (v6 ? undefined : seen.v4Any);
    seen.first ??= entry;
    if (!v6) seen.firstV4 ??= entry;
    if (host === "::") seen.v6Any ??= entry;
    if (host === "0.0.0.0") seen.v4Any ??= entry;
    if (clash === undefined) return undefined;
    const hosts = [host, normalizeHost(clash.bind)];
    return { ...clash, wildcard: hosts.includes("::") ? "::" : "0.0.0.0" };
  }
}

/** A host in one spelling: lower case, an IPv6 address compressed as URLs write it. */
function normalizeHost(host: string): string {
  const lower = host.toLowerCase();
  if (!lower.includes(":") || lower.includes("%")) return lower;
  try {
    return new URL(`http://[${lower}]/`).hostname.slice(1, -1);
  } catch {
    return lower;
  }
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

/** A database's fence: its own (`false` turns the top-level one off), else the top-level one. */
function fenceOf(
  own: { afterMs: number } | false | undefined,
  topLevel: { afterMs: number } | undefined,
): { fence?: { afterMs: number } } {
  const fence = own === undefined ? topLevel : own || undefined;
  return fence === undefined ? {} : { fence: { afterMs: fence.afterMs } };
}
