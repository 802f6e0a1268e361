/**
 * Test utility: a throwaway Redis Sentinel deployment made of real
 * `redis-server` processes on 127.0.0.1.
 *
 * ```ts
 * await using deployment = await startDeployment({ replicas: 2 });
 * await using watch = await deployment.watchSwitch();
 * await deployment.forceFailover();
 * const { address } = await watch.next; // one of the replicas
 * ```
 *
 * Every process gets its own free port, config file and log file in a temp
 * directory. Disposing the deployment kills every process it started, waits
 * for them to exit and removes the directory.
 *
 * With `tls`, the deployment is TLS-only: every process listens on `tls-port`
 * alone (`port 0`), talks TLS to its peers (`tls-replication yes`) and asks
 * clients for a certificate (`tls-auth-clients yes`), and every `redis-cli`
 * call passes `--tls --cacert --cert --key`. With `hostnames`, the Sentinels
 * know every process by the name `localhost`, as they do in deployments that
 * announce host names. The two combine.
 *
 * What it does not do: it never talks RESP itself (every command goes through
 * `redis-cli`), it does not use Docker or network namespaces (so it cannot
 * model partitions, only stopped or killed processes), and it does not survive
 * its own process being killed: processes of a test runner killed with SIGKILL
 * are orphaned.
 *
 * Needs `--allow-net=127.0.0.1 --allow-run=redis-server,redis-cli
 * --allow-read --allow-write`.
 *
 * @module
 */

/** Options for {@linkcode startDeployment}. */
export interface DeploymentOptions {
  /**
   * Name under which the Sentinels monitor the master.
   * @default {"mymaster"}
   */
  masterName?: string;
  /**
   * Number of replicas started next to the master.
   * @default {2}
   */
  replicas?: number;
  /**
   * Number of Sentinels. The quorum is a strict majority of them.
   * @default {3}
   */
  sentinels?: number;
  /**
   * Fixed Sentinel ports, one per Sentinel, for a deployment that must match
   * a config file; free ports are picked when omitted.
   * @default {undefined}
   */
  sentinelPorts?: readonly number[];
  /**
   * Sentinel `down-after-milliseconds`.
   * @default {1000}
   */
  downAfterMs?: number;
  /**
   * Sentinel `failover-timeout`. `parallel-syncs` is always 1.
   * @default {10000}
   */
  failoverTimeoutMs?: number;
  /**
   * Password of the data nodes: sets `requirepass` and `masterauth` on every
   * node and `sentinel auth-pass` on every Sentinel.
   * @default {undefined}
   */
  password?: string;
  /**
   * Password of the Sentinels themselves: sets `requirepass` and
   * `sentinel sentinel-pass` on every Sentinel.
   * @default {undefined}
   */
  sentinelPassword?: string;
  /**
   * Directory for config and log files. When given, it must exist and is left
   * in place on dispose; when omitted, a fresh temp directory is created and
   * removed on dispose.
   * @default {Deno.makeTempDir({ prefix: "st-deploy-" })}
   */
  dir?: string;
  /**
   * Makes the deployment TLS-only with these files: see {@linkcode DeploymentTls}.
   * @default {undefined}
   */
  tls?: DeploymentTls | undefined;
  /**
   * Names every process `localhost` instead of 127.0.0.1: the nodes set
   * `replica-announce-ip localhost` and replicate from `localhost`; the
   * Sentinels monitor `localhost`, set `sentinel resolve-hostnames yes`,
   * `sentinel announce-hostnames yes` and `sentinel announce-ip localhost`, so
   * every address they report is `localhost:PORT`.
   * @default {false}
   */
  hostnames?: boolean;
  /**
   * Aborts startup and any later wait of the deployment.
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * The files of a TLS-only deployment (PEM). Every node and Sentinel serves
 * `certFile`, presents it to the peers it connects to, and trusts the CAs of
 * `caFile`; so `certFile` must allow both server and client authentication.
 */
export interface DeploymentTls {
  /** CAs every process trusts (`tls-ca-cert-file`) and `redis-cli` checks servers against. */
  caFile: string;
  /** Certificate every node and Sentinel serves (`tls-cert-file`). */
  certFile: string;
  /** Key of `certFile` (`tls-key-file`). */
  keyFile: string;
  /**
   * Client certificate `redis-cli` presents.
   * @default {certFile}
   */
  clientCertFile?: string;
  /**
   * Key of `clientCertFile`.
   * @default {keyFile}
   */
  clientKeyFile?: string;
}

/** Certificate files for {@linkcode Deployment.setCertificate}. */
export interface CertificateFiles {
  /** Certificate the node serves from now on (`tls-cert-file`). */
  certFile: string;
  /** Its key (`tls-key-file`). */
  keyFile: string;
  /**
   * CAs the node trusts from now on (`tls-ca-cert-file`); unchanged when omitted.
   * @default {undefined}
   */
  caFile?: string;
}

/** Lifecycle of a {@linkcode RedisProcess}. */
export type ProcessState = "running" | "stopped" | "exited";

/** One `redis-server` process, either a data node or a Sentinel. */
export interface RedisProcess extends AsyncDisposable {
  /** `"node"` for a data node, `"sentinel"` for a Sentinel. */
  readonly role: "node" | "sentinel";
  /** TCP port on 127.0.0.1 (the `tls-port` of a TLS process). */
  readonly port: number;
  /** `"127.0.0.1:PORT"`, or `"localhost:PORT"` for a process named by host name. */
  readonly address: string;
  /** Process id. */
  readonly pid: number;
  /** Path of the Redis log file. */
  readonly logFile: string;
  /** Path of the config file (Sentinels rewrite theirs). */
  readonly configFile: string;
  /** `"stopped"` between {@linkcode stop} and {@linkcode cont}, `"exited"` once reaped. */
  readonly state: ProcessState;
  /**
   * Sends a signal. Does nothing if the process has already exited.
   * @default {"SIGKILL"}
   */
  kill(signal?: Deno.Signal): void;
  /** Sends SIGSTOP: the process keeps its port but stops answering. */
  stop(): void;
  /** Sends SIGCONT. */
  cont(): void;
  /** Resolves once the process has exited and been reaped. */
  readonly exited: Promise<Deno.CommandStatus>;
  /** Sends SIGCONT then SIGKILL and waits for the exit. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** What {@linkcode Deployment.watchSwitch} reports. */
export interface SwitchEvent {
  /** The new master, `"127.0.0.1:PORT"` (`"localhost:PORT"` with host names). */
  address: string;
  /** `performance.now()` when the message was read. */
  seenAt: number;
}

/** A subscription to `+switch-master` on every running Sentinel. */
export interface SwitchWatch extends AsyncDisposable {
  /**
   * Resolves with the first `+switch-master` for the deployment's master.
   * Rejects with a `TimeoutError` when the watch's timeout elapses, with the
   * deployment signal's reason when it aborts, or with an `Error` when the
   * watch is disposed first.
   */
  readonly next: Promise<SwitchEvent>;
  /** Kills the `redis-cli` subscribers. Idempotent. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** A running Sentinel deployment. See {@linkcode startDeployment}. */
export interface Deployment extends AsyncDisposable {
  /** Name the Sentinels monitor. */
  readonly masterName: string;
  /** Directory holding config and log files. */
  readonly dir: string;
  /** Data nodes; `nodes[0]` is the initial master. */
  readonly nodes: readonly RedisProcess[];
  /** Sentinels. */
  readonly sentinels: readonly RedisProcess[];
  /**
   * Runs one command with `redis-cli` against a process, authenticating when
   * the process needs a password, and returns its trimmed stdout (raw
   * format). Throws when `redis-cli` fails, the reply is an error, or the
   * command takes more than 10 s.
   */
  cli(target: RedisProcess, ...args: string[]): Promise<string>;
  /**
   * The master address the first responsive Sentinel reports (`"127.0.0.1:PORT"`,
   * `"localhost:PORT"` with host names).
   */
  sentinelMaster(): Promise<string>;
  /**
   * Swaps the certificate a node of a TLS deployment serves, at runtime
   * (`CONFIG SET tls-cert-file ... tls-key-file ...`): new connections get
   * it, open ones keep theirs. It connects with `--insecure`, since the node
   * may serve an untrusted certificate when called. A `caFile` without the
   * CA of the deployment's client certificate locks `cli()` out of the node.
   */
  setCertificate(node: RedisProcess, files: CertificateFiles): Promise<void>;
  /**
   * Waits until every running Sentinel agrees on a running master that
   * reports role master and is not mid-failover, and knows every running
   * replica and every other running Sentinel (none of them flagged down or
   * disconnected), so that a failover can be authorized.
   *
   * It does not wait for a demoted master to follow the new one: after a
   * forced failover Sentinel converts the old master about 10 s later.
   * Stopped and exited processes are not waited for.
   *
   * @param timeoutMs Deadline; throws naming what is still missing.
   * @default {30000}
   */
  waitReady(timeoutMs?: number): Promise<void>;
  /**
   * Subscribes to `+switch-master` on every running Sentinel (through
   * long-lived `redis-cli --csv subscribe` processes) and resolves once all
   * subscriptions are confirmed, so call it BEFORE triggering a failover.
   *
   * @param timeoutMs How long `next` waits before rejecting.
   * @default {60000}
   */
  watchSwitch(timeoutMs?: number): Promise<SwitchWatch>;
  /**
   * Sends `SENTINEL FAILOVER` to the first running Sentinel that accepts it.
   * Retries `NOGOODSLAVE` (replicas not yet known) for up to 10 s.
   */
  forceFailover(): Promise<void>;
  /**
   * Kills every process and subscriber it started (SIGCONT, then SIGKILL),
   * awaits their exit and removes the directory it created. Idempotent.
   */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options for {@linkcode startRedis}. */
export interface StartRedisOptions {
  /**
   * A fixed port; without it, a free one is picked (and another one tried
   * if it is taken in the meantime).
   * @default {undefined}
   */
  port?: number | undefined;
  /**
   * Start a data node or a Sentinel (`redis-server <conf> --sentinel`).
   * @default {"node"}
   */
  role?: "node" | "sentinel";
  /**
   * Extra config lines, appended after the defaults (`port`, `bind`,
   * `logfile`, `dir`, no persistence, `protected-mode no`). A Sentinel needs
   * at least a `sentinel monitor` line.
   * @default {[]}
   */
  config?: readonly string[];
  /**
   * How long to wait for the port to accept connections.
   * @default {10000}
   */
  timeoutMs?: number;
  /**
   * Aborts the wait (the process is then killed).
   * @default {undefined}
   */
  signal?: AbortSignal | undefined;
  /**
   * Listen on `tls-port` only (`port 0`) with these files, talk TLS to peers
   * (`tls-replication yes`) and require client certificates
   * (`tls-auth-clients yes`).
   * @default {undefined}
   */
  tls?: DeploymentTls | undefined;
  /**
   * The name the process is known by, in its `address`.
   * @default {"127.0.0.1"}
   */
  host?: string | undefined;
}

const HOST = "127.0.0.1";
const POLL_MS = 50;
const CLI_TIMEOUT_MS = 10_000;
const PROBE_TIMEOUT_MS = 2_000;
const BIND_ATTEMPTS = 3;
const LOG_TAIL_LINES = 20;
const STDERR_TAIL_BYTES = 4096;

const handedOutPorts = new Set<number>();

/**
 * Returns a TCP port on 127.0.0.1 that was free a moment ago and that this
 * process has not handed out before.
 */
export function freePort(): number {
  for (let attempt = 0; attempt < 100; attempt++) {
    using listener = Deno.listen({ hostname: HOST, port: 0 });
    const { port } = listener.addr;
    if (!handedOutPorts.has(port)) {
      handedOutPorts.add(port);
      return port;
    }
  }
  throw new Error("Cannot find a free port: 100 candidates already handed out");
}

/**
 * Polls 127.0.0.1:`port` every 50 ms until it accepts a TCP connection.
 *
 * @param timeoutMs Deadline; rejects with a `TimeoutError` `DOMException`.
 * @default {10000}
 */
export async function waitForPort(
  port: number,
  timeoutMs = 10_000,
  options: { signal?: AbortSignal } = {},
): Promise<void> {
  const signal = deadline(timeoutMs, options.signal);
  while (true) {
    if (await canConnect(port)) return;
    await sleep(POLL_MS, signal);
  }
}

/**
 * Writes a config file into `dir` and spawns `redis-server` on a free port,
 * then waits until the port accepts connections. Retries with another port
 * when the chosen one was taken in the meantime. On failure the process is
 * killed and the error carries the tail of its log.
 */
export async function startRedis(
  dir: string,
  options: StartRedisOptions = {},
): Promise<RedisProcess> {
  const { role = "node", config = [], timeoutMs = 10_000 } = options;
  const signal = deadline(timeoutMs, options.signal);
  for (let attempt = 1;; attempt++) {
    const port = options.port ?? freePort();
    const logFile = `${dir}/${role}-${port}.log`;
    const configFile = `${dir}/${role}-${port}.conf`;
    const lines = [
      ...(options.tls === undefined ? [`port ${port}`] : [
        "port 0",
        `tls-port ${port}`,
        `tls-cert-file ${quote(options.tls.certFile)}`,
        `tls-key-file ${quote(options.tls.keyFile)}`,
        `tls-ca-cert-file ${quote(options.tls.caFile)}`,
        "tls-replication yes",
        "tls-auth-clients yes",
      ]),
      // ::1 too where the machine has it ("-" makes it optional), for the IPv6 tests.
      `bind ${HOST} -::1`,
      "daemonize no",
      "protected-mode no",
      `dir ${quote(dir)}`,
      `logfile ${quote(logFile)}`,
      ...(role === "node"
        ? [
          'save ""',
          "appendonly no",
          `dbfilename ${quote(`dump-${port}.rdb`)}`,
          // Diskless sync waits 5 s by default for more replicas to join.
          "repl-diskless-sync yes",
          "repl-diskless-sync-delay 0",
        ]
        : []),
      ...config,
    ];
    await Deno.writeTextFile(configFile, lines.join("\n") + "\n");
    const args = role === "sentinel" ? [configFile, "--sentinel"] : [configFile];
    const child = new Deno.Command("redis-server", {
      args,
      stdin: "null",
      stdout: "null",
      // Config errors are printed here before the log file is opened.
      stderr: "piped",
    }).spawn();
    const process = new RedisServerProcess(
      role,
      options.host ?? HOST,
      port,
      logFile,
      configFile,
      child,
    );
    try {
      await waitForListening(process, signal);
      return process;
    } catch (error) {
      await process[Symbol.asyncDispose]();
      const diagnostics = await process.diagnostics();
      if (
        options.port === undefined && attempt < BIND_ATTEMPTS && !signal.aborted &&
        diagnostics.includes("Address already in use")
      ) {
        continue;
      }
      throw new Error(
        `Cannot start Redis ${role} "${process.address}": ${errorMessage(error)}\n${diagnostics}`,
        { cause: error },
      );
    }
  }
}

/**
 * Starts a master, its replicas and the Sentinels monitoring it, and waits
 * until the Sentinels could authorize a failover. If any step fails, every
 * process started so far is killed and the error carries the tail of the
 * failing process's log.
 */
export async function startDeployment(
  options: DeploymentOptions = {},
): Promise<Deployment> {
  const replicas = options.replicas ?? 2;
  const sentinels = options.sentinels ?? options.sentinelPorts?.length ?? 3;
  if (!Number.isSafeInteger(replicas) || replicas < 0) {
    throw new RangeError(
      `Invalid replica count "${replicas}": must be a non-negative integer`,
    );
  }
  if (!Number.isSafeInteger(sentinels) || sentinels < 1) {
    throw new RangeError(
      `Invalid Sentinel count "${sentinels}": must be a positive integer`,
    );
  }
  const ownsDir = options.dir === undefined;
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "st-deploy-" });
  const deployment = new SentinelDeployment(
    {
      masterName: options.masterName ?? "mymaster",
      replicas,
      sentinels,
      downAfterMs: options.downAfterMs ?? 1000,
      failoverTimeoutMs: options.failoverTimeoutMs ?? 10_000,
      password: options.password,
      sentinelPassword: options.sentinelPassword,
      sentinelPorts: options.sentinelPorts,
      tls: options.tls,
      host: options.hostnames ? "localhost" : HOST,
      signal: options.signal,
    },
    dir,
    ownsDir,
  );
  try {
    await deployment.start();
  } catch (error) {
    await deployment[Symbol.asyncDispose]();
    throw error;
  }
  return deployment;
}

interface Settings {
  masterName: string;
  replicas: number;
  sentinels: number;
  downAfterMs: number;
  failoverTimeoutMs: number;
  password: string | undefined;
  sentinelPassword: string | undefined;
  sentinelPorts: readonly number[] | undefined;
  tls: DeploymentTls | undefined;
  host: string;
  signal: AbortSignal | undefined;
}

class RedisServerProcess implements RedisProcess {
  readonly role: "node" | "sentinel";
  readonly port: number;
  readonly address: string;
  readonly pid: number;
  readonly logFile: string;
  readonly configFile: string;
  readonly exited: Promise<Deno.CommandStatus>;
  #child: Deno.ChildProcess;
  #state: ProcessState = "running";
  #stderrTail: Promise<string>;

  constructor(
    role: "node" | "sentinel",
    host: string,
    port: number,
    logFile: string,
    configFile: string,
    child: Deno.ChildProcess,
  ) {
    this.role = role;
    this.port = port;
    this.address = `${host}:${port}`;
    this.pid = child.pid;
    this.logFile = logFile;
    this.configFile = configFile;
    this.#child = child;
    this.exited = child.status.then((status) => {
      this.#state = "exited";
      return status;
    });
    this.#stderrTail = drainTail(child.stderr);
  }

  get state(): ProcessState {
    return this.#state;
  }

  kill(signal: Deno.Signal = "SIGKILL"): void {
    if (this.#state === "exited") return;
    try {
      this.#child.kill(signal);
    } catch (error) {
      // Exited but not reaped yet, or reaped since the state check.
      if (
        error instanceof Deno.errors.NotFound ||
        (error instanceof TypeError && /already terminated/.test(error.message))
      ) {
        return;
      }
      throw error;
    }
    if (signal === "SIGSTOP") this.#state = "stopped";
    if (signal === "SIGCONT") this.#state = "running";
  }

  stop(): void {
    this.kill("SIGSTOP");
  }

  cont(): void {
    this.kill("SIGCONT");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.cont();
    this.kill("SIGKILL");
    await this.exited;
    await this.#stderrTail;
  }

  /** Exit status (if exited), stderr and the tail of the log, for error messages. */
  async diagnostics(): Promise<string> {
    const parts: string[] = [];
    if (this.#state === "exited") {
      const status = await this.exited;
      parts.push(
        `Process ${this.pid} exited with code ${status.code}${
          status.signal ? ` (${status.signal})` : ""
        }`,
      );
    }
    const stderr = (await this.#stderrTail).trim();
    if (stderr) parts.push(`stderr:\n${stderr}`);
    parts.push(
      `Last lines of ${this.logFile}:\n${await readTail(this.logFile)}`,
    );
    return parts.join("\n");
  }
}

class SentinelDeployment implements Deployment {
  readonly masterName: string;
  readonly dir: string;
  readonly nodes: RedisProcess[] = [];
  readonly sentinels: RedisProcess[] = [];
  #settings: Settings;
  #ownsDir: boolean;
  #watches = new Set<SwitchWatcher>();
  #disposed: Promise<void> | undefined;

  constructor(settings: Settings, dir: string, ownsDir: boolean) {
    this.masterName = settings.masterName;
    this.dir = dir;
    this.#settings = settings;
    this.#ownsDir = ownsDir;
  }

  async start(): Promise<void> {
    const { password, sentinelPassword, signal, tls, host } = this.#settings;
    const named = host !== HOST;
    const auth = password === undefined
      ? []
      : [`requirepass ${quote(password)}`, `masterauth ${quote(password)}`];
    const nodeConfig = [...auth, ...(named ? [`replica-announce-ip ${host}`] : [])];

    const master = await startRedis(this.dir, {
      config: nodeConfig,
      tls,
      host,
      signal,
    });
    this.nodes.push(master);

    const replicas = await this.#startAll(
      this.#settings.replicas,
      {
        config: [...nodeConfig, `replicaof ${host} ${master.port}`],
        tls,
        host,
        signal,
      },
      this.nodes,
    );
    await Promise.all(replicas.map((replica) => this.#waitLinkUp(replica)));

    const { sentinels, masterName } = this.#settings;
    const name = quote(masterName);
    const quorum = Math.floor(sentinels / 2) + 1;
    await this.#startAll(sentinels, {
      role: "sentinel",
      tls,
      host,
      config: [
        ...(named
          ? [
            "sentinel resolve-hostnames yes",
            "sentinel announce-hostnames yes",
            `sentinel announce-ip ${host}`,
          ]
          : ["sentinel resolve-hostnames no"]),
        `sentinel monitor ${name} ${host} ${master.port} ${quorum}`,
        `sentinel down-after-milliseconds ${name} ${this.#settings.downAfterMs}`,
        `sentinel failover-timeout ${name} ${this.#settings.failoverTimeoutMs}`,
        `sentinel parallel-syncs ${name} 1`,
        ...(password === undefined ? [] : [`sentinel auth-pass ${name} ${quote(password)}`]),
        ...(sentinelPassword === undefined ? [] : [
          `requirepass ${quote(sentinelPassword)}`,
          `sentinel sentinel-pass ${quote(sentinelPassword)}`,
        ]),
      ],
      signal,
    }, this.sentinels);

    try {
      await this.waitReady();
    } catch (error) {
      const logs = await Promise.all(
        this.sentinels.map(async (sentinel) =>
          `Last lines of ${sentinel.logFile}:\n${await readTail(
            sentinel.logFile,
            8,
          )}`
        ),
      );
      throw new Error(
        `Cannot start deployment "${this.masterName}": ${errorMessage(error)}\n${logs.join("\n")}`,
        { cause: error },
      );
    }
  }

  /** Starts `count` processes in parallel, tracking every one that started. */
  async #startAll(
    count: number,
    options: StartRedisOptions,
    into: RedisProcess[],
  ): Promise<RedisProcess[]> {
    const ports = options.role === "sentinel" ? this.#settings.sentinelPorts : undefined;
    const results = await Promise.allSettled(
      Array.from(
        { length: count },
        (_, i) => startRedis(this.dir, { ...options, port: ports?.[i] }),
      ),
    );
    const started: RedisProcess[] = [];
    for (const result of results) {
      if (result.status === "fulfilled") started.push(result.value);
    }
    into.push(...started);
    for (const result of results) {
      if (result.status === "rejected") throw result.reason;
    }
    return started;
  }

  async #waitLinkUp(replica: RedisProcess): Promise<void> {
    const signal = deadline(15_000, this.#settings.signal);
    try {
      while (true) {
        const info = parseInfo(
          await this.#run(replica, ["INFO", "replication"], PROBE_TIMEOUT_MS),
        );
        if (info.get("master_link_status") === "up") return;
        await sleep(POLL_MS, signal);
      }
    } catch (error) {
      const process = replica as RedisServerProcess;
      throw new Error(
        `Cannot start Redis node "${replica.address}": replication link did not come up: ${
          errorMessage(error)
        }\n${await process.diagnostics()}`,
        { cause: error },
      );
    }
  }

  cli(target: RedisProcess, ...args: string[]): Promise<string> {
    return this.#run(target, args, CLI_TIMEOUT_MS);
  }

  async #run(
    target: RedisProcess,
    args: readonly string[],
    timeoutMs: number,
    format: readonly string[] = [],
  ): Promise<string> {
    const password = target.role === "sentinel"
      ? this.#settings.sentinelPassword
      : this.#settings.password;
    const signal = deadline(timeoutMs, this.#settings.signal);
    const output = await new Deno.Command("redis-cli", {
      args: [...cliConnection(target, this.#settings.tls), "-e", ...format, ...args],
      // REDISCLI_AUTH keeps the password off the command line and avoids the
      // warning that `-a` prints.
      env: password === undefined ? {} : { REDISCLI_AUTH: password },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal,
    }).output();
    const decoder = new TextDecoder();
    if (output.success) return decoder.decode(output.stdout).trim();
    const command = `redis-cli ${args.join(" ")}`;
    if (signal.aborted) {
      throw new DOMException(
        `Timed out running "${command}" against ${target.role} "${target.address}": no reply within ${timeoutMs} ms`,
        "TimeoutError",
      );
    }
    const detail = decoder.decode(output.stderr).trim() ||
      `exit code ${output.code}`;
    throw new Error(
      `Cannot run "${command}" against ${target.role} "${target.address}": ${detail}`,
    );
  }

  async #json(
    target: RedisProcess,
    args: readonly string[],
  ): Promise<unknown> {
    const text = await this.#run(target, args, PROBE_TIMEOUT_MS, [
      "-2",
      "--json",
    ]);
    return JSON.parse(text);
  }

  async setCertificate(node: RedisProcess, files: CertificateFiles): Promise<void> {
    if (this.#settings.tls === undefined) {
      throw new TypeError(
        `Cannot set the certificate of node "${node.address}": the deployment is not TLS`,
      );
    }
    await this.#run(
      node,
      [
        "CONFIG",
        "SET",
        "tls-cert-file",
        files.certFile,
        "tls-key-file",
        files.keyFile,
        ...(files.caFile === undefined ? [] : ["tls-ca-cert-file", files.caFile]),
      ],
      CLI_TIMEOUT_MS,
      ["--insecure"],
    );
  }

  #running(processes: readonly RedisProcess[]): RedisProcess[] {
    return processes.filter((process) => process.state === "running");
  }

  async sentinelMaster(): Promise<string> {
    const errors: string[] = [];
    for (const sentinel of this.#running(this.sentinels)) {
      try {
        return await this.#masterOf(sentinel);
      } catch (error) {
        errors.push(errorMessage(error));
      }
    }
    throw new Error(
      `No Sentinel reported the master of "${this.masterName}": ${
        errors.join("; ") || "no Sentinel is running"
      }`,
    );
  }

  async #masterOf(sentinel: RedisProcess): Promise<string> {
    const reply = await this.#run(
      sentinel,
      ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", this.masterName],
      PROBE_TIMEOUT_MS,
    );
    const [host, port] = reply.split(/\r?\n/);
    if (!host || !port) {
      throw new Error(
        `Sentinel "${sentinel.address}" does not know "${this.masterName}": got "${reply}"`,
      );
    }
    return `${host}:${port}`;
  }

  async waitReady(timeoutMs = 30_000): Promise<void> {
    const signal = deadline(timeoutMs, this.#settings.signal);
    let problems: string[] = [];
    try {
      while (true) {
        problems = await this.#readinessProblems();
        if (problems.length === 0) return;
        await sleep(POLL_MS, signal);
      }
    } catch (error) {
      if (!signal.aborted) throw error;
      throw new DOMException(
        `Deployment "${this.masterName}" not ready after ${timeoutMs} ms: ${
          problems.join("; ") || errorMessage(error)
        }`,
        "TimeoutError",
      );
    }
  }

  /** Everything that keeps the deployment from being ready; empty when ready. */
  async #readinessProblems(): Promise<string[]> {
    const sentinels = this.#running(this.sentinels);
    if (sentinels.length === 0) return ["no Sentinel is running"];
    const nodes = this.#running(this.nodes);
    const views = await Promise.all(
      sentinels.map((sentinel) => this.#sentinelProblems(sentinel, nodes)),
    );
    const problems = views.flatMap((view) => view.problems);
    const masters = new Set(views.map((view) => view.master));
    if (masters.size > 1) {
      problems.push(
        `Sentinels disagree on the master: ${[...masters].join(", ")}`,
      );
    }
    const [master] = masters;
    if (problems.length > 0 || master === undefined) return problems;
    const node = nodes.find((node) => node.address === master);
    if (node === undefined) return problems;
    try {
      const info = parseInfo(
        await this.#run(node, ["INFO", "replication"], PROBE_TIMEOUT_MS),
      );
      const role = info.get("role");
      if (role !== "master") {
        problems.push(`master "${master}" reports role "${role}"`);
      }
    } catch (error) {
      problems.push(`master "${master}": ${errorMessage(error)}`);
    }
    return problems;
  }

  async #sentinelProblems(
    sentinel: RedisProcess,
    nodes: readonly RedisProcess[],
  ): Promise<{ master: string | undefined; problems: string[] }> {
    const name = this.masterName;
    const who = `Sentinel "${sentinel.address}"`;
    let masterInfo: Map<string, string>;
    let replicas: Map<string, string>[];
    let peers: Map<string, string>[];
    try {
      [masterInfo, replicas, peers] = await Promise.all([
        this.#json(sentinel, ["SENTINEL", "MASTER", name]).then(toPairs),
        this.#json(sentinel, ["SENTINEL", "REPLICAS", name]).then(toPairList),
        this.#json(sentinel, ["SENTINEL", "SENTINELS", name]).then(toPairList),
      ]);
    } catch (error) {
      return {
        master: undefined,
        problems: [`${who}: ${errorMessage(error)}`],
      };
    }
    const problems: string[] = [];
    const master = `${masterInfo.get("ip")}:${masterInfo.get("port")}`;
    const masterFlags = masterInfo.get("flags") ?? "";
    if (masterFlags !== "master") {
      problems.push(`${who} flags master "${master}" as "${masterFlags}"`);
    }
    if (!nodes.some((node) => node.address === master)) {
      problems.push(`${who} reports master "${master}", which is not running`);
    }
    const known = (entries: Map<string, string>[], address: string) =>
      entries.find((entry) => `${entry.get("ip")}:${entry.get("port")}` === address);
    for (const node of nodes) {
      if (node.address === master) continue;
      const entry = known(replicas, node.address);
      const flags = entry?.get("flags") ?? "";
      if (!entry) {
        problems.push(`${who} does not know replica "${node.address}"`);
      } else if (/s_down|disconnected/.test(flags)) {
        problems.push(`${who} flags replica "${node.address}" as "${flags}"`);
      }
    }
    for (const peer of this.#running(this.sentinels)) {
      if (peer === sentinel) continue;
      const entry = known(peers, peer.address);
      const flags = entry?.get("flags") ?? "";
      if (!entry) {
        problems.push(`${who} does not know Sentinel "${peer.address}"`);
      } else if (/s_down|disconnected/.test(flags)) {
        problems.push(`${who} flags Sentinel "${peer.address}" as "${flags}"`);
      }
    }
    return { master, problems };
  }

  async watchSwitch(timeoutMs = 60_000): Promise<SwitchWatch> {
    const sentinels = this.#running(this.sentinels);
    if (sentinels.length === 0) {
      throw new Error(
        `Cannot watch "${this.masterName}" for +switch-master: no Sentinel is running`,
      );
    }
    const watch = new SwitchWatcher(
      this.masterName,
      timeoutMs,
      this.#settings.tls,
      this.#settings.sentinelPassword,
      this.#settings.signal,
      () => this.#watches.delete(watch),
    );
    this.#watches.add(watch);
    try {
      await watch.subscribe(sentinels, deadline(10_000, this.#settings.signal));
    } catch (error) {
      await watch[Symbol.asyncDispose]();
      throw error;
    }
    return watch;
  }

  async forceFailover(): Promise<void> {
    const signal = deadline(10_000, this.#settings.signal);
    const command = ["SENTINEL", "FAILOVER", this.masterName];
    let errors: string[] = [];
    try {
      while (true) {
        errors = [];
        for (const sentinel of this.#running(this.sentinels)) {
          try {
            await this.#run(sentinel, command, PROBE_TIMEOUT_MS);
            return;
          } catch (error) {
            const message = errorMessage(error);
            // A failover already under way will not become possible by retrying.
            if (message.includes("INPROG")) throw error;
            errors.push(message);
          }
        }
        await sleep(POLL_MS * 4, signal);
      }
    } catch (error) {
      if (!signal.aborted) throw error;
      throw new Error(
        `Cannot force a failover of "${this.masterName}": ${
          errors.join("; ") || "no Sentinel is running"
        }`,
        { cause: error },
      );
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#disposed ??= this.#dispose();
    return this.#disposed;
  }

  async #dispose(): Promise<void> {
    await Promise.all(
      [...this.#watches].map((watch) => watch[Symbol.asyncDispose]()),
    );
    const processes = [...this.sentinels, ...this.nodes];
    await Promise.all(
      processes.map((process) => process[Symbol.asyncDispose]()),
    );
    if (this.#ownsDir) {
      try {
        await Deno.remove(this.dir, { recursive: true });
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
  }
}

/** `redis-cli --csv subscribe +switch-master` on each Sentinel; the first message wins. */
class SwitchWatcher implements SwitchWatch {
  readonly next: Promise<SwitchEvent>;
  #masterName: string;
  #tls: DeploymentTls | undefined;
  #password: string | undefined;
  #onDispose: () => void;
  #resolve!: (event: SwitchEvent) => void;
  #reject!: (reason: unknown) => void;
  #settled = false;
  #timer: ReturnType<typeof setTimeout>;
  #signal: AbortSignal | undefined;
  #onAbort: (() => void) | undefined;
  #children: Deno.ChildProcess[] = [];
  #readers: Promise<void>[] = [];
  #disposed: Promise<void> | undefined;

  constructor(
    masterName: string,
    timeoutMs: number,
    tls: DeploymentTls | undefined,
    password: string | undefined,
    signal: AbortSignal | undefined,
    onDispose: () => void,
  ) {
    this.#masterName = masterName;
    this.#tls = tls;
    this.#password = password;
    this.#onDispose = onDispose;
    this.next = new Promise<SwitchEvent>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // A caller that never awaits `next` must not crash the test runner.
    this.next.catch(() => {});
    this.#timer = setTimeout(() => {
      this.#settle(
        new DOMException(
          `No +switch-master for "${masterName}" within ${timeoutMs} ms`,
          "TimeoutError",
        ),
      );
    }, timeoutMs);
    if (signal !== undefined) {
      this.#signal = signal;
      this.#onAbort = () => this.#settle(toError(signal.reason));
      if (signal.aborted) this.#onAbort();
      else signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /** Starts one subscriber per Sentinel and waits until each confirms. */
  async subscribe(
    sentinels: readonly RedisProcess[],
    signal: AbortSignal,
  ): Promise<void> {
    const confirmations = sentinels.map((sentinel) => {
      const child = new Deno.Command("redis-cli", {
        args: [
          ...cliConnection(sentinel, this.#tls),
          "--csv",
          "subscribe",
          "+switch-master",
        ],
        env: this.#password === undefined ? {} : { REDISCLI_AUTH: this.#password },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      this.#children.push(child);
      const stderr = drainTail(child.stderr);
      this.#readers.push(stderr.then(() => {}));
      let confirm!: () => void;
      const confirmed = new Promise<void>((resolve) => (confirm = resolve));
      const reader = this.#read(child.stdout, confirm);
      this.#readers.push(reader);
      const ended = reader.then(async () => {
        await child.status;
        throw new Error(
          `Cannot subscribe to +switch-master on Sentinel "${sentinel.address}": redis-cli exited: ${
            (await stderr).trim() || "no output"
          }`,
        );
      });
      return Promise.race([confirmed, ended]);
    });
    await abortable(Promise.all(confirmations), signal);
  }

  async #read(
    stream: ReadableStream<Uint8Array>,
    confirm: () => void,
  ): Promise<void> {
    try {
      for await (const line of readLines(stream)) {
        if (line.startsWith('"subscribe","+switch-master"')) confirm();
        const match = /^"message","\+switch-master","([^"]*)"$/.exec(line);
        if (!match?.[1]) continue;
        const seenAt = performance.now();
        // "<name> <old-ip> <old-port> <new-ip> <new-port>"
        const [name, , , host, port] = match[1].split(" ");
        if (name === this.#masterName && host && port) {
          this.#settle({ address: `${host}:${port}`, seenAt });
        }
      }
    } catch {
      // The pipe breaks when the subscriber is killed; that ends the watch.
    }
  }

  #settle(outcome: SwitchEvent | Error): void {
    if (this.#settled) return;
    this.#settled = true;
    clearTimeout(this.#timer);
    if (this.#onAbort) {
      this.#signal?.removeEventListener("abort", this.#onAbort);
    }
    if (outcome instanceof Error) this.#reject(outcome);
    else this.#resolve(outcome);
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#disposed ??= this.#dispose();
    return this.#disposed;
  }

  async #dispose(): Promise<void> {
    this.#settle(
      new Error(
        `Watch for +switch-master on "${this.#masterName}" disposed before any switch`,
      ),
    );
    for (const child of this.#children) {
      try {
        child.kill("SIGKILL");
      } catch (error) {
        if (
          !(error instanceof TypeError || error instanceof Deno.errors.NotFound)
        ) {
          throw error;
        }
      }
    }
    await Promise.all(this.#children.map((child) => child.status));
    await Promise.all(this.#readers);
    this.#onDispose();
  }
}

/** The `redis-cli` options that reach `target`, over TLS in a TLS deployment. */
function cliConnection(target: RedisProcess, tls: DeploymentTls | undefined): string[] {
  const address = ["-h", HOST, "-p", String(target.port)];
  if (tls === undefined) return address;
  return [
    ...address,
    "--tls",
    "--cacert",
    tls.caFile,
    "--cert",
    tls.clientCertFile ?? tls.certFile,
    "--key",
    tls.clientKeyFile ?? tls.keyFile,
  ];
}

/** Polls until `process` accepts connections; fails fast if it exits. */
async function waitForListening(
  process: RedisProcess,
  signal: AbortSignal,
): Promise<void> {
  const exited = () => process.state === "exited";
  while (true) {
    if (exited()) throw new Error("process exited before listening");
    // The port could belong to someone else if our process died binding it.
    if (await canConnect(process.port) && !exited()) return;
    try {
      await sleep(POLL_MS, signal);
    } catch (error) {
      throw new Error(`port ${process.port} not listening in time`, {
        cause: error,
      });
    }
  }
}

/** Whether something accepts connections on `port` of 127.0.0.1 right now. */
export async function canConnect(port: number): Promise<boolean> {
  try {
    using _conn = await Deno.connect({ hostname: HOST, port });
    return true;
  } catch (error) {
    if (
      error instanceof Deno.errors.ConnectionRefused ||
      error instanceof Deno.errors.ConnectionReset
    ) {
      return false;
    }
    throw error;
  }
}

/** `AbortSignal.timeout(ms)`, also aborted by `signal`. */
function deadline(ms: number, signal: AbortSignal | undefined): AbortSignal {
  const timeout = AbortSignal.timeout(ms);
  return signal === undefined ? timeout : AbortSignal.any([timeout, signal]);
}

/** Resolves after `ms`, or rejects with the signal's reason. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return abortable(
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener("abort", () => clearTimeout(timer), {
        once: true,
      });
    }),
    signal,
  );
}

/** Races `promise` against `signal`, removing the listener afterwards. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  let onAbort!: () => void;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([promise, aborted]).finally(() =>
    signal.removeEventListener("abort", onAbort)
  );
}

async function* readLines(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<string> {
  let buffer = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    let newline: number;
    while ((newline = buffer.indexOf("\n")) !== -1) {
      yield buffer.slice(0, newline).replace(/\r$/, "");
      buffer = buffer.slice(newline + 1);
    }
  }
  if (buffer) yield buffer;
}

/** Reads a stream to its end, keeping the last few KiB as text. */
async function drainTail(stream: ReadableStream<Uint8Array>): Promise<string> {
  let tail = "";
  try {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      tail = (tail + chunk).slice(-STDERR_TAIL_BYTES);
    }
  } catch {
    // A broken pipe only means the process is gone.
  }
  return tail;
}

async function readTail(path: string, lines = LOG_TAIL_LINES): Promise<string> {
  try {
    const text = await Deno.readTextFile(path);
    return text.trimEnd().split("\n").slice(-lines).join("\n") || "(empty)";
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "(no log file)";
    throw error;
  }
}

/** Parses `INFO` output (`key:value` lines). */
function parseInfo(text: string): Map<string, string> {
  const info = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon > 0 && !line.startsWith("#")) {
      info.set(line.slice(0, colon), line.slice(colon + 1));
    }
  }
  return info;
}

/** `["k1","v1","k2","v2"]` (a RESP2 map) to a Map. */
function toPairs(value: unknown): Map<string, string> {
  const pairs = new Map<string, string>();
  if (!Array.isArray(value)) return pairs;
  for (let i = 0; i + 1 < value.length; i += 2) {
    const [key, item] = [value[i], value[i + 1]];
    if (typeof key === "string") pairs.set(key, String(item));
  }
  return pairs;
}

function toPairList(value: unknown): Map<string, string>[] {
  return Array.isArray(value) ? value.map(toPairs) : [];
}

/** Quotes a config value the way `redis.conf` parses it. */
function quote(value: string): string {
  return `"${value.replace(/[\\"]/g, "\\$&")}"`;
}

function toError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
