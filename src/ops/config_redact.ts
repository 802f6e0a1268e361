/**
 * {@linkcode redactConfig}: a resolved config as JSON that is safe to print or serve.
 *
 * @module
 */
import { formatAddress } from "../shared/address.ts";
import type { Credentials, TunnelConfig } from "../shared/settings.ts";

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
