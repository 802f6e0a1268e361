/**
 * {@linkcode redactConfig}: a resolved config as JSON that is safe to print or serve.
 *
 * @module
 */
import { formatAddress } from "../shared/address.ts";
import type {
  Credentials,
  TlsClientSettings,
  TlsServerSettings,
  TunnelConfig,
} from "../shared/settings.ts";

/**
 * TLS settings by where their files are, never by what the files hold: each field is picked by
 * name, so that no PEM text (a private key above all) can reach the output.
 */
function tlsClient(tls: TlsClientSettings | undefined): unknown {
  return tls === undefined ? undefined : {
    ...(tls.caFile === undefined ? {} : { caFile: tls.caFile }),
    ...(tls.certFile === undefined ? {} : { certFile: tls.certFile }),
    ...(tls.keyFile === undefined ? {} : { keyFile: tls.keyFile }),
    ...(tls.serverName === undefined ? {} : { serverName: tls.serverName }),
    verify: tls.verify,
  };
}

function tlsServer(tls: TlsServerSettings | undefined): unknown {
  return tls === undefined ? undefined : { certFile: tls.certFile, keyFile: tls.keyFile };
}

/**
 * The config as JSON with every password replaced and TLS shown by its file paths, never their
 * contents, for `--check`, `/api/configuration` and the logs.
 */
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
    sentinelTls: tlsClient(config.sentinelTls),
    timeouts: config.timeouts,
    databases: config.databases.map((db) => ({
      name: db.name,
      listen: formatAddress({ hostname: db.bind, port: db.port }),
      role: db.role,
      // The replica settings mean nothing on a master port, so they are shown on read ports only.
      ...(db.role === "replica"
        ? { maxLagBytes: db.maxLagBytes, whenNoReplica: db.whenNoReplica }
        : {}),
      fence: db.fence ?? false,
      masterAuth: credentials(db.masterAuth),
      timeouts: {
        masterConnectMs: db.timeouts.masterConnectMs,
        masterReplyMs: db.timeouts.masterReplyMs,
        clientWaitMs: db.timeouts.clientWaitMs,
        clientIdleMs: db.timeouts.clientIdleMs,
      },
      maxClients: db.maxClients,
      ...(db.role === "replica" ? {} : { preconnect: db.preconnect }),
      tcpKeepAlive: db.tcpKeepAlive,
      onMasterChange: db.onMasterChange,
      tls: tlsClient(db.tls),
      listenTls: tlsServer(db.listenTls),
    })),
    admin: config.admin === undefined ? undefined : formatAddress(config.admin),
    maxSentinels: config.maxSentinels,
    maxClients: config.maxClients,
  };
}
