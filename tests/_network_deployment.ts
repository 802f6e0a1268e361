/**
 * Redis nodes and Sentinels on the hosts of a test bed (`_network.ts`): one
 * node and one Sentinel per host, each bound to the host's address only, so
 * that `ip:port` is what Sentinel names and what the writer probe reports.
 *
 * ```ts
 * await using bed = await createTestBed({ hosts: ["app", "r1", "r2", "r3"] });
 * const { r1, r2, r3 } = bed.hosts;
 * await using deployment = await startNetworkDeployment({ hosts: [r1, r2, r3] });
 * await deployment.waitReady();
 * await using watch = await deployment.watchSwitch();
 * await bed.isolate(r1);
 * const { address, seenAt } = await watch.next;
 * ```
 *
 * To cut Sentinels apart from the nodes they watch (a tunnel host that loses
 * every Sentinel but not the master; a partition with the old master on one
 * side and every Sentinel on the other), give them hosts of their own:
 * `startNetworkDeployment({ hosts: [r1, r2, r3], sentinelHosts: [s1, s2, s3], ... })`.
 *
 * Every process is a bed process (the bed kills it too), and every
 * `redis-cli` runs in the namespace of the process it asks, so a cut never
 * hides a process from the test.
 *
 * @module
 */
import type { Host, HostProcess } from "./_network.ts";

const POLL_MS = 100;
const PROBE_TIMEOUT_MS = 2_000;

/** A `redis-server` (node or Sentinel) running on a bed host. */
export interface BedRedis extends AsyncDisposable {
  readonly role: "node" | "sentinel";
  readonly host: Host;
  readonly port: number;
  /** `"ip:port"`, as Sentinel names it. */
  readonly address: string;
  readonly logFile: string;
  readonly process: HostProcess;
  /** Runs `redis-cli -h ip -p port ARGS` in the host's namespace; its stdout, trimmed. */
  cli(...args: string[]): Promise<string>;
  /** The last lines of its log file. */
  logTail(lines?: number): Promise<string>;
  /** Kills it (SIGCONT, SIGKILL) and awaits the exit. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options for {@linkcode startRedisNode}. */
export interface RedisNodeOptions {
  /** @default {6379} */
  port?: number;
  /** The master's `"ip:port"`, to start as its replica. @default {undefined} */
  replicaOf?: string;
  /** Where the log and any data go. */
  dir: string;
  /** More `--name value` arguments. @default {[]} */
  args?: string[];
}

/**
 * Starts `redis-server` on `host`, bound to its address, without persistence,
 * and waits until it answers PING.
 */
export async function startRedisNode(host: Host, options: RedisNodeOptions): Promise<BedRedis> {
  const { port = 6379, dir } = options;
  const logFile = `${dir}/node-${host.name}-${port}.log`;
  const replicaOf = options.replicaOf?.split(":") ?? [];
  const process = host.run("redis-server", [
    "--port",
    `${port}`,
    "--bind",
    host.ip,
    "--save",
    "",
    "--appendonly",
    "no",
    "--protected-mode",
    "no",
    "--dir",
    dir,
    "--dbfilename",
    `dump-${host.name}-${port}.rdb`,
    "--logfile",
    logFile,
    // Diskless sync waits 5 s by default for more replicas to join.
    "--repl-diskless-sync-delay",
    "0",
    ...(replicaOf.length === 2 ? ["--replicaof", replicaOf[0]!, replicaOf[1]!] : []),
    ...(options.args ?? []),
  ], { stderr: "piped" });
  return await started(new RedisHandle("node", host, port, logFile, process));
}

/** Options for {@linkcode startSentinel}. */
export interface SentinelOptions {
  /** The master's `"ip:port"`. */
  master: string;
  /** @default {"mymaster"} */
  masterName?: string;
  /** @default {26379} */
  port?: number;
  /** @default {2} */
  quorum?: number;
  /** @default {1000} */
  downAfterMs?: number;
  /** @default {10000} */
  failoverTimeoutMs?: number;
  /** Where the config (rewritten by Sentinel) and the log go. */
  dir: string;
}

/**
 * Writes a Sentinel config that monitors `master`, announces the host's
 * address, and starts `redis-server CONF --sentinel` on `host`; waits until
 * it answers PING.
 */
export async function startSentinel(host: Host, options: SentinelOptions): Promise<BedRedis> {
  const { port = 26379, masterName = "mymaster", quorum = 2, dir } = options;
  const [masterIp, masterPort] = options.master.split(":");
  const logFile = `${dir}/sentinel-${host.name}-${port}.log`;
  const configFile = `${dir}/sentinel-${host.name}-${port}.conf`;
  await Deno.writeTextFile(
    configFile,
    [
      `port ${port}`,
      `bind ${host.ip}`,
      "daemonize no",
      "protected-mode no",
      `dir "${dir}"`,
      `logfile "${logFile}"`,
      `sentinel announce-ip ${host.ip}`,
      `sentinel monitor ${masterName} ${masterIp} ${masterPort} ${quorum}`,
      `sentinel down-after-milliseconds ${masterName} ${options.downAfterMs ?? 1000}`,
      `sentinel failover-timeout ${masterName} ${options.failoverTimeoutMs ?? 10_000}`,
      `sentinel parallel-syncs ${masterName} 1`,
    ].join("\n") + "\n",
  );
  const process = host.run("redis-server", [configFile, "--sentinel"], { stderr: "piped" });
  return await started(new RedisHandle("sentinel", host, port, logFile, process));
}

class RedisHandle implements BedRedis {
  readonly address: string;
  stderr: Promise<string> = Promise.resolve("");

  constructor(
    readonly role: "node" | "sentinel",
    readonly host: Host,
    readonly port: number,
    readonly logFile: string,
    readonly process: HostProcess,
  ) {
    this.address = `${host.ip}:${port}`;
    this.stderr = new Response(process.child.stderr).text().catch(() => "");
  }

  cli(...args: string[]): Promise<string> {
    return this.host.exec("redis-cli", ["-h", this.host.ip, "-p", `${this.port}`, ...args], {
      timeoutMs: PROBE_TIMEOUT_MS,
    });
  }

  async logTail(lines = 20): Promise<string> {
    try {
      return (await Deno.readTextFile(this.logFile)).trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log file)";
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.process[Symbol.asyncDispose]();
    await this.stderr;
  }
}

/** Waits until the process answers PING; kills it and throws with its log otherwise. */
async function started(redis: RedisHandle): Promise<BedRedis> {
  const deadline = Date.now() + 10_000;
  let last = "";
  while (Date.now() < deadline && !redis.process.exited) {
    try {
      if (await redis.cli("PING") === "PONG") return redis;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await redis[Symbol.asyncDispose]();
  throw new Error(
    `Cannot start Redis ${redis.role} "${redis.address}" on host "${redis.host.name}": ${
      last || "it exited"
    }\n${(await redis.stderr).trim()}\n${await redis.logTail()}`,
  );
}

/** Options for {@linkcode startNetworkDeployment}. */
export interface NetworkDeploymentOptions {
  /**
   * One node on each (and one Sentinel, unless `sentinelHosts`); the first host's node starts
   * as master.
   */
  hosts: readonly Host[];
  /**
   * Hosts for the Sentinels instead, one Sentinel on each, in their own
   * namespaces: so that a cut can part a Sentinel from the node it sits beside
   * in production (see "Sentinels on hosts of their own" in `_network.ts`).
   * @default {hosts}
   */
  sentinelHosts?: readonly Host[];
  /** @default {"mymaster"} */
  masterName?: string;
  /** The port of every node (each on its own address). @default {6379} */
  port?: number;
  /** The port of every Sentinel. @default {26379} */
  sentinelPort?: number;
  /** @default {2} */
  quorum?: number;
  /** @default {1000} */
  downAfterMs?: number;
  /** @default {10000} */
  failoverTimeoutMs?: number;
  /** Where configs and logs go; the bed's `dir` is a good choice. */
  dir: string;
}

/** What {@linkcode NetworkDeployment.watchSwitch} reports. */
export interface BedSwitchEvent {
  /** The new master, `"ip:port"`. */
  address: string;
  /** The old master, `"ip:port"`. */
  from: string;
  /** The Sentinel whose message came first. */
  sentinel: string;
  /** `Date.now()` when the message was read (comparable with writer records). */
  seenAt: number;
}

/** A subscription to `+switch-master` on every Sentinel. */
export interface BedSwitchWatch extends AsyncDisposable {
  /** The first `+switch-master` for the master name; rejects after the timeout. */
  readonly next: Promise<BedSwitchEvent>;
}

/** Nodes and Sentinels on bed hosts. See {@linkcode startNetworkDeployment}. */
export interface NetworkDeployment extends AsyncDisposable {
  readonly masterName: string;
  /** In host order; `nodes[0]` started as master. */
  readonly nodes: readonly BedRedis[];
  readonly sentinels: readonly BedRedis[];
  /** `"ip:port"` of every Sentinel, for the tunnel's config. */
  readonly sentinelAddresses: string[];
  /** `SENTINEL GET-MASTER-ADDR-BY-NAME` on `sentinel`, as `"ip:port"`. */
  masterOf(sentinel: BedRedis): Promise<string>;
  /** The node's `ROLE` (first word: `master`, `slave`, `sentinel`). */
  roleOf(node: BedRedis): Promise<string>;
  /**
   * Waits until every running Sentinel names the same master with flags
   * `master`, knows every other running node as a healthy replica and every
   * other running Sentinel, and the master says `role:master`. Throws a
   * `TimeoutError` naming what is still wrong.
   */
  waitReady(timeoutMs?: number): Promise<void>;
  /**
   * Subscribes to `+switch-master` on every running Sentinel (a
   * `redis-cli --csv subscribe` in each one's namespace) and resolves once
   * every subscription is confirmed: call it BEFORE causing the failover.
   */
  watchSwitch(timeoutMs?: number): Promise<BedSwitchWatch>;
  /** `SENTINEL FAILOVER` on the first Sentinel that accepts it. */
  forceFailover(): Promise<void>;
  /**
   * Kills `node` if it still runs and starts it again on its host and port,
   * empty and as a master, as a node without persistence comes back after a
   * crash; the new handle takes the old one's place in `nodes`, so that
   * `waitReady` counts it. Sentinel turns it into a replica if it has
   * promoted another node meanwhile.
   */
  restartNode(node: BedRedis): Promise<BedRedis>;
}

/**
 * Starts one node per host (the first as master, the others as its
 * replicas, each waited for until its link is up) and one Sentinel per host.
 * Does not wait for the Sentinels to agree: call `waitReady()`.
 */
export async function startNetworkDeployment(
  options: NetworkDeploymentOptions,
): Promise<NetworkDeployment> {
  const deployment = new Deployment(options);
  try {
    await deployment.start(options);
  } catch (error) {
    await deployment[Symbol.asyncDispose]().catch(() => {});
    throw error;
  }
  return deployment;
}

class Deployment implements NetworkDeployment {
  readonly masterName: string;
  readonly nodes: BedRedis[] = [];
  readonly sentinels: BedRedis[] = [];
  #watches = new Set<BedSwitchWatch>();
  #dir: string;

  constructor(options: NetworkDeploymentOptions) {
    this.masterName = options.masterName ?? "mymaster";
    this.#dir = options.dir;
  }

  get sentinelAddresses(): string[] {
    return this.sentinels.map((s) => s.address);
  }

  async start(options: NetworkDeploymentOptions): Promise<void> {
    const [first, ...others] = options.hosts;
    if (first === undefined) throw new RangeError("Cannot start a deployment on no host");
    const { dir, port = 6379 } = options;
    const master = await startRedisNode(first, { dir, port });
    this.nodes.push(master);
    const replicas = await Promise.allSettled(
      others.map((host) => startRedisNode(host, { dir, port, replicaOf: master.address })),
    );
    for (const r of replicas) if (r.status === "fulfilled") this.nodes.push(r.value);
    for (const r of replicas) if (r.status === "rejected") throw r.reason;
    await Promise.all(this.nodes.slice(1).map((replica) => waitLinkUp(replica)));
    const sentinelHosts = options.sentinelHosts ?? options.hosts;
    const sentinels = await Promise.allSettled(sentinelHosts.map((host) =>
      startSentinel(host, {
        dir,
        master: master.address,
        masterName: this.masterName,
        ...(options.sentinelPort === undefined ? {} : { port: options.sentinelPort }),
        ...(options.quorum === undefined ? {} : { quorum: options.quorum }),
        ...(options.downAfterMs === undefined ? {} : { downAfterMs: options.downAfterMs }),
        ...(options.failoverTimeoutMs === undefined
          ? {}
          : { failoverTimeoutMs: options.failoverTimeoutMs }),
      })
    ));
    for (const s of sentinels) if (s.status === "fulfilled") this.sentinels.push(s.value);
    for (const s of sentinels) if (s.status === "rejected") throw s.reason;
  }

  async masterOf(sentinel: BedRedis): Promise<string> {
    const reply = await sentinel.cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", this.masterName);
    const [host, port] = reply.split(/\r?\n/);
    if (!host || !port) {
      throw new Error(
        `Sentinel "${sentinel.address}" does not know "${this.masterName}": got "${reply}"`,
      );
    }
    return `${host}:${port}`;
  }

  async roleOf(node: BedRedis): Promise<string> {
    return (await node.cli("ROLE")).split(/\r?\n/)[0] ?? "";
  }

  async waitReady(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let problems: string[] = [];
    for (;;) {
      problems = await this.#readinessProblems();
      if (problems.length === 0) return;
      if (Date.now() >= deadline) break;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    const logs = await Promise.all(
      this.sentinels.map(async (s) => `Last lines of ${s.logFile}:\n${await s.logTail(8)}`),
    );
    throw new DOMException(
      `Deployment "${this.masterName}" not ready after ${timeoutMs} ms: ${problems.join("; ")}\n${
        logs.join("\n")
      }`,
      "TimeoutError",
    );
  }

  #running(processes: readonly BedRedis[]): BedRedis[] {
    return processes.filter((p) => !p.process.exited);
  }

  async #readinessProblems(): Promise<string[]> {
    const sentinels = this.#running(this.sentinels);
    if (sentinels.length === 0) return ["no Sentinel is running"];
    const nodes = this.#running(this.nodes);
    const views = await Promise.all(sentinels.map((s) => this.#sentinelProblems(s, nodes)));
    const problems = views.flatMap((view) => view.problems);
    const masters = new Set(views.map((view) => view.master));
    if (masters.size > 1) {
      problems.push(`Sentinels disagree on the master: ${[...masters].join(", ")}`);
    }
    const [master] = masters;
    const node = nodes.find((n) => n.address === master);
    if (problems.length > 0 || node === undefined) return problems;
    try {
      const role = parseInfo(await node.cli("INFO", "replication")).get("role");
      if (role !== "master") problems.push(`master "${master}" reports role "${role}"`);
    } catch (error) {
      problems.push(`master "${master}": ${errorMessage(error)}`);
    }
    return problems;
  }

  async #sentinelProblems(
    sentinel: BedRedis,
    nodes: readonly BedRedis[],
  ): Promise<{ master: string | undefined; problems: string[] }> {
    const name = this.masterName;
    const who = `Sentinel "${sentinel.address}"`;
    const json = async (...args: string[]) =>
      JSON.parse(await sentinel.cli("-2", "--json", ...args));
    let masterInfo: Map<string, string>;
    let replicas: Map<string, string>[];
    let peers: Map<string, string>[];
    try {
      [masterInfo, replicas, peers] = await Promise.all([
        json("SENTINEL", "MASTER", name).then(toPairs),
        json("SENTINEL", "REPLICAS", name).then(toPairList),
        json("SENTINEL", "SENTINELS", name).then(toPairList),
      ]);
    } catch (error) {
      return { master: undefined, problems: [`${who}: ${errorMessage(error)}`] };
    }
    const problems: string[] = [];
    const master = `${masterInfo.get("ip")}:${masterInfo.get("port")}`;
    const flags = masterInfo.get("flags") ?? "";
    if (flags !== "master") problems.push(`${who} flags master "${master}" as "${flags}"`);
    if (!nodes.some((n) => n.address === master)) {
      problems.push(`${who} reports master "${master}", which is not running`);
    }
    const known = (entries: Map<string, string>[], address: string) =>
      entries.find((e) => `${e.get("ip")}:${e.get("port")}` === address);
    for (const node of nodes) {
      if (node.address === master) continue;
      const entry = known(replicas, node.address);
      const replicaFlags = entry?.get("flags") ?? "";
      if (!entry) problems.push(`${who} does not know replica "${node.address}"`);
      else if (/s_down|disconnected/.test(replicaFlags)) {
        problems.push(`${who} flags replica "${node.address}" as "${replicaFlags}"`);
      }
    }
    for (const peer of this.#running(this.sentinels)) {
      if (peer === sentinel) continue;
      const entry = known(peers, peer.address);
      const peerFlags = entry?.get("flags") ?? "";
      if (!entry) problems.push(`${who} does not know Sentinel "${peer.address}"`);
      else if (/s_down|disconnected/.test(peerFlags)) {
        problems.push(`${who} flags Sentinel "${peer.address}" as "${peerFlags}"`);
      }
    }
    return { master, problems };
  }

  async watchSwitch(timeoutMs = 60_000): Promise<BedSwitchWatch> {
    const watch = new SwitchWatch(
      this.masterName,
      this.#running(this.sentinels),
      timeoutMs,
      () => this.#watches.delete(watch),
    );
    this.#watches.add(watch);
    try {
      await watch.confirmed;
    } catch (error) {
      await watch[Symbol.asyncDispose]();
      throw error;
    }
    return watch;
  }

  async forceFailover(): Promise<void> {
    const deadline = Date.now() + 10_000;
    let errors: string[] = [];
    while (Date.now() < deadline) {
      errors = [];
      for (const sentinel of this.#running(this.sentinels)) {
        try {
          const reply = await sentinel.cli("SENTINEL", "FAILOVER", this.masterName);
          if (reply === "OK") return;
          errors.push(`${sentinel.address}: ${reply}`);
          if (reply.includes("INPROG")) throw new Error(reply);
        } catch (error) {
          if (errorMessage(error).includes("INPROG")) throw error;
          errors.push(errorMessage(error));
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 4 * POLL_MS));
    }
    throw new Error(`Cannot force a failover of "${this.masterName}": ${errors.join("; ")}`);
  }

  async restartNode(node: BedRedis): Promise<BedRedis> {
    const index = this.nodes.indexOf(node);
    if (index === -1) {
      throw new RangeError(`Cannot restart "${node.address}": it is not a node of this deployment`);
    }
    await node[Symbol.asyncDispose]();
    const fresh = await startRedisNode(node.host, { dir: this.#dir, port: node.port });
    this.nodes[index] = fresh;
    return fresh;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all([...this.#watches].map((w) => w[Symbol.asyncDispose]()));
    await Promise.all([...this.sentinels, ...this.nodes].map((p) => p[Symbol.asyncDispose]()));
  }
}

/** A `+switch-master` as one Sentinel published it. */
export interface PublishedSwitch {
  /** The master name. */
  name: string;
  /** `"ip:port"` of the old master and the new one. */
  from: string;
  to: string;
  /** The Sentinel that published it, `"ip:port"`. */
  sentinel: string;
  /** `Date.now()` when it was read. */
  seenAt: number;
}

/**
 * Subscribes to `+switch-master` on `sentinel` with `redis-cli`, in the Sentinel's own namespace
 * (so that a cut never hides it), and calls `onSwitch` for each one it publishes and `onSubscribed`
 * once the subscription is confirmed. `done` settles when the subscriber ends; disposing `process`
 * ends it.
 */
export function subscribeToSwitches(
  sentinel: BedRedis,
  handlers: { onSwitch(published: PublishedSwitch): void; onSubscribed?(): void },
): { process: HostProcess; done: Promise<void> } {
  const process = sentinel.host.run("redis-cli", [
    ...["-h", sentinel.host.ip, "-p", `${sentinel.port}`],
    ...["--csv", "subscribe", "+switch-master"],
  ], { stdout: "piped" });
  const done = (async () => {
    let buffer = "";
    try {
      for await (const chunk of process.child.stdout.pipeThrough(new TextDecoderStream())) {
        buffer += chunk;
        let newline;
        while ((newline = buffer.indexOf("\n")) !== -1) {
          const line = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (line.startsWith('"subscribe","+switch-master"')) handlers.onSubscribed?.();
          const match = /^"message","\+switch-master","([^"]*)"$/.exec(line);
          if (!match?.[1]) continue;
          const seenAt = Date.now();
          // "<name> <old-ip> <old-port> <new-ip> <new-port>"
          const [name = "", oldIp, oldPort, ip, port] = match[1].split(" ");
          handlers.onSwitch({
            name,
            from: `${oldIp}:${oldPort}`,
            to: `${ip}:${port}`,
            sentinel: sentinel.address,
            seenAt,
          });
        }
      }
    } catch { /* killed */ }
  })();
  return { process, done };
}

/** One `redis-cli --csv subscribe +switch-master` per Sentinel; the first message wins. */
class SwitchWatch implements BedSwitchWatch {
  readonly next: Promise<BedSwitchEvent>;
  readonly confirmed: Promise<void>;
  #subscribers: HostProcess[] = [];
  #readers: Promise<void>[] = [];
  #settle!: (outcome: BedSwitchEvent | Error) => void;
  #timer: ReturnType<typeof setTimeout>;
  #onDispose: () => void;
  #disposed: Promise<void> | undefined;

  constructor(
    name: string,
    sentinels: readonly BedRedis[],
    timeoutMs: number,
    onDispose: () => void,
  ) {
    this.#onDispose = onDispose;
    this.next = new Promise<BedSwitchEvent>((resolve, reject) => {
      let settled = false;
      this.#settle = (outcome) => {
        if (settled) return;
        settled = true;
        if (outcome instanceof Error) reject(outcome);
        else resolve(outcome);
      };
    });
    // A caller that never awaits `next` must not crash the test runner.
    this.next.catch(() => {});
    this.#timer = setTimeout(
      () =>
        this.#settle(
          new DOMException(
            `No +switch-master for "${name}" within ${timeoutMs} ms`,
            "TimeoutError",
          ),
        ),
      timeoutMs,
    );
    if (sentinels.length === 0) {
      this.confirmed = Promise.reject(new Error(`Cannot watch "${name}": no Sentinel is running`));
      return;
    }
    const confirmations = sentinels.map((sentinel) => {
      const confirmed = Promise.withResolvers<void>();
      const subscription = subscribeToSwitches(sentinel, {
        onSubscribed: confirmed.resolve,
        onSwitch: (published) => {
          if (published.name !== name) return;
          const { to: address, from, sentinel, seenAt } = published;
          this.#settle({ address, from, sentinel, seenAt });
        },
      });
      this.#subscribers.push(subscription.process);
      this.#readers.push(subscription.done.then(() =>
        confirmed.reject(
          new Error(`Cannot subscribe to +switch-master on Sentinel "${sentinel.address}"`),
        )
      ));
      return confirmed.promise;
    });
    this.confirmed = Promise.all(confirmations).then(() => {});
    this.confirmed.catch(() => {});
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#disposed ??= (async () => {
      clearTimeout(this.#timer);
      this.#settle(new Error("The +switch-master watch was disposed before any switch"));
      await Promise.all(this.#subscribers.map((s) => s[Symbol.asyncDispose]()));
      await Promise.all(this.#readers);
      this.#onDispose();
    })();
    return this.#disposed;
  }
}

async function waitLinkUp(replica: BedRedis): Promise<void> {
  const deadline = Date.now() + 15_000;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const info = parseInfo(await replica.cli("INFO", "replication"));
      if (info.get("master_link_status") === "up") return;
      last = `master_link_status is "${info.get("master_link_status")}"`;
    } catch (error) {
      last = errorMessage(error);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  throw new Error(
    `Replica "${replica.address}": replication link not up after 15000 ms: ${last}\n${await replica
      .logTail()}`,
  );
}

/** Parses `INFO` output (`key:value` lines) into a map. */
export function parseInfo(text: string): Map<string, string> {
  const info = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon > 0 && !line.startsWith("#")) info.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return info;
}

function toPairs(value: unknown): Map<string, string> {
  const pairs = new Map<string, string>();
  if (!Array.isArray(value)) return pairs;
  for (let i = 0; i + 1 < value.length; i += 2) {
    if (typeof value[i] === "string") pairs.set(value[i], String(value[i + 1]));
  }
  return pairs;
}

function toPairList(value: unknown): Map<string, string>[] {
  return Array.isArray(value) ? value.map(toPairs) : [];
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
