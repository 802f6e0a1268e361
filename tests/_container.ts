/**
 * Test utility: the container image of deploy/container, built once per test
 * run from the bundle the tests run (`make image`'s script), and containers of
 * it run with podman on the host's network, so that they reach the loopback
 * Redis and Sentinel processes of tests/_deployment.ts.
 *
 * ```ts
 * const why = await containersUnavailable();
 * const image = await buildImage();
 * await using container = await runContainer(image, { env: { ... } });
 * ```
 *
 * Needs root, podman and runc (with deploy/container/containers.conf), and a
 * current dist/sentinel-tunnel.js (`make bundle`, as `make test` runs it);
 * {@linkcode containersUnavailable} says why not.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { JsonLines, parseLogLine } from "./_json_lines.ts";
import type { LogRecord } from "./_tunnel.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const BUNDLE = "dist/sentinel-tunnel.js";
/** The name the tests build the image under, apart from `make image`'s sentinel-tunnel. */
export const TEST_IMAGE = "sentinel-tunnel-test";

/** The environment podman runs with: the project's containers.conf. */
export const PODMAN_ENV = {
  CONTAINERS_CONF: `${ROOT}deploy/container/containers.conf`,
  RUST_BACKTRACE: "0",
};

const decoder = new TextDecoder();

/** Runs podman to completion; throws with its output unless it exits 0. */
export async function podman(...args: string[]): Promise<string> {
  const output = await new Deno.Command("podman", {
    args,
    env: PODMAN_ENV,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  const stdout = decoder.decode(output.stdout);
  if (!output.success) {
    throw new Error(
      `podman ${args.join(" ")} exited with ${output.code}: ${decoder.decode(output.stderr)}`,
    );
  }
  return stdout.trim();
}

/**
 * A podman secret made from a file on the host, as podman and Kubernetes deliver secrets; `await
 * using` removes the secret and the file.
 */
export async function podmanSecret(
  name: string,
  value: string,
): Promise<AsyncDisposable & { name: string }> {
  const file = await Deno.makeTempFile({ prefix: "st-secret-" });
  await Deno.writeTextFile(file, value);
  await podman("secret", "rm", name).catch(() => {});
  await podman("secret", "create", name, file).catch(async (error) => {
    await Deno.remove(file).catch(() => {});
    throw error;
  });
  return {
    name,
    async [Symbol.asyncDispose]() {
      await podman("secret", "rm", name).catch(() => {});
      await Deno.remove(file).catch(() => {});
    },
  };
}

/**
 * Why the bundle cannot be put in an image: missing, or older than what `make bundle` builds it
 * from (the Makefile's prerequisites of dist/sentinel-tunnel.js), or undefined when it is current.
 */
async function bundleOutOfDate(): Promise<string | undefined> {
  let built: Date | null;
  try {
    built = (await Deno.stat(`${ROOT}${BUNDLE}`)).mtime;
  } catch {
    return `${BUNDLE} is missing; run make bundle (make test does)`;
  }
  const sources = ["main.ts", "deno.json", "deno.lock"];
  for await (const plane of Deno.readDir(`${ROOT}src`)) {
    if (!plane.isDirectory) continue;
    for await (const file of Deno.readDir(`${ROOT}src/${plane.name}`)) {
      if (file.isFile && file.name.endsWith(".ts")) sources.push(`src/${plane.name}/${file.name}`);
    }
  }
  for (const source of sources) {
    const changed = (await Deno.stat(`${ROOT}${source}`)).mtime;
    if (built && changed && changed > built) {
      return `${BUNDLE} is older than ${source}; run make bundle (make test does)`;
    }
  }
  return undefined;
}

/** Why containers cannot be run here, or undefined when they can. */
export async function containersUnavailable(): Promise<string | undefined> {
  const stale = await bundleOutOfDate();
  if (stale) return `the image is built from the bundle, and ${stale}`;
  // Asked of `id`, not Deno.uid(): the tests run without --allow-sys.
  if ((await readWithSh("id -u")).trim() !== "0") {
    return "podman runs the image here as root only (CI runs as root)";
  }
  try {
    await podman("--version");
  } catch (error) {
    return `podman cannot be run (${
      (error as Error).message.split("\n")[0]
    }): make setup installs podman and runc as root with apt-get`;
  }
  return undefined;
}

let built: Promise<string> | undefined;

/**
 * Builds the image from the bundle with deploy/container/build.sh (what
 * `make image` runs) under {@linkcode TEST_IMAGE}, once per test run, and
 * resolves with its id.
 */
export function buildImage(): Promise<string> {
  built ??= (async () => {
    const started = performance.now();
    const output = await new Deno.Command("bash", {
      args: ["deploy/container/build.sh"],
      cwd: ROOT,
      env: { ...PODMAN_ENV, IMAGE: TEST_IMAGE },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(300_000),
    }).output();
    const stderr = decoder.decode(output.stderr);
    if (!output.success) throw new Error(`make image's build.sh failed: ${stderr}`);
    console.log(
      `${stderr.trim()} (built in ${((performance.now() - started) / 1000).toFixed(1)} s)`,
    );
    return decoder.decode(output.stdout).trim().split("\n").at(-1)!;
  })();
  return built;
}

/** Options for {@linkcode runContainer}. */
export interface RunContainerOptions {
  /** Environment variables of the container. */
  env?: Record<string, string>;
  /** `podman run --network`. @default {"host"} */
  network?: string;
  /** More `podman run` options, such as `--secret` or `--volume`. */
  podmanArgs?: string[];
  /** Arguments after the image: sentinel-tunnel's own. */
  args?: string[];
}

/** A container running in the foreground of a `podman run`. */
export interface Container extends AsyncDisposable {
  readonly name: string;
  /** Every log line so far, parsed (sentinel-tunnel logs JSON when stderr is not a terminal). */
  readonly logs: LogRecord[];
  /** Waits for a log line that matches; throws with the last lines after `timeoutMs`. */
  waitForLog(match: (record: LogRecord) => boolean, timeoutMs?: number): Promise<LogRecord>;
  /** The host's pid of the container's first process, sentinel-tunnel. */
  pid(): Promise<number>;
  /** Settles with `podman run`'s status, which is the container's exit status. */
  readonly status: Promise<Deno.CommandStatus>;
  /** Removes the container (SIGKILL if it runs) and waits for `podman run` to end. Idempotent. */
  [Symbol.asyncDispose](): Promise<void>;
}

let containers = 0;

/**
 * Runs the image with `podman run --rm`, on the host's network unless told, as its own
 * user, with a read-only root file system, no capabilities and no new
 * privileges: what the Kubernetes example's securityContext asks for.
 */
export function runContainer(image: string, options: RunContainerOptions = {}): Container {
  const name = `st-test-${Deno.pid}-${++containers}`;
  const env = Object.entries(options.env ?? {}).flatMap(([key, value]) => [
    "--env",
    `${key}=${value}`,
  ]);
  const child = new Deno.Command("podman", {
    args: [
      "run",
      "--rm",
      "--name",
      name,
      "--network",
      options.network ?? "host",
      "--read-only",
      "--cap-drop",
      "all",
      "--security-opt",
      "no-new-privileges",
      ...env,
      ...(options.podmanArgs ?? []),
      image,
      ...(options.args ?? []),
    ],
    env: PODMAN_ENV,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines = new JsonLines<LogRecord>(child.stderr, parseLogLine);
  let exited = false;
  const status = child.status.finally(() => exited = true);
  return {
    name,
    logs: lines.records,
    status,
    waitForLog: (match, timeoutMs = 15_000) =>
      lines.waitFor(match, timeoutMs, `log line of container ${name}`),
    async pid() {
      const pid = Number(await podman("inspect", "--format", "{{.State.Pid}}", name));
      if (!(pid > 0)) throw new Error(`container ${name} has no running process (pid ${pid})`);
      return pid;
    },
    async [Symbol.asyncDispose]() {
      if (!exited) {
        await new Deno.Command("podman", {
          args: ["rm", "--force", "--time", "0", name],
          env: PODMAN_ENV,
          stdin: "null",
          stdout: "null",
          stderr: "null",
        }).output();
      }
      await status;
      await lines.done;
    },
  };
}

/**
 * The output of a shell command. /proc files are read through `cat` because Deno lets only
 * --allow-all read /proc, and the tests run with less.
 */
async function readWithSh(command: string): Promise<string> {
  const output = await new Deno.Command("sh", {
    args: ["-c", command],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(`sh -c '${command}' failed: ${decoder.decode(output.stderr)}`);
  }
  return decoder.decode(output.stdout);
}

/** A field of /proc/PID/status, such as `Uid` or `VmRSS`. */
export async function procStatus(pid: number, field: string): Promise<string> {
  const text = await readWithSh(`cat /proc/${Math.trunc(pid)}/status`);
  const line = text.split("\n").find((l) => l.startsWith(`${field}:`));
  if (line === undefined) throw new Error(`/proc/${pid}/status has no ${field}`);
  return line.slice(field.length + 1).trim();
}

/** CPU time (user and system) the process has used, in seconds. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readWithSh(`cat /proc/${Math.trunc(pid)}/stat`);
  // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticksPerSecond = 100; // USER_HZ, 100 on every Linux architecture the image is built for
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
}
