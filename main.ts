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
import { ConfigError, loadConfig, redactConfig } from "./src/config.ts";
import { ListenError } from "./src/database_listener.ts";
import { LOG_LEVELS, setupLogging } from "./src/log.ts";
import { TunnelServer } from "./src/tunnel_server.ts";

const USAGE = `Usage: sentinel-tunnel [options] <config> [log-file]

Listens on a local port per database and tunnels each client to the master
that Redis Sentinel names and the master itself confirms with ROLE.

Arguments:
  <config>             a JSONC config file, in the documented format or in the
                       original sentinel_tunnel format (see config/)
  [log-file]           append logs to this file instead of writing to stderr

Options:
  --check              validate the config, print it resolved with passwords
                       redacted, and exit
  --log-level LEVEL    one of ${LOG_LEVELS.join(", ")} (default: info)
  --log-format FORMAT  text or json (default: text on a terminal, json otherwise)
  -h, --help           show this help and exit
  -V, --version        print the version and exit

Exit status: 0 after SIGINT or SIGTERM or a successful --check, 1 when the
config or a port cannot be used, 2 for a usage error.`;

/** A command-line mistake: exit 2 with a hint. */
class UsageError extends Error {
  override name = "UsageError";
}

interface Cli {
  configPath: string;
  logFile: string | undefined;
  check: boolean;
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
        "log-level": { type: "string" },
        "log-format": { type: "string" },
      },
    });
  } catch (error) {
    throw new UsageError(
      (error as Error).message.replace(/\. To specify a positional.*$/, ""),
    );
  }
  const { values, positionals } = parsed;
  if (values.help) return "help";
  if (values.version) return "version";
  if (positionals.length === 0) {
    throw new UsageError("Missing the config file argument");
  }
  if (positionals.length > 2) {
    throw new UsageError(
      `Too many arguments: ${JSON.stringify(positionals.slice(2).join(" "))}`,
    );
  }
  const logLevel = values["log-level"] ?? "info";
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new UsageError(
      `Invalid --log-level ${JSON.stringify(logLevel)}: use one of ${LOG_LEVELS.join(", ")}`,
    );
  }
  const logFormat = values["log-format"] ??
    (Deno.stderr.isTerminal() ? "text" : "json");
  if (logFormat !== "text" && logFormat !== "json") {
    throw new UsageError(
      `Invalid --log-format ${JSON.stringify(logFormat)}: use text or json`,
    );
  }
  return {
    configPath: positionals[0]!,
    logFile: positionals[1],
    check: values.check ?? false,
    logLevel: logLevel as LogLevel,
    logFormat,
  };
}

async function main(args: string[]): Promise<number> {
  const cli = parseCli(args);
  if (cli === "help") {
    console.log(USAGE);
    return 0;
  }
  if (cli === "version") {
    console.log(
      `sentinel-tunnel ${denoJson.version} (deno ${Deno.version.deno})`,
    );
    return 0;
  }
  const config = await loadConfig(cli.configPath);
  if (cli.check) {
    console.log(JSON.stringify(redactConfig(config), null, 2));
    return 0;
  }
  try {
    setupLogging({
      level: cli.logLevel,
      format: cli.logFormat,
      file: cli.logFile,
    });
  } catch (error) {
    throw new UsageError(
      `Cannot open log file ${JSON.stringify(cli.logFile)}: ${(error as Error).message}`,
    );
  }
  const log = getLogger(["sentinel-tunnel"]);
  if (config.format === "original") {
    log.info(
      "Config {config} is in the original sentinel_tunnel format; listening on 127.0.0.1, not every interface as the original did",
      { config: cli.configPath },
    );
  }
  const controller = new AbortController();
  const stop = (signal: Deno.Signal) => () => {
    if (controller.signal.aborted) return;
    log.info("Received {signal}: stopping", { signal });
    controller.abort();
  };
  const onInt = stop("SIGINT");
  const onTerm = stop("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  const server = TunnelServer.start(config, { signal: controller.signal });
  log.info(
    "sentinel-tunnel {version} started with {databases} database(s) and {sentinels} Sentinel(s)",
    {
      version: denoJson.version,
      databases: config.databases.length,
      sentinels: config.sentinels.length,
    },
  );
  await server.done;
  Deno.removeSignalListener("SIGINT", onInt);
  Deno.removeSignalListener("SIGTERM", onTerm);
  log.info("Stopped");
  return 0;
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(
        `sentinel-tunnel: ${error.message}\nRun 'sentinel-tunnel --help' for usage.`,
      );
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
  Deno.exit(code);
}
