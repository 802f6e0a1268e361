/**
 * TLS settings from a validated config: each file path resolved against the
 * config's directory, the PEM files read (once per validation, so that a reload
 * reads rotated files again) and checked to hold what they are for; and
 * {@linkcode configWarnings} for TLS that checks no certificate.
 *
 * File contents never reach a message: only the field, the path and the rule.
 *
 * @module
 */
import { isAbsolute, resolve as resolvePath } from "node:path";
import type { TlsClientSettings, TlsServerSettings, TunnelConfig } from "../shared/settings.ts";
import type { DescribePath } from "./messages.ts";
import type { TlsClientInput, TlsServerInput } from "./schema.ts";

/** The largest PEM file read, in bytes: a CA bundle is a few hundred kilobytes at most. */
export const MAX_PEM_BYTES = 1024 * 1024;

/**
 * Reads a PEM file as text: only a regular file of at most {@linkcode MAX_PEM_BYTES} (a FIFO
 * would block, a device such as `/dev/zero` never ends). The default `readTextFile` of
 * validation.
 *
 * @throws {Error} when the file cannot be read, with a message that says why
 */
export function readPemFileSync(path: string): string {
  const info = Deno.statSync(path);
  if (!info.isFile) {
    throw new Error(
      info.isDirectory ? "it is a directory, not a file" : "it is not a regular file",
    );
  }
  if (info.size > MAX_PEM_BYTES) {
    throw new Error(
      `it is ${info.size} bytes, over the limit of ${MAX_PEM_BYTES} bytes (1 MiB) for a PEM file`,
    );
  }
  return Deno.readTextFileSync(path);
}

const CERTIFICATE = "-----BEGIN CERTIFICATE-----";
const PRIVATE_KEY = /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/;
const ENCRYPTED_KEY = /-----BEGIN ENCRYPTED PRIVATE KEY-----|^Proc-Type: *4, *ENCRYPTED/m;

/** What a file holds: CA certificates, a certificate chain, or a private key. */
type PemKind = "ca" | "cert" | "key";

/** Options for {@linkcode TlsFiles}. */
export interface TlsFilesOptions {
  /** Reads a file as text. @default {readPemFileSync} */
  readTextFile?: (path: string) => string;
  /** What relative paths are relative to. @default {Deno.cwd()} */
  baseDirectory?: string;
  /** How messages write a field path. */
  describePath: DescribePath;
}

/**
 * Resolves the TLS settings of one validation: reads each file once, however many settings name
 * it, and adds one line to `problems` per field whose file cannot be used.
 */
export class TlsFiles {
  #read: (path: string) => string;
  #base: string | undefined;
  #describePath: DescribePath;
  #problems: string[];
  #texts = new Map<string, { text: string } | { error: string }>();

  constructor(options: TlsFilesOptions, problems: string[]) {
    this.#read = options.readTextFile ?? readPemFileSync;
    this.#base = options.baseDirectory;
    this.#describePath = options.describePath;
    this.#problems = problems;
  }

  /** TLS towards Sentinels or masters from `input` at `path`; `undefined` after a problem. */
  client(input: TlsClientInput, path: readonly PropertyKey[]): TlsClientSettings | undefined {
    const ca = this.#file(input.caFile, "ca", [...path, "caFile"]);
    const cert = this.#file(input.certFile, "cert", [...path, "certFile"]);
    const key = this.#file(input.keyFile, "key", [...path, "keyFile"]);
    if (ca === null || cert === null || key === null) return undefined;
    return {
      ...(ca === undefined ? {} : { caFile: ca.file, ca: ca.text }),
      ...(cert === undefined ? {} : { certFile: cert.file, cert: cert.text }),
      ...(key === undefined ? {} : { keyFile: key.file, key: key.text }),
      ...(input.serverName === undefined ? {} : { serverName: input.serverName }),
      verify: input.verify ?? true,
    };
  }

  /** TLS on a local port from `input` at `path`; `undefined` after a problem. */
  server(input: TlsServerInput, path: readonly PropertyKey[]): TlsServerSettings | undefined {
    const cert = this.#file(input.certFile, "cert", [...path, "certFile"]);
    const key = this.#file(input.keyFile, "key", [...path, "keyFile"]);
    if (cert === null || cert === undefined || key === null || key === undefined) return undefined;
    return { certFile: cert.file, cert: cert.text, keyFile: key.file, key: key.text };
  }

  /** The absolute path and text of a file; `undefined` when not given, `null` after a problem. */
  #file(
    given: string | undefined,
    kind: PemKind,
    path: readonly PropertyKey[],
  ): { file: string; text: string } | null | undefined {
    if (given === undefined) return undefined;
    if (/-----BEGIN|[\r\n]/.test(given)) {
      // PEM text where a path belongs: never quote it, it may be a private key.
      this.#problems.push(
        `${
          this.#describePath(path)
        }: holds PEM text (not shown), not a file path; write the PEM to a file and give its path`,
      );
      return null;
    }
    const base = this.#base ?? Deno.cwd();
    const file = resolvePath(base, given);
    let read = this.#texts.get(file);
    if (read === undefined) {
      try {
        read = { text: this.#read(file) };
      } catch (error) {
        read = { error: describeReadError(error) };
      }
      this.#texts.set(file, read);
    }
    const field = this.#describePath(path);
    const shown = `${JSON.stringify(file)}${
      isAbsolute(given) ? "" : ` (${JSON.stringify(given)} relative to ${JSON.stringify(base)})`
    }`;
    if ("error" in read) {
      this.#problems.push(
        `${field}: cannot read ${shown}: ${read.error}; fix the path or the file's permissions`,
      );
      return null;
    }
    const problem = checkPem(read.text, kind);
    if (problem !== undefined) {
      this.#problems.push(`${field}: ${shown} ${problem}`);
      return null;
    }
    return { file, text: read.text };
  }
}

/** Why `text` is not the PEM that `kind` needs, if it is not. Never quotes the text. */
function checkPem(text: string, kind: PemKind): string | undefined {
  if (kind === "key") {
    if (ENCRYPTED_KEY.test(text)) {
      return "is an encrypted private key, which needs a passphrase the tunnel cannot take; decrypt it (openssl pkey -in key.pem -out plain-key.pem) and keep that file readable by this user only";
    }
    if (!PRIVATE_KEY.test(text)) {
      return 'is not a PEM private key: it holds no "-----BEGIN ... PRIVATE KEY-----" block; give the unencrypted key in PEM';
    }
    return undefined;
  }
  if (!text.includes(CERTIFICATE)) {
    const what = kind === "ca" ? "the CA certificates" : "the certificate chain";
    return `is not a PEM certificate: it holds no "${CERTIFICATE}" block; give ${what} in PEM (openssl x509 -inform der -in cert.der -out cert.pem converts DER)`;
  }
  return undefined;
}

/** Why a file could not be read, in a few words without the path. */
function describeReadError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "No such file or directory";
  if (error instanceof Deno.errors.PermissionDenied) return "Permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "it is a directory, not a file";
  if (error instanceof Deno.errors.NotCapable) {
    return "sentinel-tunnel may not read it (run it with --allow-read)";
  }
  const message = error instanceof Error ? error.message : String(error);
  // Deno appends " (os error 2): stat '/path'"; the path is said already.
  return message.replace(/\s*\(os error \d+\)[\s\S]*$/, "").split("\n", 1)[0]!;
}

/**
 * One line per place where TLS is on but `verify` is false, so that nothing checks the peer's
 * certificate: log them at start and on every reload.
 */
export function configWarnings(config: TunnelConfig): string[] {
  const fix = config.format === "environment"
    ? "unset SENTINEL_TUNNEL_TLS_VERIFY (or set it to true) and set SENTINEL_TUNNEL_TLS_CA_FILE"
    : 'set "verify": true and give "caFile"';
  const field = config.format === "environment" ? "SENTINEL_TUNNEL_TLS_VERIFY" : "tls.verify";
  const warnings: string[] = [];
  if (config.sentinelTls?.verify === false) {
    warnings.push(
      `${field} is false for the Sentinels: their certificates are not checked, so anyone on the network path can pose as a Sentinel and name any master; ${fix}`,
    );
  }
  for (const db of config.databases) {
    if (db.tls?.verify === false) {
      warnings.push(
        `${field} is false for database ${
          JSON.stringify(db.name)
        }: the master's certificate is not checked, so anyone on the network path can pose as it; ${fix}`,
      );
    }
  }
  return warnings;
}
