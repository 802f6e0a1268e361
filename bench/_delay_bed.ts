/**
 * A test bed with a real round trip between an application host and a Redis
 * host: three network namespaces, joined by veth pairs through a router
 * namespace whose forwarded packets pass through bench/delay_line.c, which
 * holds each one for a fixed time. The kernel has no netem here, and a
 * userspace TCP relay would answer the client's handshake at once; this
 * delays every packet, handshakes included.
 *
 * ```
 * app ns (10.203.1.2) ── veth ── router ns ── veth ── redis ns (10.203.2.2, 10.203.2.3)
 *                                   │
 *                   to/from 10.203.2.2: ip rule → table 100 → TUN → delay_line → TUN
 * ```
 *
 * Packets between the app and 10.203.2.2 enter the router on a veth and are
 * policy-routed (`ip rule add iif <veth> to|from 10.203.2.2 lookup 100`,
 * table 100 holding `default dev <tun>`) into the TUN device; delay_line
 * writes each one back into the TUN after the delay, and the kernel then
 * routes it through the main table to the other veth. 10.203.2.3, a second
 * address of the same Redis host, is routed plainly, without the TUN: the
 * baseline for what the delay line itself costs.
 *
 * ```ts
 * await using bed = await startDelayBed({ delayUs: 500 });
 * const child = bed.spawn("app", "redis-benchmark", ["-h", bed.redisAddress, ...]);
 * ```
 *
 * Namespaces are named `stbench-<pid>-app|router|redis`, so they never meet
 * the tests' namespaces or another run's. Disposing stops the delay line,
 * kills any process still inside the namespaces and deletes them, which
 * removes every device; so does a failed start.
 *
 * @module
 */

/** The three hosts of the bed. */
export type BedHost = "app" | "router" | "redis";

/** What one run of the delay line counted, as it prints on SIGTERM. */
export interface DelayLineStats {
  delayUs: number;
  /** Whether it ran at SCHED_FIFO priority. */
  realtime: boolean;
  packets: number;
  bytes: number;
  /** Packets dropped because the queue was full. */
  drops: number;
  /** Packets that filled the whole read buffer, and may have been cut. */
  truncated: number;
  writeErrors: number;
  inQueueAtExit: number;
  maxQueue: number;
  /** How late packets were written against their due time, in microseconds. */
  latenessP50Us: number;
  latenessP99Us: number;
  latenessMaxUs: number;
}

/** Options for {@linkcode startDelayBed}. */
export interface DelayBedOptions {
  /** The delay of one pass through the router, each direction, in microseconds. */
  delayUs: number;
  /**
   * The delay line's queue, in packets; one that arrives when it is full is dropped.
   * @default {4096}
   */
  queuePackets?: number;
  /**
   * Aborts the start.
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/** A running bed. */
export interface DelayBed extends AsyncDisposable {
  /** The namespace of each host. */
  readonly namespaces: Readonly<Record<BedHost, string>>;
  /** The application host's address. */
  readonly appAddress: string;
  /** The Redis host's address whose packets pass through the delay line. */
  readonly redisAddress: string;
  /** A second address of the Redis host, routed without the delay line. */
  readonly redisPlainAddress: string;
  /** The delay line's current delay per pass, in microseconds. */
  readonly delayUs: number;
  /** Every delay line run stopped so far, in order. */
  readonly finishedRuns: readonly DelayLineStats[];
  /** Restarts the delay line with another delay; resolves to the stopped run's statistics. */
  setDelay(delayUs: number): Promise<DelayLineStats>;
  /** Stops the delay line (the link then carries nothing); resolves to its statistics. */
  stopDelayLine(): Promise<DelayLineStats | undefined>;
  /** Spawns `program` inside a host's namespace (`ip netns exec`); the child's pid is the program's. */
  spawn(
    host: BedHost,
    program: string,
    args: readonly string[],
    options?: SpawnOptions,
  ): Deno.ChildProcess;
  /** Runs `program` inside a host's namespace to its end, under a deadline. */
  run(
    host: BedHost,
    program: string,
    args: readonly string[],
    options?: RunOptions,
  ): Promise<Deno.CommandOutput>;
}

/** Options of {@linkcode DelayBed.spawn}. */
export interface SpawnOptions {
  stdout?: "piped" | "null";
  stderr?: "piped" | "null";
  env?: Record<string, string>;
  cwd?: string;
}

/** Options of {@linkcode DelayBed.run}. */
export interface RunOptions {
  /** @default {30000} */
  timeoutMs?: number;
  signal?: AbortSignal | undefined;
}

/** The addresses of the bed. */
const APP = "10.203.1.2";
const ROUTER_APP = "10.203.1.1";
const ROUTER_REDIS = "10.203.2.1";
const REDIS = "10.203.2.2";
const REDIS_PLAIN = "10.203.2.3";
/** Device names, each inside its own namespace. */
const APP_VETH = "stb-app";
const ROUTER_APP_VETH = "stb-r-app";
const ROUTER_REDIS_VETH = "stb-r-redis";
const REDIS_VETH = "stb-redis";
const TUN = "stb-delay";
const TABLE = "100";
const COMMAND_TIMEOUT_MS = 10_000;
const READY_TIMEOUT_MS = 5_000;
const STOP_TIMEOUT_MS = 5_000;

/**
 * Checks what the bed needs, with a message naming what is missing and what
 * to do; `undefined` when all is there.
 */
export async function delayBedUnavailable(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "it needs Linux network namespaces";
  if (Deno.uid() !== 0) {
    return "it needs root (network namespaces, a TUN device, routing rules); run make bench as root";
  }
  if (!await succeeds("ip", ["-V"])) {
    return "the ip command (iproute2) is missing; install it (Debian/Ubuntu: apt-get install iproute2)";
  }
  if (!await succeeds("gcc", ["--version"])) {
    return "gcc is missing to build bench/delay_line.c; run make setup (as root it installs gcc), or apt-get install gcc";
  }
  try {
    await Deno.stat("/dev/net/tun");
  } catch {
    return "/dev/net/tun is missing: the kernel has no TUN support here (modprobe tun)";
  }
  return undefined;
}

/**
 * Compiles bench/delay_line.c into `dir` and returns the binary's path.
 *
 * @throws {Error} with gcc's output when it fails
 */
export async function buildDelayLine(dir: string): Promise<string> {
  const source = new URL("./delay_line.c", import.meta.url).pathname;
  const binary = `${dir}/delay_line`;
  const output = await new Deno.Command("gcc", {
    args: ["-O2", "-Wall", "-Wextra", "-Werror", "-o", binary, source],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  if (!output.success) {
    throw new Error(
      `Cannot compile ${source} with gcc: exit code ${output.code}\n${
        new TextDecoder().decode(output.stderr).trim()
      }`,
    );
  }
  return binary;
}

/**
 * Builds the namespaces, the links, the routing and the TUN device, compiles
 * and starts the delay line with `delayUs`, and returns the bed.
 *
 * @throws {Error} naming the step that failed; everything made so far is removed first
 */
export async function startDelayBed(options: DelayBedOptions): Promise<DelayBed> {
  const unavailable = await delayBedUnavailable();
  if (unavailable) throw new Error(`Cannot build the delay bed: ${unavailable}`);
  const prefix = `stbench-${Deno.pid}`;
  const namespaces: Record<BedHost, string> = {
    app: `${prefix}-app`,
    router: `${prefix}-router`,
    redis: `${prefix}-redis`,
  };
  const dir = await Deno.makeTempDir({ prefix: "stbench-delay-" });
  const bed = new Bed(namespaces, dir, options.queuePackets ?? 4096);
  try {
    await bed.build(options.signal);
    const binary = await buildDelayLine(dir);
    await bed.startDelayLine(binary, options.delayUs);
  } catch (error) {
    await bed[Symbol.asyncDispose]();
    throw error;
  }
  return bed;
}

class Bed implements DelayBed {
  readonly namespaces: Readonly<Record<BedHost, string>>;
  readonly appAddress = APP;
  readonly redisAddress = REDIS;
  readonly redisPlainAddress = REDIS_PLAIN;
  readonly finishedRuns: DelayLineStats[] = [];
  #dir: string;
  #queue: number;
  #binary = "";
  #line: {
    child: Deno.ChildProcess;
    delayUs: number;
    stdout: Promise<string>;
    stderr: Promise<string>;
  } | undefined;
  #disposed: Promise<void> | undefined;

  constructor(namespaces: Record<BedHost, string>, dir: string, queue: number) {
    this.namespaces = namespaces;
    this.#dir = dir;
    this.#queue = queue;
  }

  get delayUs(): number {
    return this.#line?.delayUs ?? 0;
  }

  async build(signal?: AbortSignal): Promise<void> {
    const { app, router, redis } = this.namespaces;
    // Leftovers of an earlier run with the same pid (a crash, a kill -9).
    for (const name of Object.values(this.namespaces)) await this.#deleteNamespace(name);
    for (const name of Object.values(this.namespaces)) {
      signal?.throwIfAborted();
      await ip(["netns", "add", name]);
      await ip(["-n", name, "link", "set", "lo", "up"]);
    }
    // Made inside the namespaces, so that no name is ever taken in the root namespace.
    await ip([
      "link",
      "add",
      APP_VETH,
      "netns",
      app,
      "type",
      "veth",
      "peer",
      "name",
      ROUTER_APP_VETH,
      "netns",
      router,
    ]);
    await ip([
      "link",
      "add",
      REDIS_VETH,
      "netns",
      redis,
      "type",
      "veth",
      "peer",
      "name",
      ROUTER_REDIS_VETH,
      "netns",
      router,
    ]);

    await ip(["-n", app, "addr", "add", `${APP}/24`, "dev", APP_VETH]);
    await ip(["-n", app, "link", "set", APP_VETH, "up"]);
    await ip(["-n", app, "route", "add", "default", "via", ROUTER_APP]);

    await ip(["-n", redis, "addr", "add", `${REDIS}/24`, "dev", REDIS_VETH]);
    await ip(["-n", redis, "addr", "add", `${REDIS_PLAIN}/24`, "dev", REDIS_VETH]);
    await ip(["-n", redis, "link", "set", REDIS_VETH, "up"]);
    await ip(["-n", redis, "route", "add", "default", "via", ROUTER_REDIS]);

    await ip(["-n", router, "addr", "add", `${ROUTER_APP}/24`, "dev", ROUTER_APP_VETH]);
    await ip(["-n", router, "addr", "add", `${ROUTER_REDIS}/24`, "dev", ROUTER_REDIS_VETH]);
    await ip(["-n", router, "link", "set", ROUTER_APP_VETH, "up"]);
    await ip(["-n", router, "link", "set", ROUTER_REDIS_VETH, "up"]);
    await ip(["-n", router, "tuntap", "add", "dev", TUN, "mode", "tun"]);
    await ip(["-n", router, "link", "set", TUN, "up", "mtu", "1500", "txqueuelen", "10000"]);
    // Packets come back out of the TUN with addresses that are not the TUN's: no reverse-path check.
    await this.#sysctl("router", [
      "net.ipv4.ip_forward=1",
      "net.ipv4.conf.all.rp_filter=0",
      "net.ipv4.conf.default.rp_filter=0",
      `net.ipv4.conf.${TUN}.rp_filter=0`,
      `net.ipv4.conf.${TUN}.accept_local=1`,
    ]);
    await ip(["-n", router, "route", "add", "default", "dev", TUN, "table", TABLE]);
    await ip(["-n", router, "rule", "add", "iif", ROUTER_APP_VETH, "to", REDIS, "lookup", TABLE]);
    await ip([
      "-n",
      router,
      "rule",
      "add",
      "iif",
      ROUTER_REDIS_VETH,
      "from",
      REDIS,
      "lookup",
      TABLE,
    ]);
    // Connections per second from one address: -k 0 rows open tens of thousands in a minute.
    for (const host of ["app", "redis"] as const) {
      await this.#sysctl(host, [
        "net.ipv4.tcp_tw_reuse=1",
        "net.ipv4.ip_local_port_range=1024 65535",
        "net.core.somaxconn=4096",
      ]);
    }
  }

  async startDelayLine(binary: string, delayUs: number): Promise<void> {
    this.#binary = binary;
    const child = this.spawn("router", binary, [
      "--dev",
      TUN,
      "--delay-us",
      String(delayUs),
      "--queue",
      String(this.#queue),
    ]);
    let seen = "";
    const ready = Promise.withResolvers<boolean>();
    const stdout = (async () => {
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        seen += chunk;
        if (seen.includes("ready\n")) ready.resolve(true);
      }
      ready.resolve(false);
      return seen;
    })();
    const stderr = readAll(child.stderr);
    this.#line = { child, delayUs, stdout, stderr };
    const timer = setTimeout(() => ready.resolve(false), READY_TIMEOUT_MS);
    const started = await ready.promise;
    clearTimeout(timer);
    if (!started) {
      await this.#stopLine();
      throw new Error(
        `Cannot start the delay line (${binary} --dev ${TUN} --delay-us ${delayUs}) in ${this.namespaces.router}: it did not print "ready" within ${READY_TIMEOUT_MS} ms: ${
          (await stderr).trim() || "no output"
        }`,
      );
    }
  }

  async setDelay(delayUs: number): Promise<DelayLineStats> {
    const stats = await this.#stopLine();
    if (stats === undefined) throw new Error("The delay line printed no statistics when stopped");
    await this.startDelayLine(this.#binary, delayUs);
    return stats;
  }

  stopDelayLine(): Promise<DelayLineStats | undefined> {
    return this.#stopLine();
  }

  spawn(
    host: BedHost,
    program: string,
    args: readonly string[],
    options: SpawnOptions = {},
  ): Deno.ChildProcess {
    return new Deno.Command("ip", {
      args: ["netns", "exec", this.namespaces[host], program, ...args],
      stdin: "null",
      stdout: options.stdout ?? "piped",
      stderr: options.stderr ?? "piped",
      ...(options.env ? { env: options.env } : {}),
      ...(options.cwd ? { cwd: options.cwd } : {}),
    }).spawn();
  }

  async run(
    host: BedHost,
    program: string,
    args: readonly string[],
    options: RunOptions = {},
  ): Promise<Deno.CommandOutput> {
    const timeout = AbortSignal.timeout(options.timeoutMs ?? 30_000);
    return await new Deno.Command("ip", {
      args: ["netns", "exec", this.namespaces[host], program, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: options.signal ? AbortSignal.any([timeout, options.signal]) : timeout,
    }).output();
  }

  /** SIGTERM to the delay line, then its statistics line. */
  async #stopLine(): Promise<DelayLineStats | undefined> {
    const line = this.#line;
    if (!line) return undefined;
    this.#line = undefined;
    await stopChild(line.child);
    const text = await line.stdout;
    const json = text.split("\n").find((l) => l.startsWith("{"));
    if (!json) return undefined;
    const stats = JSON.parse(json) as DelayLineStats;
    this.finishedRuns.push(stats);
    return stats;
  }

  async #sysctl(host: BedHost, settings: readonly string[]): Promise<void> {
    const output = await this.run(host, "sysctl", ["-q", "-w", ...settings], {
      timeoutMs: COMMAND_TIMEOUT_MS,
    });
    if (!output.success) {
      throw new Error(
        `Cannot set ${settings.join(" ")} in ${this.namespaces[host]}: ${
          new TextDecoder().decode(output.stderr).trim()
        }`,
      );
    }
  }

  /** Kills whatever still runs in the namespace, by pid, then deletes it. */
  async #deleteNamespace(name: string): Promise<void> {
    const pids = await new Deno.Command("ip", {
      args: ["netns", "pids", name],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
      signal: AbortSignal.timeout(COMMAND_TIMEOUT_MS),
    }).output();
    if (!pids.success) return; // no such namespace
    for (const pid of new TextDecoder().decode(pids.stdout).split(/\s+/).filter(Boolean)) {
      try {
        Deno.kill(Number(pid), "SIGKILL");
      } catch { /* gone meanwhile */ }
    }
    const deadline = performance.now() + STOP_TIMEOUT_MS;
    while (performance.now() < deadline) {
      const left = await new Deno.Command("ip", {
        args: ["netns", "pids", name],
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).output();
      if (new TextDecoder().decode(left.stdout).trim() === "") break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await ip(["netns", "del", name]).catch((error) =>
      console.error(`bench: ${error instanceof Error ? error.message : error}`)
    );
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#disposed ??= (async () => {
      await this.#stopLine().catch(() => undefined);
      for (const name of Object.values(this.namespaces)) await this.#deleteNamespace(name);
      await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
    })();
    return this.#disposed;
  }
}

/** Runs `ip args`; throws with its stderr when it fails. */
async function ip(args: readonly string[]): Promise<void> {
  const output = await new Deno.Command("ip", {
    args: [...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    signal: AbortSignal.timeout(COMMAND_TIMEOUT_MS),
  }).output();
  if (!output.success) {
    throw new Error(
      `Cannot build the delay bed: "ip ${args.join(" ")}" failed: ${
        new TextDecoder().decode(output.stderr).trim()
      }`,
    );
  }
}

/** SIGTERM, then SIGKILL after {@linkcode STOP_TIMEOUT_MS}; resolves once it exited. */
export async function stopChild(child: Deno.ChildProcess): Promise<Deno.CommandStatus> {
  try {
    child.kill("SIGTERM");
  } catch { /* exited already */ }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited meanwhile */ }
  }, STOP_TIMEOUT_MS);
  try {
    return await child.status;
  } finally {
    clearTimeout(timer);
  }
}

async function succeeds(program: string, args: string[]): Promise<boolean> {
  try {
    const output = await new Deno.Command(program, {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "null",
      signal: AbortSignal.timeout(COMMAND_TIMEOUT_MS),
    }).output();
    return output.success;
  } catch {
    return false;
  }
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await readAllText(stream.pipeThrough(new TextDecoderStream()));
}

async function readAllText(stream: ReadableStream<string>): Promise<string> {
  let text = "";
  for await (const chunk of stream) text = (text + chunk).slice(-16_384);
  return text;
}
