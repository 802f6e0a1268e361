/**
 * {@linkcode loadConfig}: reads a config file without ever blocking or reading
 * without bound. Only a regular file is read (a FIFO would block until a writer
 * comes, a device such as `/dev/zero` never ends), at most
 * {@linkcode MAX_CONFIG_BYTES} of it, under a deadline.
 *
 * @module
 */
import { constants as fsConstants, type Stats } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { dirname, resolve as resolvePath } from "node:path";
import type { TunnelConfig } from "../shared/settings.ts";
import { ConfigError } from "./config_error.ts";
import { MAX_CONFIG_BYTES, parseConfig, type ParseConfigOptions } from "./parse.ts";

/** The default deadline for reading a config file. */
export const CONFIG_READ_TIMEOUT_MS = 10_000;

/** Options for {@linkcode loadConfig}. */
export interface LoadConfigOptions extends ParseConfigOptions {
  /** How long reading the file may take, such as on a file system that hangs. @default {10000} */
  timeoutMs?: number;
  /** Gives up reading when aborted. */
  signal?: AbortSignal;
}

/**
 * Reads and resolves a config file. Relative TLS file paths in it are relative to its
 * directory, unless `options.baseDirectory` says otherwise.
 *
 * @throws {ConfigError} when the file cannot be read or is not a valid config
 */
export async function loadConfig(
  path: string,
  options: LoadConfigOptions = {},
): Promise<TunnelConfig> {
  const { timeoutMs = CONFIG_READ_TIMEOUT_MS, signal, ...parseOptions } = options;
  const deadline = new AbortController();
  const timer = setTimeout(
    () => deadline.abort(new Deno.errors.TimedOut(`no result within ${timeoutMs} ms`)),
    timeoutMs,
  );
  const abandon = signal === undefined
    ? deadline.signal
    : AbortSignal.any([deadline.signal, signal]);
  let bytes: Uint8Array;
  try {
    bytes = await readRegularFile(path, MAX_CONFIG_BYTES, abandon);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const problem = abandon.aborted
      ? `gave up reading it: ${describeReason(abandon.reason)}; check the file system it is on`
      : describeReadError(error);
    throw new ConfigError(path, [`cannot read the config file: ${problem}`], {
      cause: error,
    });
  } finally {
    clearTimeout(timer);
  }
  // Invalid UTF-8 becomes U+FFFD, which the parser then points at; a leading BOM is dropped.
  return parseConfig(new TextDecoder().decode(bytes), path, {
    baseDirectory: dirname(resolvePath(path)),
    ...parseOptions,
  });
}

/**
 * The bytes of the regular file at `path`, at most `maxBytes` of them. Checked with `stat`
 * before it is opened, and again on the open file, which is opened non-blocking so that a FIFO
 * swapped in between cannot block the open.
 */
async function readRegularFile(
  path: string,
  maxBytes: number,
  signal: AbortSignal,
): Promise<Uint8Array> {
  const refuse = (problem: string) =>
    new ConfigError(path, [`cannot read the config file: ${problem}`]);
  signal.throwIfAborted();
  const before = await abortable(Deno.stat(path), signal);
  if (!before.isFile) throw refuse(notRegular(before));
  if (before.size > maxBytes) throw refuse(tooLarge(maxBytes, before.size));
  const opening = open(
    path,
    fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0) | (fsConstants.O_NOCTTY ?? 0),
  );
  let file: FileHandle;
  try {
    file = await abortable(opening, signal);
  } catch (error) {
    // Close it if the open completes after all.
    opening.then((late) => late.close().catch(() => {}), () => {});
    throw error;
  }
  try {
    const info = await abortable(file.stat(), signal);
    if (!info.isFile()) throw refuse(notRegular(info));
    // One byte more than the limit tells a file that grew since the stat, or whose size the stat
    // does not know (such as those in /proc).
    const buffer = new Uint8Array(maxBytes + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await abortable(
        file.read(buffer, length, buffer.length - length, null),
        signal,
      );
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > maxBytes) throw refuse(tooLarge(maxBytes));
    return buffer.subarray(0, length);
  } finally {
    // After a deadline, a read may still hang on the file: do not wait for the close either.
    const closing = file.close().catch(() => {});
    if (!signal.aborted) await closing;
  }
}

/** `promise`, or a rejection with the signal's reason as soon as it aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function tooLarge(maxBytes: number, size?: number): string {
  return `it is ${
    size === undefined ? "" : `${size} bytes, `
  }over the limit of ${maxBytes} bytes (1 MiB): a config is a few kilobytes; check that this is the config`;
}

/** What a file that is not a regular file is, from `Deno.stat` or `FileHandle.stat`. */
function notRegular(info: Deno.FileInfo | Stats): string {
  const kind = "isFifo" in info
    ? info.isDirectory
      ? "a directory"
      : info.isFifo
      ? "a FIFO (named pipe)"
      : info.isCharDevice
      ? "a character device"
      : info.isBlockDevice
      ? "a block device"
      : info.isSocket
      ? "a socket"
      : undefined
    : info.isDirectory()
    ? "a directory"
    : info.isFIFO()
    ? "a FIFO (named pipe)"
    : info.isCharacterDevice()
    ? "a character device"
    : info.isBlockDevice()
    ? "a block device"
    : info.isSocket()
    ? "a socket"
    : undefined;
  return `it is ${kind ?? "no regular file"}${
    kind === undefined ? "" : ", not a regular file"
  }; give the path of a JSONC config file`;
}

function describeReadError(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  if (error instanceof Deno.errors.NotFound || code === "ENOENT") {
    return "no such file; give the path of a JSONC config, such as config/example.jsonc";
  }
  if (error instanceof Deno.errors.PermissionDenied || code === "EACCES" || code === "EPERM") {
    return "permission denied; make the file readable by this user";
  }
  if (error instanceof Deno.errors.IsADirectory || code === "EISDIR") {
    return "it is a directory; give the path of a JSONC config file";
  }
  if (error instanceof Deno.errors.NotADirectory || code === "ENOTDIR") {
    return "a part of the path is not a directory; check the path";
  }
  if (error instanceof Deno.errors.FilesystemLoop || code === "ELOOP") {
    return "its symbolic links loop; check the links on the path";
  }
  return error instanceof Error ? error.message : String(error);
}

function describeReason(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}
