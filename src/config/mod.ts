/**
 * The configuration: a JSONC file in the documented format or in the original
 * sentinel_tunnel (RedisLabs) format, or `SENTINEL_TUNNEL_*` environment
 * variables, validated and resolved into {@linkcode TunnelConfig}. Every
 * problem is reported with the field path, the value and the rule, so that an
 * operator can fix the file without reading code.
 *
 * Reading is bounded: only a regular file of at most 1 MiB, nested at most 32
 * levels, under a deadline, so that no file can hang or crash the process.
 *
 * ```ts ignore
 * const config = await loadConfig("config/example.jsonc");
 * ```
 *
 * The parts, each in its own file:
 * - `file.ts`: {@linkcode loadConfig}, reading the file within bounds;
 * - `parse.ts`: {@linkcode parseConfig}, strict JSONC to a config;
 * - `environment.ts`: {@linkcode configFromEnvironment};
 * - `schema.ts`: the formats as zod schemas, and {@linkcode configJsonSchema};
 * - `resolve.ts`: validation, defaults, credentials and duplicate checks;
 * - `tls_files.ts`: TLS files read and checked, and {@linkcode configWarnings};
 * - `messages.ts`: paths, values and did-you-mean in messages;
 * - `config_error.ts`: {@linkcode ConfigError};
 * - `redact.ts`: {@linkcode redactConfig};
 * - `reload_queue.ts`: {@linkcode ConfigReloadQueue}, one SIGHUP reload at a time.
 *
 * @module
 */
export type { TunnelConfig } from "../shared/settings.ts";
export { ConfigError, MAX_REPORTED_PROBLEMS } from "./config_error.ts";
export { CONFIG_READ_TIMEOUT_MS, loadConfig, type LoadConfigOptions } from "./file.ts";
export {
  MAX_CONFIG_BYTES,
  MAX_CONFIG_DEPTH,
  parseConfig,
  type ParseConfigOptions,
} from "./parse.ts";
export {
  configFromEnvironment,
  ENVIRONMENT_KEYS,
  type EnvironmentConfigOptions,
  OTHER_ENVIRONMENT_KEYS,
} from "./environment.ts";
export { configJsonSchema, documentedSchema } from "./schema.ts";
export { redactConfig } from "./redact.ts";
export { configWarnings, MAX_PEM_BYTES, readPemFileSync } from "./tls_files.ts";
export { ConfigReloadQueue, type ConfigReloadQueueOptions } from "./reload_queue.ts";
