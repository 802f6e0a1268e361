/**
 * Failover hooks: a command run on every confirmed master change, to rewrite
 * a proxy's config or update a service registry. The command gets the change
 * in environment variables, runs under a deadline, and has its output logged.
 * A hook that fails or hangs never affects the tunnels.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { formatAddress } from "../shared/address.ts";
import type { HookConfig } from "../shared/settings.ts";
import type { MasterChange } from "../control/master_watcher.ts";

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
  const [program, ...args] = hook.command;
  const fields = {
    database: change.database,
    command: hook.command.join(" "),
    from: change.from ? formatAddress(change.from) : null,
    to: formatAddress(change.to),
  };
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program!, {
      args,
      // Only PATH and the change: the tunnel's environment may hold passwords, and hook output is logged.
      clearEnv: true,
      env: {
        PATH: Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin",
        ...hookEnvironment(change),
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      // Its own process group, so that a timeout kills whatever the hook started too.
      detached: true,
    }).spawn();
  } catch (error) {
    const cause = error instanceof Deno.errors.NotFound
      ? `${JSON.stringify(program)} was not found; give its absolute path`
      : error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied
      ? `not permitted to run ${JSON.stringify(program)}: ${(error as Error).message}`
      : (error as Error).message;
    log.error("Database {database}: hook {command} could not run: {cause}", { ...fields, cause });
    return { ok: false, code: null, timedOut: false, durationMs: performance.now() - started };
  }
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  let timedOut = false;
  const kill = (reason: "timeout" | "shutdown") => {
    timedOut ||= reason === "timeout";
    killGroup(child);
  };
  const timer = setTimeout(() => kill("timeout"), hook.timeoutMs);
  const onAbort = () => kill("shutdown");
  signal.addEventListener("abort", onAbort, { once: true });
  const status = await child.status;
  clearTimeout(timer);
  signal.removeEventListener("abort", onAbort);
  // A background process the hook started may hold its output open: read what is there, briefly.
  const grace = AbortSignal.timeout(OUTPUT_GRACE_MS);
  const result = {
    ...fields,
    code: status.code,
    durationMs: Math.round(performance.now() - started),
    stdout: await stdout.text(grace),
    stderr: await stderr.text(grace),
  };
  if (timedOut) {
    log.error(
      "Database {database}: hook {command} was killed after {timeoutMs} ms; stdout: {stdout}; stderr: {stderr}",
      { ...result, timeoutMs: hook.timeoutMs },
    );
  } else if (status.success) {
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
  return {
    ok: status.success && !timedOut,
    code: status.code,
    timedOut,
    durationMs: result.durationMs,
  };
}

/** Kills the hook's process group (its pid, as it leads its own group), or the hook alone. */
function killGroup(child: Deno.ChildProcess): void {
  try {
    Deno.kill(-child.pid, "SIGKILL");
  } catch {
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
  }
}

/** How long to wait for a finished hook's output streams to close. */
const OUTPUT_GRACE_MS = 200;

/** Reads a stream in the background, keeping the first {@linkcode OUTPUT_LIMIT} bytes. */
function collect(
  stream: ReadableStream<Uint8Array>,
): { text(deadline: AbortSignal): Promise<string> } {
  const reader = stream.getReader();
  const kept = new Uint8Array(OUTPUT_LIMIT);
  let size = 0;
  let total = 0;
  const done = (async () => {
    try {
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
        const room = OUTPUT_LIMIT - size;
        if (room > 0) {
          kept.set(chunk.value.subarray(0, room), size);
          size += Math.min(room, chunk.value.length);
        }
        total += chunk.value.length;
      }
    } catch { /* cancelled */ }
  })();
  return {
    async text(deadline: AbortSignal): Promise<string> {
      const onDeadline = () => void reader.cancel().catch(() => {});
      if (deadline.aborted) onDeadline();
      else deadline.addEventListener("abort", onDeadline, { once: true });
      await done;
      deadline.removeEventListener("abort", onDeadline);
      const text = new TextDecoder().decode(kept.subarray(0, size)).trim();
      return total > size ? `${text}... (${total} bytes)` : text;
    },
  };
}

/** Where hook runs are counted. */
export interface HookCounts {
  hookRuns: number;
  hookFailures: number;
}

/**
 * Runs one database's hooks one after another, in the order of the changes.
 * A reload may change or remove the hook; runs already queued keep theirs.
 */
export class HookQueue {
  #tail: Promise<unknown> = Promise.resolve();
  #hook: HookConfig | undefined;
  readonly #signal: AbortSignal;
  readonly #counts: HookCounts | undefined;

  /** `counts` (the name's stats, say) counts the runs and the ones that failed. */
  constructor(hook: HookConfig | undefined, signal: AbortSignal, counts?: HookCounts) {
    this.#hook = hook;
    this.#signal = signal;
    this.#counts = counts;
  }

  /** The hook for changes pushed from now on. */
  set hook(hook: HookConfig | undefined) {
    this.#hook = hook;
  }

  /** Queues a run for `change`, if there is a hook. */
  push(change: MasterChange): void {
    const hook = this.#hook;
    if (!hook) return;
    this.#tail = this.#tail.then(async () => {
      if (this.#signal.aborted) return;
      const result = await runHook(hook, change, this.#signal);
      if (!this.#counts) return;
      this.#counts.hookRuns++;
      if (!result.ok) this.#counts.hookFailures++;
    }).catch((error) => {
      // runHook never throws; if it ever did, the next change's hook must still run.
      log.error("Database {database}: hook run failed unexpectedly: {error}", {
        database: change.database,
        error: error instanceof Error ? (error.stack ?? error.message) : String(error),
      });
    });
  }

  /** Settles when every queued run has ended. */
  idle(): Promise<void> {
    return this.#tail.then(() => {});
  }
}
