/**
 * A test bed of hosts made of Linux network namespaces, for tests of what real
 * networks do: partitions and links that drop packets silently.
 *
 * ```ts
 * const why = canRunNamespaces();
 * if (why) console.log(`my_test: skipped: ${why}`);
 * Deno.test({ name: "...", ignore: why !== undefined, async fn() {
 *   await using bed = await createTestBed({ hosts: ["app", "r1", "r2", "r3"] });
 *   const { app, r1 } = bed.hosts;
 *   await using server = r1.run("redis-server", ["--bind", r1.ip, "--port", "6379"]);
 *   await bed.cut(app, r1); // app <-> r1 packets now vanish, both ways
 *   await bed.heal();
 * } });
 * ```
 *
 * Each host is a namespace of its own (`st-<pid>-<tag><n>-<host>`) with `lo` and an
 * `eth0` at `10.R.N.(i+1)/24` (R from the pid, N the bed's number, i the host's
 * index), plugged into a bridge that lives in one more namespace
 * (`st-<pid>-<tag><n>-br`). Nothing is done in the root namespace, and the test
 * process itself stays there: it reaches the hosts only through processes
 * started inside them (`host.run`, `host.exec`, the probes in `tests/probes/`).
 *
 * How a cut works, and why: a cut from A to B is a policy rule in B's namespace,
 * `ip rule add from <A> blackhole`, ahead of the `local` table (moved from
 * preference 0 to 1000 at set-up). Every packet from A that reaches B is then
 * dropped without a trace: no RST, no ICMP, for new and established
 * connections alike. A blackhole *route* in the sender's namespace would not
 * do: the sender's connect fails at once with EINVAL. A one-way cut still
 * hangs TCP both ways (the handshake needs both directions); it differs from a
 * two-way cut only for traffic that needs no answer.
 *
 * Sentinels on hosts of their own: `startNetworkDeployment` puts a Sentinel
 * beside each node by default, on the same address, so a cut between hosts
 * parts a node and its Sentinel together. To cut Sentinels without cutting
 * the master (a tunnel host that loses every Sentinel; the old master on one
 * side of a partition and every Sentinel, its own included, on the other),
 * give the Sentinels hosts of their own (`s1`..`s3`, `sentinelHosts`): each
 * is then a namespace and an address like any other host, and every cut stays
 * the silent drop described above. The two alternatives do not work here:
 *
 * - A second address for the Sentinel in the node's namespace: traffic between
 *   two addresses of one namespace goes over `lo`, where no input rule is
 *   consulted (the packet keeps its output route), so the only cut left is an
 *   output rule, and a blackhole there fails the sender's connect at once with
 *   EINVAL (tried: `from <sentinel> to <node> blackhole`) instead of hanging it.
 * - A cut by port (`ip rule ... ipproto tcp dport 26379 blackhole`): it parts
 *   connections *to* a Sentinel, but a node's own outgoing connections (a
 *   replica's link to its master) leave from an ephemeral port, like the
 *   Sentinel's, so no rule can tell them apart, and the Sentinel and node of
 *   one host still share `lo`.
 *
 * It does not do: delay, loss rates or reordering (no netem), IPv6, or DNS
 * (unless `etcHosts`, hosts are named by IP).
 *
 * Needs root and iproute2; {@linkcode canRunNamespaces} says why not.
 *
 * The tunnel and the probes are here too: {@linkcode startTunnelOn},
 * {@linkcode startWriter}, {@linkcode startSubscriber}, {@linkcode httpGet}.
 * Redis and Sentinel are in `_network_deployment.ts`.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { JsonLines, parseLogLine } from "./_json_lines.ts";
import { tunnelCommand } from "./_tunnel.ts";

/** The script the tunnel runs from: the bundle under `make test`, as in `_tunnel.ts`. */

/** One JSON log line of the tunnel (the same shape as `_tunnel.ts`'s). */
export type LogRecord = Record<string, unknown> & { message?: string; level?: string };

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const PROBES = fileURLToPath(new URL("./probes/", import.meta.url));
const CUT_PREFERENCE = 100;
const LOCAL_PREFERENCE = 1000;
const KILL_WAIT_MS = 5000;
const CHILD_ENV = { RUST_BACKTRACE: "0", NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" };
const decoder = new TextDecoder();

/**
 * Why namespace tests cannot run here (not root, no `ip`), or undefined when
 * they can. Use it with `ignore:` and print the reason.
 */
export function canRunNamespaces(): string | undefined {
  if (Deno.build.os !== "linux") return "needs Linux network namespaces";
  try {
    const uid = new Deno.Command("sh", { args: ["-c", "id -u"], stdout: "piped" }).outputSync();
    if (decoder.decode(uid.stdout).trim() !== "0") return "needs root to create network namespaces";
  } catch (error) {
    return `cannot tell whether this is root: ${errorMessage(error)}`;
  }
  try {
    const { success } = new Deno.Command("ip", {
      args: ["netns", "list"],
      stdout: "null",
      stderr: "null",
    })
      .outputSync();
    if (!success) return "`ip netns list` fails";
  } catch {
    return "needs the ip command (iproute2)";
  }
  return undefined;
}

/** Runs `ip ARGS` in the test process's namespace; throws with its stderr on failure. */
export async function ip(...args: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command("ip", { args, stdout: "null", stderr: "piped" })
    .output();
  if (code !== 0) {
    throw new Error(`Cannot run "ip ${args.join(" ")}": ${decoder.decode(stderr).trim()}`);
  }
}

/** Options for {@linkcode Host.run}. */
export interface RunOptions {
  /** @default {"null"} */
  stdin?: "piped" | "null";
  /** @default {"null"} */
  stdout?: "piped" | "null" | "inherit";
  /** @default {"null"} */
  stderr?: "piped" | "null" | "inherit";
  /** Added to the test's environment (with `RUST_BACKTRACE=0`, `NO_COLOR=1`). @default {{}} */
  env?: Record<string, string>;
  /** @default {the repository root} */
  cwd?: string;
}

/** Options for {@linkcode Host.exec}. */
export interface ExecOptions {
  /** Kills the command (SIGTERM) and rejects with a `TimeoutError` after this long. @default {10000} */
  timeoutMs?: number;
  /** Written to the command's stdin. @default {undefined} */
  stdin?: string;
}

/**
 * A process started inside a host's namespace. Its pid is the program's own
 * (`ip netns exec` execs it). The bed kills it on dispose if it still runs.
 */
export class HostProcess implements AsyncDisposable {
  readonly host: Host;
  readonly command: string;
  readonly pid: number;
  /** The underlying child, for its piped `stdin`, `stdout` and `stderr`. */
  readonly child: Deno.ChildProcess;
  /** Settles when the process has exited and been reaped. */
  readonly status: Promise<Deno.CommandStatus>;
  #exited = false;
  #piped: { stdout: boolean; stderr: boolean; stdin: boolean };

  constructor(host: Host, command: string, child: Deno.ChildProcess, options: RunOptions) {
    this.host = host;
    this.command = command;
    this.child = child;
    this.pid = child.pid;
    this.status = child.status.finally(() => this.#exited = true);
    this.#piped = {
      stdout: options.stdout === "piped",
      stderr: options.stderr === "piped",
      stdin: options.stdin === "piped",
    };
  }

  /** True once the process has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** Sends a signal; does nothing once the process has exited. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    if (this.#exited) return;
    try {
      this.child.kill(signal);
    } catch (error) {
      if (!(error instanceof TypeError || error instanceof Deno.errors.NotFound)) throw error;
    }
  }

  /** Freezes the process (SIGSTOP). */
  freeze(): void {
    this.kill("SIGSTOP");
  }

  /** Thaws the process (SIGCONT). */
  thaw(): void {
    this.kill("SIGCONT");
  }

  /**
   * Sends SIGCONT then SIGKILL, awaits the exit and releases pipes nobody
   * read. Throws when the process outlives `KILL_WAIT_MS`.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.kill("SIGCONT");
    this.kill("SIGKILL");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outlived = await Promise.race([
      this.status.then(() => false, () => false),
      new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), KILL_WAIT_MS)),
    ]);
    clearTimeout(timer);
    await this.#release();
    if (outlived) {
      throw new Error(
        `Process ${this.pid} ("${this.command}" on host "${this.host.name}") outlived SIGKILL for ${KILL_WAIT_MS} ms`,
      );
    }
  }

  /** Cancels pipes nobody took, so the resource sanitizer sees them closed. */
  async #release(): Promise<void> {
    const streams: (ReadableStream<Uint8Array> | WritableStream<Uint8Array>)[] = [];
    if (this.#piped.stdout) streams.push(this.child.stdout);
    if (this.#piped.stderr) streams.push(this.child.stderr);
    if (this.#piped.stdin) streams.push(this.child.stdin);
    for (const stream of streams) {
      if (stream.locked) continue;
      try {
        if (stream instanceof ReadableStream) await stream.cancel();
        else await stream.close();
      } catch { /* already closed */ }
    }
  }
}

/** One host of a {@linkcode TestBed}: a network namespace with one address. */
export class Host {
  /** The name given in `hosts`, such as `"app"`. */
  readonly name: string;
  /** The network namespace, such as `"st-4242-a3f01-app"`. */
  readonly namespace: string;
  /** The host's IPv4 address on the bed's bridge. */
  readonly ip: string;
  #bed: TestBed;

  constructor(bed: TestBed, name: string, namespace: string, ip: string) {
    this.#bed = bed;
    this.name = name;
    this.namespace = namespace;
    this.ip = ip;
  }

  /**
   * Starts `command` inside the host (`ip netns exec NS command ...args`). The
   * bed tracks the process and kills it on dispose; `await using` it to kill
   * it sooner.
   */
  run(command: string, args: readonly string[] = [], options: RunOptions = {}): HostProcess {
    return this.#bed.track(this, command, args, options);
  }

  /**
   * Sets kernel parameters for this host alone (`sysctl -w`), such as
   * `{ "net.ipv4.tcp_keepalive_time": 2 }`: the `net.*` ones that are per
   * namespace (TCP keepalive and retries are) leave every other host as it was.
   * Throws when one cannot be set.
   */
  async sysctl(settings: Record<string, string | number>): Promise<void> {
    const args = Object.entries(settings).map(([key, value]) => `${key}=${value}`);
    if (args.length > 0) await this.exec("sysctl", ["-q", "-w", ...args]);
  }

  /**
   * Runs a short command inside the host and returns its stdout, trimmed.
   * Throws with its stderr when it fails, and a `TimeoutError` when it takes
   * longer than `timeoutMs` (or the bed is disposed meanwhile).
   */
  async exec(
    command: string,
    args: readonly string[] = [],
    options: ExecOptions = {},
  ): Promise<string> {
    const { timeoutMs = 10_000 } = options;
    const signal = AbortSignal.any([AbortSignal.timeout(timeoutMs), this.#bed.signal]);
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", this.namespace, command, ...args],
      cwd: ROOT,
      env: CHILD_ENV,
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
      signal,
    }).spawn();
    if (options.stdin !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(options.stdin)).catch(() => {});
      await writer.close().catch(() => {});
    }
    const output = await child.output();
    const line = `${command} ${args.join(" ")}`.trim();
    if (signal.aborted) {
      throw new DOMException(
        `Timed out running "${line}" on host "${this.name}": no exit within ${timeoutMs} ms`,
        "TimeoutError",
      );
    }
    if (!output.success) {
      const detail = decoder.decode(output.stderr).trim() || decoder.decode(output.stdout).trim() ||
        `exit code ${output.code}`;
      throw new Error(`Cannot run "${line}" on host "${this.name}": ${detail}`);
    }
    return decoder.decode(output.stdout).trim();
  }
}

/** Options for {@linkcode createTestBed}. */
export interface TestBedOptions<H extends string> {
  /** Host names: lower-case letters and digits, at most 10, starting with a letter. */
  hosts: readonly H[];
  /**
   * Also write `/etc/netns/<ns>/hosts` naming every host, so that processes
   * in the bed resolve `"r1"` to r1's address (`ip netns exec` mounts it on
   * `/etc/hosts`). Removed on dispose.
   * @default {false}
   */
  etcHosts?: boolean;
}

/** Options for {@linkcode TestBed.cut}. */
export interface CutOptions {
  /** Only packets from `a` to `b` vanish; those from `b` to `a` still arrive. @default {false} */
  oneWay?: boolean;
}

/** How a connect attempt ended; see {@linkcode tryConnect}. */
export interface ConnectResult {
  /** `"timeout"` is a silent link; `"refused"` is an RST. */
  result: "ok" | "timeout" | "refused" | "error";
  /** Time to the outcome. */
  ms: number;
  error?: string;
}

let beds = 0;
// Test modules run in parallel share the pid; this keeps their namespaces apart.
const MODULE_TAG = crypto.randomUUID().slice(0, 4);
const liveBeds = new Set<TestBed>();

/**
 * Creates one namespace per host plus one for the bridge, wires them and
 * returns the bed. If any step fails, what was made is removed and the error
 * is rethrown.
 */
export async function createTestBed<const H extends string>(
  options: TestBedOptions<H>,
): Promise<TestBed<H>> {
  for (const name of options.hosts) {
    if (!/^[a-z][a-z0-9]{0,9}$/.test(name)) {
      throw new TypeError(`Cannot create a test bed: invalid host name "${name}"`);
    }
  }
  if (new Set(options.hosts).size !== options.hosts.length || options.hosts.length > 250) {
    throw new RangeError(`Cannot create a test bed: hosts must be unique and at most 250`);
  }
  const bed = new TestBed<H>(++beds, options);
  try {
    await bed.setUp();
  } catch (error) {
    await bed[Symbol.asyncDispose]().catch(() => {});
    throw error;
  }
  return bed;
}

/** Hosts joined by a bridge, with cuts. See {@linkcode createTestBed}. */
export class TestBed<H extends string = string> implements AsyncDisposable {
  /** The prefix of every namespace of this bed, such as `"st-4242-a3f01"`. */
  readonly prefix: string;
  /** The namespace that holds the bridge. */
  readonly bridgeNamespace: string;
  /** The hosts by name. */
  readonly hosts: Readonly<Record<H, Host>>;
  /** A scratch directory for configs, data and logs; removed on dispose. */
  readonly dir: string;
  #list: Host[];
  #etcHosts: boolean;
  #created: string[] = [];
  #etcDirs: string[] = [];
  #processes = new Set<HostProcess>();
  #cuts = new Map<string, { from: Host; to: Host }>();
  #abort = new AbortController();
  #disposed: Promise<void> | undefined;

  constructor(number: number, options: TestBedOptions<H>) {
    this.prefix = `st-${Deno.pid}-${MODULE_TAG}${number}`;
    this.bridgeNamespace = `${this.prefix}-br`;
    const subnet = `10.${16 + Deno.pid % 200}.${number % 256}`;
    this.#list = options.hosts.map((name, i) =>
      new Host(this, name, `${this.prefix}-${name}`, `${subnet}.${i + 1}`)
    );
    this.hosts = Object.fromEntries(this.#list.map((host) => [host.name, host])) as Record<H, Host>;
    this.#etcHosts = options.etcHosts ?? false;
    this.dir = Deno.makeTempDirSync({ prefix: `${this.prefix}-` });
    liveBeds.add(this);
  }

  /** Aborted on dispose; {@linkcode Host.exec} uses it. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Every cut in force, as `"a>b"` (packets from a to b vanish). */
  get cuts(): string[] {
    return [...this.#cuts.keys()];
  }

  /** @internal Called once by {@linkcode createTestBed}. */
  async setUp(): Promise<void> {
    const br = this.bridgeNamespace;
    await this.#addNamespace(br);
    await ip("-n", br, "link", "add", "br0", "type", "bridge");
    await ip("-n", br, "link", "set", "br0", "up");
    await Promise.all(this.#list.map(async (host, i) => {
      const ns = host.namespace;
      await this.#addNamespace(ns);
      await ip(
        "-n",
        br,
        "link",
        "add",
        `v${i}`,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns,
      );
      await ip("-n", br, "link", "set", `v${i}`, "master", "br0", "up");
      await ip("-n", ns, "link", "set", "lo", "up");
      await ip("-n", ns, "addr", "add", `${host.ip}/24`, "dev", "eth0");
      await ip("-n", ns, "link", "set", "eth0", "up");
      // Cut rules must come before the local table, or packets to the host's own address skip them.
      await ip("-n", ns, "rule", "add", "pref", `${LOCAL_PREFERENCE}`, "lookup", "local");
      await ip("-n", ns, "rule", "del", "pref", "0", "lookup", "local");
      if (this.#etcHosts) {
        const dir = `/etc/netns/${ns}`;
        await Deno.mkdir(dir, { recursive: true });
        this.#etcDirs.push(dir);
        const lines = ["127.0.0.1 localhost", ...this.#list.map((h) => `${h.ip} ${h.name}`)];
        await Deno.writeTextFile(`${dir}/hosts`, lines.join("\n") + "\n");
      }
    }));
  }

  async #addNamespace(name: string): Promise<void> {
    await ip("netns", "add", name);
    this.#created.push(name);
  }

  /** The host named `name`, or `host` itself. */
  host(host: H | Host): Host {
    if (host instanceof Host) return host;
    const found = this.hosts[host];
    if (found === undefined) throw new TypeError(`Cannot find host "${host}" in the test bed`);
    return found;
  }

  /** @internal Spawns and tracks a process for {@linkcode Host.run}. */
  track(host: Host, command: string, args: readonly string[], options: RunOptions): HostProcess {
    if (this.#disposed !== undefined) {
      throw new Error(`Cannot run "${command}" on host "${host.name}": the test bed is disposed`);
    }
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", host.namespace, command, ...args],
      cwd: options.cwd ?? ROOT,
      env: { ...CHILD_ENV, ...options.env },
      stdin: options.stdin ?? "null",
      stdout: options.stdout ?? "null",
      stderr: options.stderr ?? "null",
    }).spawn();
    const process = new HostProcess(host, command, child, options);
    this.#processes.add(process);
    return process;
  }

  /**
   * Makes packets from `a` to `b` vanish, and from `b` to `a` too unless
   * `oneWay`. Established connections hang as well. Idempotent.
   */
  async cut(a: H | Host, b: H | Host, options: CutOptions = {}): Promise<void> {
    const [from, to] = [this.host(a), this.host(b)];
    if (from === to) throw new RangeError(`Cannot cut host "${from.name}" from itself`);
    await this.#drop(from, to);
    if (!options.oneWay) await this.#drop(to, from);
  }

  /** Cuts `host` from every other host, both ways. */
  async isolate(host: H | Host): Promise<void> {
    const isolated = this.host(host);
    for (const other of this.#list) {
      if (other !== isolated) await this.cut(isolated, other);
    }
  }

  /**
   * Splits the bed in two groups that cannot reach each other (both ways);
   * hosts within a group still can.
   */
  async partition(group: readonly (H | Host)[], other: readonly (H | Host)[]): Promise<void> {
    for (const a of group) {
      for (const b of other) await this.cut(a, b);
    }
  }

  /** Removes every cut. */
  async heal(): Promise<void> {
    for (const [key, { from, to }] of [...this.#cuts]) {
      await ip("-n", to.namespace, ...dropRule("del", from));
      this.#cuts.delete(key);
    }
  }

  async #drop(from: Host, to: Host): Promise<void> {
    const key = `${from.name}>${to.name}`;
    if (this.#cuts.has(key)) return;
    await ip("-n", to.namespace, ...dropRule("add", from));
    this.#cuts.set(key, { from, to });
  }

  /**
   * Kills every process started in the bed (SIGCONT then SIGKILL, awaiting
   * each exit), then any other process found in its namespaces, deletes its
   * namespaces, `/etc/netns` entries and directory. Errors of things already
   * gone are ignored; anything left behind is reported by throwing. Idempotent.
   */
  [Symbol.asyncDispose](): Promise<void> {
    this.#disposed ??= this.#dispose();
    return this.#disposed;
  }

  async #dispose(): Promise<void> {
    const problems: string[] = [];
    this.#abort.abort(new Error("The test bed is disposed"));
    const killed = await Promise.allSettled(
      [...this.#processes].map((p) => p[Symbol.asyncDispose]()),
    );
    for (const outcome of killed) {
      if (outcome.status === "rejected") problems.push(errorMessage(outcome.reason));
    }
    for (const ns of this.#created) {
      const stray = await pidsIn(ns);
      if (stray.length === 0) continue;
      problems.push(`namespace "${ns}" held untracked processes ${stray.join(", ")}`);
      await new Deno.Command("sh", {
        args: ["-c", `kill -KILL ${stray.join(" ")}`],
        stderr: "null",
      })
        .output();
    }
    for (const ns of this.#created.toReversed()) {
      await ip("netns", "delete", ns).catch((error) => {
        if (!/No such file|not found|Invalid netns/i.test(errorMessage(error))) {
          problems.push(errorMessage(error));
        }
      });
    }
    for (const dir of this.#etcDirs) {
      await Deno.remove(dir, { recursive: true }).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) problems.push(errorMessage(error));
      });
    }
    await Deno.remove(this.dir, { recursive: true }).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) problems.push(errorMessage(error));
    });
    const left = (await listNamespaces()).filter((ns) => ns.startsWith(`${this.prefix}-`));
    if (left.length > 0) problems.push(`namespaces left behind: ${left.join(", ")}`);
    liveBeds.delete(this);
    if (problems.length > 0) {
      throw new Error(`Test bed "${this.prefix}" did not clean up: ${problems.join("; ")}`);
    }
  }

  /** @internal Last resort when the test process exits with the bed still up. */
  disposeSync(): void {
    for (const process of this.#processes) {
      process.kill("SIGCONT");
      process.kill("SIGKILL");
    }
    for (const ns of this.#created) {
      new Deno.Command("ip", { args: ["netns", "delete", ns], stdout: "null", stderr: "null" })
        .outputSync();
    }
    for (const dir of this.#etcDirs) {
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch { /* gone */ }
    }
  }
}

globalThis.addEventListener("unload", () => {
  for (const bed of liveBeds) bed.disposeSync();
});

/** `ip rule` arguments that drop every packet from `from` in the receiver's namespace. */
function dropRule(verb: "add" | "del", from: Host): string[] {
  return ["rule", verb, "pref", `${CUT_PREFERENCE}`, "from", `${from.ip}/32`, "blackhole"];
}

/** The network namespaces that `ip netns list` shows. */
export async function listNamespaces(): Promise<string[]> {
  const { stdout } = await new Deno.Command("ip", { args: ["netns", "list"], stdout: "piped" })
    .output();
  return decoder.decode(stdout).split("\n").map((line) => line.split(" ")[0] ?? "").filter(Boolean);
}

async function pidsIn(namespace: string): Promise<string[]> {
  const { stdout } = await new Deno.Command("ip", {
    args: ["netns", "pids", namespace],
    stdout: "piped",
    stderr: "null",
  }).output();
  return decoder.decode(stdout).split(/\s+/).filter(Boolean);
}

/**
 * Tries a TCP connect from inside `from` to `hostname:port` with a deadline
 * (tests/probes/tcp_probe.ts), and says how it ended: a silent link times out,
 * a closed port is refused.
 */
export async function tryConnect(
  from: Host,
  hostname: string,
  port: number,
  options: { timeoutMs?: number } = {},
): Promise<ConnectResult> {
  const { timeoutMs = 1000 } = options;
  const text = await from.exec(
    Deno.execPath(),
    ["run", "--quiet", "-A", `${PROBES}tcp_probe.ts`, hostname, `${port}`, `${timeoutMs}`],
    { timeoutMs: timeoutMs + 15_000 },
  );
  return JSON.parse(text.split("\n").at(-1) ?? "{}") as ConnectResult;
}

/** Options for {@linkcode startTunnelOn}. */
export interface BedTunnelOptions {
  /** More command-line options, such as `["--admin", "127.0.0.1:9121"]`. @default {[]} */
  args?: string[];
  /** @default {{}} */
  env?: Record<string, string>;
  /**
   * Local ports whose "listening on" log line to wait for before returning.
   * @default {[]}
   */
  ports?: number[];
}

/** The tunnel running inside a bed host. */
export interface BedTunnel extends AsyncDisposable {
  readonly process: HostProcess;
  /** The config file; rewrite it and send SIGHUP to reload. */
  readonly configPath: string;
  /** Every JSON log line so far (lines that are not JSON have `level: "RAW"`). */
  readonly logs: LogRecord[];
  /** Waits for a matching log line; throws with the last lines after `timeoutMs` (10 s). */
  waitForLog(match: (record: LogRecord) => boolean, timeoutMs?: number): Promise<LogRecord>;
  /** Sends SIGTERM, waits for the exit (SIGKILL after 10 s) and for the last log lines. */
  stop(): Promise<Deno.CommandStatus>;
}

/**
 * Starts sentinel-tunnel inside `host` (as `_tunnel.ts`'s `startTunnel` does
 * on loopback: the command `tunnelCommand` gives, JSON logs at
 * debug level on stderr) and waits for the "listening on" line of each of
 * `ports`. Its local ports are the host's own `127.0.0.1`: reach them from
 * processes on that host ({@linkcode startWriter}, `host.exec("redis-cli")`).
 */
export async function startTunnelOn(
  host: Host,
  config: unknown,
  options: BedTunnelOptions = {},
): Promise<BedTunnel> {
  const configPath = await Deno.makeTempFile({ prefix: "st-net-config-", suffix: ".json" });
  await Deno.writeTextFile(configPath, JSON.stringify(config, null, 2));
  const command = tunnelCommand([
    "--log-format",
    "json",
    "--log-level",
    "debug",
    ...(options.args ?? []),
    configPath,
  ]);
  const process = host.run(command.program, command.args, {
    stderr: "piped",
    ...(options.env ? { env: options.env } : {}),
  });
  const lines = new JsonLines<LogRecord>(process.child.stderr, parseLogLine);
  let stopped: Promise<Deno.CommandStatus> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      process.kill("SIGTERM");
      const timer = setTimeout(() => process.kill("SIGKILL"), 10_000);
      const status = await process.status;
      clearTimeout(timer);
      await lines.done;
      return status;
    })();
  const tunnel: BedTunnel = {
    process,
    configPath,
    logs: lines.records,
    waitForLog: (match, timeoutMs = 10_000) => lines.waitFor(match, timeoutMs, "tunnel log line"),
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
      await Deno.remove(configPath).catch(() => {});
    },
  };
  try {
    for (const port of options.ports ?? []) {
      await tunnel.waitForLog(
        (r) => /listening on/.test(String(r.message)) && String(r.message).includes(`:${port}`),
        15_000,
      );
    }
  } catch (error) {
    await tunnel[Symbol.asyncDispose]();
    throw error;
  }
  return tunnel;
}

/** What the writer probe reports; `at` and `sent` are `Date.now()` values. */
export type WriterRecord =
  | { type: "connect"; conn: number; node: string; at: number }
  | { type: "write"; conn: number; key: string; node: string; sent: number; at: number }
  | {
    type: "error";
    conn: number;
    phase: "connect" | "identify" | "write";
    node?: string;
    key?: string;
    error: string;
    at: number;
  }
  | { type: "end"; at: number };

/** One write acknowledged (`+OK`) by `node` (`"ip:port"`, as Sentinel names it). */
export type WriteRecord = Extract<WriterRecord, { type: "write" }>;

/** Options for {@linkcode startWriter}. */
export interface WriterOptions {
  /** The port to write to, on the host's 127.0.0.1 (the tunnel's). */
  port: number;
  /** @default {"127.0.0.1"} */
  hostname?: string;
  /** Parallel connections, each writing in a loop. @default {1} */
  connections?: number;
  /** Pause between two writes on a connection. @default {10} */
  intervalMs?: number;
  /** @default {1000} */
  connectTimeoutMs?: number;
  /** A write unanswered this long is an error and ends its connection. @default {1000} */
  replyTimeoutMs?: number;
  /** Pause before reconnecting after an error. @default {100} */
  retryMs?: number;
  /** Key prefix; keys are `prefix:conn:seq`. @default {"w"} */
  prefix?: string;
}

/** The writer probe running on a bed host. */
export interface Writer extends AsyncDisposable {
  readonly process: HostProcess;
  /** Every record so far, in order. */
  readonly records: WriterRecord[];
  /** The acknowledged writes so far. */
  writes(): WriteRecord[];
  /** Waits for a matching record; throws with the last records after `timeoutMs` (10 s). */
  waitFor(match: (record: WriterRecord) => boolean, timeoutMs?: number): Promise<WriterRecord>;
  /** Sends SIGTERM and returns every record, once the output is read to its end. */
  stop(): Promise<WriterRecord[]>;
}

/**
 * Starts tests/probes/writer_probe.ts inside `host`: `connections` loops
 * that each learn which node they reached (`CONFIG GET bind port`, once per
 * connection), then SET unique keys and report each `+OK` with that node.
 * Works with nodes started by `_network_deployment.ts` (one bind address each).
 */
export function startWriter(host: Host, options: WriterOptions): Writer {
  const probe = startProbe<WriterRecord>(host, "writer_probe.ts", options, "writer record");
  return {
    ...probe,
    writes: () => probe.records.filter((r): r is WriteRecord => r.type === "write"),
  };
}

/** A JSON-lines probe running inside a host, as the writer and the subscriber are. */
interface Probe<T> {
  readonly process: HostProcess;
  readonly records: T[];
  waitFor(match: (record: T) => boolean, timeoutMs?: number): Promise<T>;
  stop(): Promise<T[]>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Runs `tests/probes/<script>` inside `host` with `options` (plus `host`, the
 * address it connects to) as its one argument, reading one JSON record per
 * line of its output. Stopping sends SIGTERM (SIGKILL 5 s later) and returns
 * every record once the output is read to its end.
 */
function startProbe<T>(
  host: Host,
  script: string,
  options: { hostname?: string },
  what: string,
): Probe<T> {
  const probeOptions = { ...options, host: options.hostname ?? "127.0.0.1" };
  const process = host.run(
    Deno.execPath(),
    ["run", "--quiet", "-A", `${PROBES}${script}`, JSON.stringify(probeOptions)],
    { stdout: "piped" },
  );
  const lines = new JsonLines<T>(process.child.stdout, (line) => JSON.parse(line) as T);
  let stopped: Promise<T[]> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      process.kill("SIGTERM");
      const timer = setTimeout(() => process.kill("SIGKILL"), 5_000);
      await process.status;
      clearTimeout(timer);
      await lines.done;
      return lines.records;
    })();
  return {
    process,
    records: lines.records,
    waitFor: (match, timeoutMs = 10_000) => lines.waitFor(match, timeoutMs, what),
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
    },
  };
}

/** What {@linkcode httpGet} got. */
export interface HttpReply {
  status: number;
  body: string;
}

/**
 * GETs `url` from inside `host` (a `deno eval` there: the test process cannot
 * reach a host's own `127.0.0.1`, such as the tunnel's `--admin` port).
 */
export async function httpGet(
  host: Host,
  url: string,
  options: { timeoutMs?: number } = {},
): Promise<HttpReply> {
  const { timeoutMs = 5000 } = options;
  const script = `const r = await fetch(${JSON.stringify(url)}, ` +
    `{ signal: AbortSignal.timeout(${timeoutMs}) });` +
    "console.log(JSON.stringify({ status: r.status, body: await r.text() }));";
  const text = await host.exec(Deno.execPath(), ["eval", "--quiet", script], {
    timeoutMs: timeoutMs + 15_000,
  });
  return JSON.parse(text.split("\n").at(-1) ?? "{}") as HttpReply;
}

/** What the subscriber probe reports; `at` is a `Date.now()` value. */
export type SubscriberRecord =
  | { type: "connect"; conn: number; node: string; at: number }
  | { type: "closed"; conn: number; node: string; error?: string; at: number }
  | {
    type: "error";
    conn: number;
    phase: "connect" | "identify" | "subscribe";
    error: string;
    at: number;
  }
  | { type: "end"; at: number };

/** Options for {@linkcode startSubscriber}. */
export interface SubscriberOptions {
  /** The port to connect to, on the host's 127.0.0.1 (the tunnel's). */
  port: number;
  /** @default {"127.0.0.1"} */
  hostname?: string;
  /** Parallel connections. @default {1} */
  connections?: number;
  /** @default {1000} */
  connectTimeoutMs?: number;
  /**
   * For `CONFIG GET` and `SUBSCRIBE`; raise it above `clientWaitMs` to see RESP errors.
   * @default {1000}
   */
  replyTimeoutMs?: number;
  /** Pause before reconnecting. @default {100} */
  retryMs?: number;
  /** @default {"idle"} */
  channel?: string;
}

/** The subscriber probe running on a bed host. */
export interface Subscriber extends AsyncDisposable {
  readonly process: HostProcess;
  /** Every record so far, in order. */
  readonly records: SubscriberRecord[];
  /** Waits for a matching record; throws with the last records after `timeoutMs` (10 s). */
  waitFor(
    match: (record: SubscriberRecord) => boolean,
    timeoutMs?: number,
  ): Promise<SubscriberRecord>;
  /** Sends SIGTERM and returns every record, once the output is read to its end. */
  stop(): Promise<SubscriberRecord[]>;
}

/**
 * Starts tests/probes/subscriber_probe.ts inside `host`: `connections` idle
 * clients (each learns its node, SUBSCRIBEs, then only reads) that report
 * when their connection ends, and reconnect. Idle connections are the ones
 * TCP keepalive can end; a client waiting for a reply is not (see the probe).
 */
export function startSubscriber(host: Host, options: SubscriberOptions): Subscriber {
  return startProbe<SubscriberRecord>(host, "subscriber_probe.ts", options, "subscriber record");
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
