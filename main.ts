/**
 * sentinel-tunnel: local ports that always lead to the current master of a
 * Redis Sentinel deployment, for clients that know nothing of Sentinel.
 *
 * This is the only place that prints usage or exits.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { getLogger, type LogLevel } from "@logtape/logtape";
import denoJson from "./deno.json" with { type: "json" };
import { type Address, parseAdminAddress, sameAddress } from "./src/shared/address.ts";
import { startAdminServer } from "./src/ops/admin_server.ts";
import { checkOnline } from "./src/ops/online_check.ts";
import {
  ConfigError,
  configFromEnvironment,
  ConfigReloadQueue,
  configWarnings,
  ENVIRONMENT_KEYS,
  loadConfig,
  redactConfig,
} from "./src/config/mod.ts";
import type { TunnelConfig } from "./src/shared/settings.ts";
import { ListenError } from "./src/shared/errors.ts";
import { plural } from "./src/shared/wording.ts";
import { flushLogs, LOG_LEVELS, setupLogging } from "./src/ops/log.ts";
import { type BufferSizes, DEFAULT_BUFFER_SIZES } from "./src/data/tunnel.ts";
import { type ReloadSummary, Runtime } from "./src/wiring/runtime.ts";

const USAGE = `Usage: sentinel-tunnel [options] <config> [log-file]
       sentinel-tunnel [options]      (configured by SENTINEL_TUNNEL_* variables)

Listens on a local port per database and tunnels each client to the master
that Redis Sentinel names and the master itself confirms with ROLE.

Arguments:
  <config>             a JSONC config file, in the documented format or in the
                       original sentinel_tunnel format (see config/)
  [log-file]           append logs to this file instead of writing to stderr

Without <config>, the config comes from the environment:
  ${ENVIRONMENT_KEYS.sentinels}="host:port,host:port"   (required)
  ${ENVIRONMENT_KEYS.databases}="name:port,name:port"   (required)
  ${ENVIRONMENT_KEYS.bind}, ${ENVIRONMENT_KEYS.admin}, and
  SENTINEL_TUNNEL_{SENTINEL,MASTER}_{USERNAME,PASSWORD}

Options:
  --check              validate the config, print it resolved with passwords
                       redacted, and exit
  --check --online     validate the config, then check it against the
                       deployment as the tunnel would: reach and authenticate
                       to every Sentinel, find each master name, confirm its
                       master with ROLE, check each read port's replicas; print
                       a line per failing Sentinel and per database, and exit
  --admin HOST:PORT    serve the status page and the admin API (health,
                       readiness, topology, events, metrics) there; a bare
                       port listens on 127.0.0.1
  --log-level LEVEL    one of ${LOG_LEVELS.join(", ")} (default: info)
  --log-format FORMAT  text or json (default: text on a terminal, json otherwise)
  -h, --help           show this help and exit
  -V, --version        print the version and exit

Signals: SIGHUP re-reads the config file; SIGINT and SIGTERM stop.
Exit status: 0 after SIGINT or SIGTERM or a successful --check, 1 when the
config or a port cannot be used, 2 for a usage error. --check --online exits
0 when all is well, else with the lowest of the codes that apply:
  3  a Sentinel cannot be reached, does not answer in time, or refuses
  4  a master name no Sentinel knows
  5  no confirmed master (the Sentinels agree on none; it is unreachable, not
     master, or refuses masterAuth)
  6  a read port with no usable replica`;

/** A command-line mistake: exit 2 with a hint. */
class UsageError extends Error {
  override name = "UsageError";
}

interface Cli {
  /** Absent when the config comes from the environment. */
  configPath: string | undefined;
  logFile: string | undefined;
  check: boolean;
  /** With `check`: check against the deployment instead of printing the config. */
  online: boolean;
  admin: Address | undefined;
  logLevel: LogLevel;
  logFormat: "text" | "json";
}

function parseCli(args: string[]): Cli | "help" | "version" {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
        check: { type: "boolean" },
        online: { type: "boolean" },
        admin: { type: "string" },
        "log-level": { type: "string" },
        "log-format": { type: "string" },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/\. To specify a positional.*$/, ""));
  }
  const { values, positionals } = parsed;
  if (values.help) return "help";
  if (values.version) return "version";
  if (positionals.length > 2) {
    throw new UsageError(`Too many arguments: ${JSON.stringify(positionals.slice(2).join(" "))}`);
  }
  const logLevel = values["log-level"] ?? "info";
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new UsageError(
      `Invalid --log-level ${JSON.stringify(logLevel)}: use one of ${LOG_LEVELS.join(", ")}`,
    );
  }
  const logFormat = values["log-format"] ?? (Deno.stderr.isTerminal() ? "text" : "json");
  if (logFormat !== "text" && logFormat !== "json") {
    throw new UsageError(`Invalid --log-format ${JSON.stringify(logFormat)}: use text or json`);
  }
  if (values.online && !values.check) {
    throw new UsageError("--online works with --check only: use --check --online");
  }
  let admin: Address | undefined;
  if (values.admin !== undefined) {
    try {
      admin = parseAdminAddress(values.admin);
    } catch (error) {
      throw new UsageError(
        `Invalid --admin ${JSON.stringify(values.admin)}: ${(error as Error).message}`,
      );
    }
  }
  return {
    configPath: positionals[0],
    logFile: positionals[1],
    check: values.check ?? false,
    online: values.online ?? false,
    admin,
    logLevel: logLevel as LogLevel,
    logFormat,
  };
}

/** Reads the config from the file, or from the environment when there is none. */
async function readConfig(cli: Cli): Promise<TunnelConfig> {
  if (cli.configPath !== undefined) return await loadConfig(cli.configPath);
  const config = configFromEnvironment(Deno.env.toObject());
  if (config === undefined) {
    throw new UsageError(
      `Missing the config file argument; or configure by environment with ${ENVIRONMENT_KEYS.sentinels} and ${ENVIRONMENT_KEYS.databases}`,
    );
  }
  return config;
}

/** The --admin option wins over the config's "admin". */
function withAdmin(config: TunnelConfig, cli: Cli): TunnelConfig {
  return cli.admin === undefined ? config : { ...config, admin: cli.admin };
}

/**
 * Buffer sizes from `SENTINEL_TUNNEL_BUFFER_BYTES="small,large"`, a tuning
 * knob (the benchmark compares against fixed buffers with "65536,65536").
 */
function bufferSizes(): BufferSizes {
  const text = Deno.env.get("SENTINEL_TUNNEL_BUFFER_BYTES");
  if (text === undefined) return DEFAULT_BUFFER_SIZES;
  const match = /^(\d+),(\d+)$/.exec(text.replace(/\s/g, ""));
  const small = Number(match?.[1]);
  const large = Number(match?.[2]);
  if (!match || small < 64 || large < small || large > 16 * 1024 * 1024) {
    throw new UsageError(
      `Invalid SENTINEL_TUNNEL_BUFFER_BYTES ${
        JSON.stringify(text)
      }: give "small,large" in bytes, 64 <= small <= large <= 16777216, such as "2048,65536"`,
    );
  }
  return { small, large };
}

/** Gives up what this config never needs, so a compromise of the process can do less. */
function dropUnneededPermissions(config: TunnelConfig, cli: Cli): void {
  if (!config.databases.some((d) => d.onMasterChange)) Deno.permissions.revokeSync({ name: "run" });
  if (cli.logFile === undefined) Deno.permissions.revokeSync({ name: "write" });
}

/** What a reload changed, only what it did: `updated mymaster; master names updated mymaster`. */
function describeReload(summary: ReloadSummary): string {
  const parts = [
    ["added", summary.added],
    ["removed", summary.removed],
    ["replaced", summary.replaced],
    ["updated", summary.updated],
    ["failed to open", summary.failed],
    ["master names added", summary.masters.added],
    ["master names removed", summary.masters.removed],
    ["master names updated", summary.masters.updated],
  ].filter(([, names]) => names!.length > 0).map(([what, names]) =>
    `${what} ${(names as string[]).join(", ")}`
  );
  if (summary.sentinelsChanged) parts.push("the Sentinels changed");
  return parts.length > 0 ? parts.join("; ") : "nothing changed";
}

async function main(args: string[]): Promise<number> {
  const cli = parseCli(args);
  if (cli === "help") {
    console.log(USAGE);
    return 0;
  }
  if (cli === "version") {
    console.log(`sentinel-tunnel ${denoJson.version} (deno ${Deno.version.deno})`);
    return 0;
  }
  const config = withAdmin(await readConfig(cli), cli);
  if (cli.check && cli.online) {
    const report = await checkOnline(config);
    for (const line of report.lines) console.log(line.text);
    return report.code;
  }
  if (cli.check) {
    console.log(JSON.stringify(redactConfig(config), null, 2));
    return 0;
  }
  try {
    await setupLogging({ level: cli.logLevel, format: cli.logFormat, file: cli.logFile });
  } catch (error) {
    throw new UsageError(
      `Cannot open log file ${JSON.stringify(cli.logFile)}: ${(error as Error).message}`,
    );
  }
  dropUnneededPermissions(config, cli);
  const log = getLogger(["sentinel-tunnel"]);
  for (const warning of configWarnings(config)) log.warning(warning);
  if (config.format === "original") {
    log.info(
      "Config {config} is in the original sentinel_tunnel format; listening on 127.0.0.1, not every interface as the original did",
      { config: cli.configPath },
    );
  }

  const controller = new AbortController();
  // Signals are handled before any port opens: a SIGHUP's default action ends the process, and a
  // reload may come as soon as the port answers. Until the tunnel runs there is nothing to reload.
  let server: Runtime | undefined;
  const stop = (signal: Deno.Signal) => () => {
    if (controller.signal.aborted) return;
    log.info("Received {signal}: stopping", { signal });
    controller.abort();
  };
  const reload = async () => {
    if (controller.signal.aborted || server === undefined) return;
    if (cli.configPath === undefined) {
      log.warning(
        "Received SIGHUP: the config comes from the environment, which cannot change; nothing to reload",
      );
      return;
    }
    log.info("Received SIGHUP: reloading {config}", { config: cli.configPath });
    try {
      const next = withAdmin(await loadConfig(cli.configPath), cli);
      if (controller.signal.aborted || server === undefined) return;
      const admin = server.config.admin;
      if (
        next.admin === undefined ? admin !== undefined : !admin || !sameAddress(next.admin, admin)
      ) {
        log.warning(
          "Reload: the admin address changed; restart sentinel-tunnel to move the admin API",
        );
      }
      const { admin: _ignored, ...rest } = next;
      const current = server.config.admin;
      const summary = await server.reload(
        current === undefined ? rest : { ...rest, admin: current },
      );
      for (const warning of configWarnings(next)) log.warning(warning);
      const changes = describeReload(summary);
      log.info("Reloaded {config}: {changes}", {
        config: cli.configPath,
        changes,
        ...summary,
        mastersAdded: summary.masters.added,
        mastersRemoved: summary.masters.removed,
        mastersUpdated: summary.masters.updated,
      });
      server.journal.record({ kind: "reload", outcome: "applied", detail: changes });
    } catch (error) {
      if (!(error instanceof ConfigError || error instanceof ListenError)) throw error;
      log.error("Reload refused, the running config stays: {error}", { error: error.message });
      server?.journal.record({ kind: "reload", outcome: "refused", detail: error.message });
    }
  };
  const onInt = stop("SIGINT");
  const onTerm = stop("SIGTERM");
  // One reload at a time; SIGHUPs during one fold into one more after it. Reading the file has a
  // deadline, so a reload always ends and never holds up the next.
  const reloads = new ConfigReloadQueue(reload, {
    onError(error) {
      log.error("Reload failed: {error}", {
        error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
      });
    },
  });
  const onHup = () => reloads.request();
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  Deno.addSignalListener("SIGHUP", onHup);
  const removeSignalListeners = () => {
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGTERM", onTerm);
    Deno.removeSignalListener("SIGHUP", onHup);
  };
  let admin;
  try {
    server = Runtime.start(config, { buffers: bufferSizes(), signal: controller.signal });
    admin = config.admin ? startAdminServer(config.admin, server, controller.signal) : undefined;
  } catch (error) {
    controller.abort();
    await server?.done;
    removeSignalListeners();
    throw error;
  }
  log.info(
    "sentinel-tunnel {version} started with {what}",
    {
      version: denoJson.version,
      databases: config.databases.length,
      sentinels: config.sentinels.length,
      what: `${plural(config.databases.length, "database")} and ${
        plural(config.sentinels.length, "Sentinel")
      }`,
    },
  );
  await Promise.all([server.done, admin?.finished]);
  removeSignalListeners();
  log.info("Stopped");
  return 0;
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (error) {
    // The log lines before the failure come before its message.
    await flushLogs();
    if (error instanceof UsageError) {
      console.error(`sentinel-tunnel: ${error.message}\nRun 'sentinel-tunnel --help' for usage.`);
      code = 2;
    } else if (error instanceof ConfigError || error instanceof ListenError) {
      console.error(`sentinel-tunnel: ${error.message}`);
      code = 1;
    } else {
      console.error(
        `sentinel-tunnel: unexpected error: ${
          error instanceof Error ? error.message : String(error)
        }`,
      );
      code = 1;
    }
  }
  // Lines still queued for a slow reader, for a second at most.
  await flushLogs();
  Deno.exit(code);
}
