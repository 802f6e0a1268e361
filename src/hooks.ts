/**
 * Failover hooks: a command run on every confirmed master change, to rewrite
 * a proxy's config or update a service registry. The command gets the change
 * in environment variables, runs under a deadline, and has its output logged.
 * A hook that fails or hangs never affects the tunnels.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { formatAddress } from "./address.ts";
import type { HookConfig } from "./config.ts";
import type { MasterChange } from "./master_watcher.ts";

const log = getLogger(["sentinel-tunnel", "hook"]);

/** The most output kept from one hook run, per stream. */
const OUTPUT_LIMIT = 4096;

/** The environment a hook gets, on top of the tunnel's own. */
export function hookEnvironment(change: MasterChange): Record<string, string> {
  return {
    SENTINEL_TUNNEL_DATABASE: change.database,
    SENTINEL_TUNNEL_OLD_MASTER: change.from ? formatAddress(change.from) : "",
    SENTINEL_TUNNEL_OLD_MASTER_HOST: change.from?.hostname ?? "",
    SENTINEL_TUNNEL_OLD_MASTER_PORT: change.from ? String(change.from.port) : "",
    SENTINEL_TUNNEL_NEW_MASTER: formatAddress(change.to),
    SENTINEL_TUNNEL_NEW_MASTER_HOST: change.to.hostname,
    SENTINEL_TUNNEL_NEW_MASTER_PORT: String(change.to.port),
    SENTINEL_TUNNEL_LEARNED_VIA: change.via,
  };
}

/** The outcome of one hook run. */
export interface HookResult {
  readonly ok: boolean;
  readonly code: number | null;
  readonly timedOut: boolean;
  readonly durationMs: number;
}

/**
 * Runs a hook for a change and logs how it went. Never throws.
 */
export async function runHook(
  hook: HookConfig,
  change: MasterChange,
  signal: AbortSignal,
): Promise<HookResult> {
  const started = performance.now();
  const deadline = AbortSignal.timeout(hook.timeoutMs);
  const [program, ...args] = hook.command;
  const fields = {
    database: change.database,
    command: hook.command.join(" "),
    from: change.from ? formatAddress(change.from) : null,
    to: formatAddress(change.to),
  };
  try {
    const output = await new Deno.Command(program!, {
      args,
      env: hookEnvironment(change),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.any([deadline, signal]),
    }).output();
    const durationMs = performance.now() - started;
    const result = {
      ...fields,
      code: output.code,
      durationMs: Math.round(durationMs),
      stdout: clip(output.stdout),
      stderr: clip(output.stderr),
    };
    if (deadline.aborted) {
      log.error(
        "Database {database}: hook {command} was killed after {timeoutMs} ms; stdout: {stdout}; stderr: {stderr}",
        { ...result, timeoutMs: hook.timeoutMs },
      );
      return { ok: false, code: output.code, timedOut: true, durationMs };
    }
    if (output.success) {
      log.info(
        "Database {database}: hook {command} for {from} -> {to} succeeded; stdout: {stdout}",
        result,
      );
    } else {
      log.error(
        "Database {database}: hook {command} for {from} -> {to} exited with {code}; stdout: {stdout}; stderr: {stderr}",
        result,
      );
    }
    return { ok: output.success, code: output.code, timedOut: false, durationMs };
  } catch (error) {
    const durationMs = performance.now() - started;
    const cause = error instanceof Deno.errors.NotFound
      ? `${JSON.stringify(program)} was not found; give its absolute path`
      : error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied
      ? `not permitted to run ${JSON.stringify(program)}: ${(error as Error).message}`
      : (error as Error).message;
    log.error("Database {database}: hook {command} could not run: {cause}", { ...fields, cause });
    return { ok: false, code: null, timedOut: deadline.aborted, durationMs };
  }
}

function clip(bytes: Uint8Array): string {
  const text = new TextDecoder().decode(bytes.subarray(0, OUTPUT_LIMIT)).trim();
  return bytes.length > OUTPUT_LIMIT ? `${text}... (${bytes.length} bytes)` : text;
}

/** Runs one database's hooks one after another, in the order of the changes. */
export class HookQueue {
  #tail: Promise<unknown> = Promise.resolve();
  readonly #hook: HookConfig;
  readonly #signal: AbortSignal;

  constructor(hook: HookConfig, signal: AbortSignal) {
    this.#hook = hook;
    this.#signal = signal;
  }

  /** Queues a run for `change`. */
  push(change: MasterChange): void {
    this.#tail = this.#tail.then(() =>
      this.#signal.aborted ? undefined : runHook(this.#hook, change, this.#signal)
    );
  }

  /** Settles when every queued run has ended. */
  idle(): Promise<void> {
    return this.#tail.then(() => {});
  }
}
