/**
 * Test utilities that run sentinel-tunnel as a subprocess, the way an operator
 * does. What runs is, in this order:
 * - the executable `SENTINEL_TUNNEL_BINARY` names: the `deno compile` binary
 *   (as the release workflow tests it) or `make standin`'s stand-in that runs
 *   the bundle the way the binary runs (as `make test` does);
 * - `deno run` on the script `SENTINEL_TUNNEL_ENTRY` names (the bundle, as
 *   `make bench` and `make demo` do);
 * - `deno run main.ts` (a test file run on its own).
 *
 * Every test that starts a tunnel gets its command from {@linkcode tunnelCommand},
 * so none depends on `deno run`.
 *
 * @module
 */
import { isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { RedisConnection } from "../src/control/redis_connection.ts";
import type { RespValue } from "../src/control/resp.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

/** The script `deno run` runs when no binary is named: the bundle or the source. */
export const ENTRY = Deno.env.get("SENTINEL_TUNNEL_ENTRY") ?? "main.ts";

/** The executable that is the tunnel, when `SENTINEL_TUNNEL_BINARY` names one; absolute. */
export const BINARY = binaryUnderTest(Deno.env.get("SENTINEL_TUNNEL_BINARY"));

/** What the tests run as the tunnel, for messages: the binary or the script. */
export const TUNNEL_UNDER_TEST = BINARY ?? ENTRY;

/** The permissions `deno run` gives the tunnel: the ones compiled into the binary. */
const PERMISSIONS = ["--allow-net", "--allow-read", "--allow-env", "--allow-write", "--allow-run"];

/** A program and its arguments. */
export interface TunnelCommand {
  program: string;
  args: string[];
}

/**
 * The command that runs sentinel-tunnel with `args` (its options and config
 * file): the binary itself, or `deno run` on the script. Tests, the demo and
 * the benchmarks start every tunnel with it.
 */
export function tunnelCommand(args: string[]): TunnelCommand {
  if (BINARY !== undefined) return { program: BINARY, args };
  return { program: Deno.execPath(), args: ["run", "--quiet", ...PERMISSIONS, ENTRY, ...args] };
}

/**
 * Checks `SENTINEL_TUNNEL_BINARY` once, at load: a path that does not name an
 * executable file fails every test that uses it, saying what to set.
 */
function binaryUnderTest(value: string | undefined): string | undefined {
  if (value === undefined || value === "") return undefined;
  let path: string;
  let info: Deno.FileInfo;
  try {
    // Symbolic links resolved, as .ci/test.sh resolves it for --allow-run.
    path = Deno.realPathSync(isAbsolute(value) ? value : resolve(Deno.cwd(), value));
    info = Deno.statSync(path);
  } catch (error) {
    throw new Error(
      `SENTINEL_TUNNEL_BINARY=${value}: ${
        (error as Error).message
      }; set it to the sentinel-tunnel executable to test (make build, or make standin), or unset it to test through deno run`,
    );
  }
  if (!info.isFile || ((info.mode ?? 0o111) & 0o111) === 0) {
    throw new Error(
      `SENTINEL_TUNNEL_BINARY=${value} is not an executable file; set it to the sentinel-tunnel executable to test (make build, or make standin)`,
    );
  }
  return path;
}

/** A finished CLI run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion with `args`. */
export async function runCli(
  args: string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  const command = tunnelCommand(args);
  const output = await new Deno.Command(command.program, {
    args: command.args,
    cwd: ROOT,
    env: { RUST_BACKTRACE: "0", NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** Writes a config object to a temp file and returns its path. */
export async function writeConfig(config: unknown): Promise<string> {
  const path = await Deno.makeTempFile({
    prefix: "st-config-",
    suffix: ".jsonc",
  });
  await Deno.writeTextFile(
    path,
    typeof config === "string" ? config : JSON.stringify(config, null, 2),
  );
  return path;
}

/** One JSON log line of the tunnel. */
export type LogRecord = Record<string, unknown> & {
  message?: string;
  level?: string;
};

/** A running tunnel process. */
export interface TunnelProcess extends AsyncDisposable {
  readonly pid: number;
  /** The config file it runs on; rewrite it and send SIGHUP to reload. */
  readonly configPath: string;
  /** Sends a signal, such as SIGHUP. */
  kill(signal: Deno.Signal): void;
  /** Every log line so far, parsed. */
  readonly logs: LogRecord[];
  /** Waits for a log line that matches; throws with the logs so far after `timeoutMs`. */
  waitForLog(
    match: (record: LogRecord) => boolean,
    timeoutMs?: number,
  ): Promise<LogRecord>;
  /** Sends SIGTERM and waits for the exit. */
  stop(): Promise<Deno.CommandStatus>;
  /** Starts reading stderr, for a tunnel started with `readLogs: false`. */
  resumeLogs(): void;
  /** Settles when the process exits, whoever stopped it. */
  readonly status: Promise<Deno.CommandStatus>;
}

/** Options for {@linkcode startTunnel}. */
export interface StartTunnelOptions {
  env?: Record<string, string>;
  /** More command-line options, such as `["--admin", "127.0.0.1:9121"]`. */
  args?: string[];
  /** Runs the tunnel with this many file descriptors at most (`ulimit -n`). */
  fdLimit?: number;
  /** Local ports to wait for before returning. */
  ports?: number[];
  /**
   * When false, stderr is a pipe nobody reads, a stuck log reader, until
   * `resumeLogs()`. @default {true}
   */
  readLogs?: boolean;
}

/** Starts the tunnel on a config object and waits until its ports accept connections. */
export async function startTunnel(
  config: unknown,
  options: StartTunnelOptions = {},
): Promise<TunnelProcess> {
  const configPath = await writeConfig(config);
  const command = tunnelCommand([
    "--log-format",
    "json",
    "--log-level",
    "debug",
    ...(options.args ?? []),
    configPath,
  ]);
  // With an fd limit, sh lowers it and then becomes the tunnel (exec), so the pid is the tunnel's.
  const [program, args] = options.fdLimit === undefined ? [command.program, command.args] : ["sh", [
    "-c",
    `ulimit -n ${options.fdLimit} && exec "$0" "$@"`,
    command.program,
    ...command.args,
  ]];
  const child = new Deno.Command(program, {
    args,
    cwd: ROOT,
    env: { RUST_BACKTRACE: "0", NO_COLOR: "1", ...options.env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const logs: LogRecord[] = [];
  let changed = Promise.withResolvers<void>();
  const readingAllowed = Promise.withResolvers<void>();
  if (options.readLogs ?? true) readingAllowed.resolve();
  const reading = (async () => {
    await readingAllowed.promise;
    let pending = "";
    for await (
      const chunk of child.stderr.pipeThrough(new TextDecoderStream())
    ) {
      pending += chunk;
      let newline;
      while ((newline = pending.indexOf("\n")) !== -1) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        if (line.trim() === "") continue;
        try {
          logs.push(JSON.parse(line));
        } catch {
          logs.push({ message: line, level: "RAW" });
        }
        changed.resolve();
        changed = Promise.withResolvers();
      }
    }
    changed.resolve();
  })();
  let status: Deno.CommandStatus | undefined;
  const exited = child.status.then((s) => status = s);

  const waitForLog = async (
    match: (record: LogRecord) => boolean,
    timeoutMs = 10_000,
  ) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = logs.find(match);
      if (found) return found;
      const remaining = deadline - Date.now();
      if (remaining <= 0 || status !== undefined) {
        throw new Error(
          `No matching tunnel log line within ${timeoutMs} ms${
            status ? ` (tunnel exited with ${status.code})` : ""
          }; logs:\n${logs.map((l) => JSON.stringify(l)).join("\n")}`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        changed.promise,
        exited,
        new Promise((resolve) => timer = setTimeout(resolve, Math.min(remaining, 200))),
      ]);
      clearTimeout(timer);
    }
  };
  const stop = async () => {
    readingAllowed.resolve();
    if (status === undefined) {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
      }, 10_000);
      await exited;
      clearTimeout(timer);
    }
    await reading;
    return status!;
  };
  const tunnel: TunnelProcess = {
    pid: child.pid,
    configPath,
    kill: (signal) => child.kill(signal),
    logs,
    waitForLog,
    stop,
    resumeLogs: () => readingAllowed.resolve(),
    status: child.status,
    async [Symbol.asyncDispose]() {
      await stop();
      await Deno.remove(configPath).catch(() => {});
    },
  };
  try {
    for (const port of options.ports ?? []) {
      await waitForListen(port, () => status !== undefined);
    }
  } catch (error) {
    await tunnel[Symbol.asyncDispose]();
    throw new Error(
      `${(error as Error).message}; tunnel logs:\n${logs.map((l) => JSON.stringify(l)).join("\n")}`,
    );
  }
  return tunnel;
}

async function waitForListen(
  port: number,
  exited: () => boolean,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited()) {
      throw new Error(`The tunnel exited before listening on port ${port}`);
    }
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(
    `The tunnel did not listen on port ${port} within ${timeoutMs} ms`,
  );
}

/** A plain client of the tunnel's port that knows nothing of Sentinel. */
export async function connectClient(
  port: number,
  replyTimeoutMs = 10_000,
): Promise<RedisConnection> {
  return await RedisConnection.open({ hostname: "127.0.0.1", port }, {
    connectTimeoutMs: 2000,
    replyTimeoutMs,
  });
}

/** Connects, runs one command, and disconnects. */
export async function oneCommand(
  port: number,
  args: string[],
  replyTimeoutMs = 10_000,
): Promise<RespValue> {
  using client = await connectClient(port, replyTimeoutMs);
  return await client.call(args);
}
