/**
 * HAProxy as people run it in front of a Sentinel deployment: every data node
 * in one TCP backend, and a health check that passes only on the node that
 * answers `role:master`. It is the benchmark's reference column.
 *
 * ```ts
 * await using haproxy = await startHaproxy(["127.0.0.1:7001", "127.0.0.1:7002"], {
 *   port: 7100,
 *   maxconn: 10_000,
 * });
 * ```
 *
 * What it does not do: it does not watch Sentinel. It learns of a failover
 * only when its checks see another node answer `role:master`, and it leaves
 * the connections already open to the old master alone.
 *
 * @module
 */
import { canConnect } from "../tests/_deployment.ts";

/**
 * TLS from HAProxy to the servers: every server line gets `ssl verify required
 * ca-file ... crt ... verifyhost ...`, and the health check connects with TLS.
 */
export interface HaproxyServerTls {
  /** CAs the servers' certificates must chain to. */
  caFile: string;
  /** The client certificate and its key in one PEM file, for `tls-auth-clients yes`. */
  crtFile: string;
  /** The name the servers' certificates must carry. */
  verifyHost: string;
}

/** Options for {@linkcode startHaproxy}. */
export interface StartHaproxyOptions {
  /** The port HAProxy listens on, on 127.0.0.1. */
  port: number;
  /**
   * The global and frontend connection limit.
   * @default {10000}
   */
  maxconn?: number;
  /**
   * TLS to the servers; plaintext when absent.
   * @default {undefined}
   */
  tls?: HaproxyServerTls | undefined;
  /**
   * How long to wait for the port to accept connections.
   * @default {10000}
   */
  timeoutMs?: number;
}

/** A running HAProxy process. */
export interface HaproxyProcess extends AsyncDisposable {
  readonly pid: number;
  readonly port: number;
  /** The config file it runs with. */
  readonly configFile: string;
}

/** Whether HAProxy can be used, and why not. */
export type HaproxyAvailability =
  | { available: true; version: string }
  | { available: false; reason: string };

/**
 * The HAProxy config: `mode tcp`, one thread, 1 h client and server timeouts
 * so that idle connections stay open, and a `tcp-check` that expects
 * `role:master`, checked every second. With `tls`, the servers are reached
 * over TLS, the checks too (`tcp-check connect ssl`: the `ssl` of a server
 * line does not reach a `tcp-check connect` rule).
 */
export function haproxyConfig(
  servers: readonly string[],
  options: { port: number; maxconn: number; tls?: HaproxyServerTls | undefined },
): string {
  const { tls } = options;
  const serverTls = tls
    ? ` ssl verify required ca-file ${tls.caFile} crt ${tls.crtFile} verifyhost ${tls.verifyHost}`
    : "";
  return [
    "global",
    "  nbthread 1",
    `  maxconn ${options.maxconn}`,
    "",
    "defaults",
    "  mode tcp",
    `  maxconn ${options.maxconn}`,
    "  timeout connect 1s",
    "  timeout client 1h",
    "  timeout server 1h",
    "  timeout check 1s",
    "",
    "frontend redis_in",
    `  bind 127.0.0.1:${options.port}`,
    "  default_backend redis_master",
    "",
    "backend redis_master",
    "  option tcp-check",
    `  tcp-check connect${tls ? " ssl" : ""}`,
    "  tcp-check send PING\\r\\n",
    "  tcp-check expect string +PONG",
    "  tcp-check send info\\ replication\\r\\n",
    "  tcp-check expect string role:master",
    "  tcp-check send QUIT\\r\\n",
    "  tcp-check expect string +OK",
    ...servers.map((address, i) => `  server node${i + 1} ${address} check inter 1s${serverTls}`),
    "",
  ].join("\n");
}

/**
 * Finds `haproxy` on the PATH. When it is missing and this process runs as
 * root with apt-get at hand, installs it (and stops the service the package
 * starts).
 */
export async function ensureHaproxy(signal?: AbortSignal): Promise<HaproxyAvailability> {
  const found = await haproxyVersion();
  if (found) return { available: true, version: found };
  if (Deno.uid() !== 0) {
    return { available: false, reason: "haproxy is not installed and the benchmark is not root" };
  }
  if (!await succeeds("apt-get", ["--version"], signal)) {
    return { available: false, reason: "haproxy is not installed and apt-get is missing" };
  }
  console.error("bench: installing haproxy with apt-get");
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const installed = await succeeds("apt-get", ["update", "-qq"], signal, env) &&
    await succeeds("apt-get", ["install", "-y", "-qq", "haproxy"], signal, env);
  // The package may start a system HAProxy; the benchmark runs its own.
  await succeeds("service", ["haproxy", "stop"], signal, {}, { quiet: true });
  const version = installed ? await haproxyVersion() : undefined;
  return version
    ? { available: true, version }
    : { available: false, reason: "apt-get install haproxy failed" };
}

/**
 * Writes a config for `servers` (`"host:port"` each) into a temp dir and
 * starts HAProxy in the foreground, then waits until its port accepts
 * connections. Disposing it stops HAProxy and removes the dir.
 *
 * @throws {Error} with HAProxy's output when the config is refused or the port never opens
 */
export async function startHaproxy(
  servers: readonly string[],
  options: StartHaproxyOptions,
): Promise<HaproxyProcess> {
  const maxconn = options.maxconn ?? 10_000;
  const dir = await Deno.makeTempDir({ prefix: "st-haproxy-" });
  const configFile = `${dir}/haproxy.cfg`;
  await Deno.writeTextFile(
    configFile,
    haproxyConfig(servers, { port: options.port, maxconn, tls: options.tls }),
  );
  const child = new Deno.Command("haproxy", {
    args: ["-db", "-f", configFile],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = collect(child.stdout, child.stderr);
  let exited = false;
  const status = child.status.finally(() => exited = true);
  const dispose = async () => {
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch { /* exited meanwhile */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* exited meanwhile */ }
      }, 5000);
      await status;
      clearTimeout(timer);
    }
    await output;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const process: HaproxyProcess = {
    pid: child.pid,
    port: options.port,
    configFile,
    [Symbol.asyncDispose]: dispose,
  };
  const deadline = performance.now() + (options.timeoutMs ?? 10_000);
  while (!exited && performance.now() < deadline) {
    if (await canConnect(options.port)) return process;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await dispose();
  throw new Error(
    `Cannot start HAProxy on port ${options.port}: ${
      exited ? `it exited with code ${(await status).code}` : "the port never opened"
    }\n${(await output).trim()}`,
  );
}

async function haproxyVersion(): Promise<string | undefined> {
  try {
    const output = await new Deno.Command("haproxy", {
      args: ["-v"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    const line = new TextDecoder().decode(output.stdout).split("\n")[0] ?? "";
    return /version (\S+)/.exec(line)?.[1];
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

async function succeeds(
  program: string,
  args: string[],
  signal?: AbortSignal,
  env: Record<string, string> = {},
  options: { quiet?: boolean } = {},
): Promise<boolean> {
  const timeout = AbortSignal.timeout(300_000);
  try {
    const output = await new Deno.Command(program, {
      args,
      env,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      signal: signal ? AbortSignal.any([timeout, signal]) : timeout,
    }).output();
    if (!output.success && !options.quiet) {
      const detail = new TextDecoder().decode(output.stderr).trim().slice(-500);
      console.error(`bench: ${program} ${args.join(" ")} failed: ${detail}`);
    }
    return output.success;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Reads both streams to their end, keeping the last few KiB. */
async function collect(
  ...streams: ReadableStream<Uint8Array>[]
): Promise<string> {
  const parts = await Promise.all(streams.map(async (stream) => {
    let text = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      text = (text + chunk).slice(-4096);
    }
    return text;
  }));
  return parts.join("");
}
