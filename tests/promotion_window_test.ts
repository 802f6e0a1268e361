/**
 * The promotion window of a failover, against real redis-server and Sentinel
 * processes: between the moment the failover leader picks a replica
 * (`+selected-slave`) and `+switch-master`, the old master still answers ROLE
 * with `master` and accepts writes, but the replica it replicates to is about
 * to stop following it. Every write the old master acknowledges in that window
 * is lost. These tests count such writes by the node that acknowledged them
 * (each writer connection asks `CONFIG GET port` first) and check what a
 * client sees when a failover is aborted half way.
 */
import assert from "node:assert/strict";
import { type Deployment, freePort, type RedisProcess, startDeployment } from "./_deployment.ts";
import { type Ack, missingKeys, runWriters, type WriterReport } from "./_traffic.ts";
import { connectClient, startTunnel } from "./_tunnel.ts";
import { RedisConnection } from "../src/control/redis_connection.ts";
import type { RespValue } from "../src/control/resp.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects with `message` if `promise` has not settled within `ms`. */
async function within<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${message} within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function tunnelFor(deployment: Deployment) {
  const port = freePort();
  const tunnel = await startTunnel({
    sentinels: deployment.sentinels.map((s) => s.address),
    timeouts: { clientWaitMs: 10_000 },
    databases: [{ name: deployment.masterName, port }],
  }, { ports: [port] });
  await tunnel.waitForLog((r) => /master is/.test(String(r.message)));
  return { port, tunnel };
}

/** Every acknowledged write, and waiters for the first one that matches. */
class AckLog {
  readonly acks: Ack[] = [];
  #waiters = new Set<{ match: (ack: Ack) => boolean; resolve: (ack: Ack) => void }>();

  add(ack: Ack): void {
    this.acks.push(ack);
    for (const waiter of this.#waiters) {
      if (waiter.match(ack)) {
        this.#waiters.delete(waiter);
        waiter.resolve(ack);
      }
    }
  }

  /** The first ack, already logged or still to come, that satisfies `match`. */
  async first(match: (ack: Ack) => boolean, timeoutMs: number, what: string): Promise<Ack> {
    const found = this.acks.find(match);
    if (found) return found;
    const { promise, resolve } = Promise.withResolvers<Ack>();
    const waiter = { match, resolve };
    this.#waiters.add(waiter);
    try {
      return await within(promise, timeoutMs, `No ${what}`);
    } finally {
      this.#waiters.delete(waiter);
    }
  }
}

/** Writers through the tunnel; `log` fills as writes are acknowledged. */
function startWriters(port: number, clients: number, pauseMs: number) {
  const stop = new AbortController();
  const log = new AckLog();
  const done = runWriters({
    port,
    clients,
    pauseMs,
    signal: stop.signal,
    onAck: (ack) => log.add(ack),
  });
  return {
    log,
    stop: (): Promise<WriterReport> => {
      stop.abort();
      return done;
    },
  };
}

/** `INFO replication` as a map. */
async function replication(deployment: Deployment, node: RedisProcess) {
  const text = await deployment.cli(node, "INFO", "replication");
  return new Map(
    text.split(/\r?\n/).filter((l) => l.includes(":")).map((l) => {
      const at = l.indexOf(":");
      return [l.slice(0, at), l.slice(at + 1).trim()] as const;
    }),
  );
}

/** Waits until every node other than `masterPort` replicates from it with its link up. */
async function waitReplicasLinked(deployment: Deployment, masterPort: number, timeoutMs: number) {
  const deadline = performance.now() + timeoutMs;
  const replicas = deployment.nodes.filter((n) => n.port !== masterPort && n.state === "running");
  for (const node of replicas) {
    for (;;) {
      // Sentinel ends a node's normal clients when it reconfigures it: a failed poll is "not yet".
      const info = await replication(deployment, node).catch(() => new Map<string, string>());
      if (
        info.get("role") === "slave" && info.get("master_port") === String(masterPort) &&
        info.get("master_link_status") === "up"
      ) break;
      if (performance.now() > deadline) {
        throw new Error(
          `Replica "${node.address}" does not follow port ${masterPort} after ${timeoutMs} ms: ` +
            `role ${info.get("role")}, master_port ${info.get("master_port")}, ` +
            `link ${info.get("master_link_status")}`,
        );
      }
      await sleep(50);
    }
  }
}

/** One message a Sentinel published. */
interface SentinelEvent {
  readonly channel: string;
  readonly payload: string;
  readonly sentinel: string;
  /** `performance.now()` when it was read. */
  readonly seenAt: number;
}

/** Subscriptions on every Sentinel; `onEvent` runs as soon as a message is read. */
class EventWatch implements Disposable {
  readonly events: SentinelEvent[] = [];
  #connections: RedisConnection[] = [];
  #stop = new AbortController();
  #changed = Promise.withResolvers<void>();

  static async open(
    sentinels: readonly RedisProcess[],
    subscribe: { channels: string[]; patterns: string[] },
    onEvent: (event: SentinelEvent) => void,
  ): Promise<EventWatch> {
    const watch = new EventWatch();
    try {
      for (const sentinel of sentinels) {
        const connection = await RedisConnection.open(
          { hostname: "127.0.0.1", port: sentinel.port },
          { connectTimeoutMs: 2000, replyTimeoutMs: 5000 },
        );
        watch.#connections.push(connection);
        await connection.send(["SUBSCRIBE", ...subscribe.channels]);
        if (subscribe.patterns.length > 0) {
          await connection.send(["PSUBSCRIBE", ...subscribe.patterns]);
        }
        for (let i = 0; i < subscribe.channels.length + subscribe.patterns.length; i++) {
          const reply = await connection.read({ timeoutMs: 5000 });
          if (!Array.isArray(reply) || !/subscribe$/.test(String(reply[0]))) {
            throw new Error(
              `Cannot subscribe on Sentinel "${sentinel.address}": got ${JSON.stringify(reply)}`,
            );
          }
        }
        watch.#read(connection, sentinel.address, onEvent);
      }
    } catch (error) {
      watch[Symbol.dispose]();
      throw error;
    }
    return watch;
  }

  async #read(
    connection: RedisConnection,
    sentinel: string,
    onEvent: (event: SentinelEvent) => void,
  ): Promise<void> {
    try {
      for (;;) {
        const reply: RespValue = await connection.read({ signal: this.#stop.signal });
        const seenAt = performance.now();
        if (!Array.isArray(reply)) continue;
        const [kind] = reply;
        const [channel, payload] = kind === "pmessage" ? reply.slice(2) : reply.slice(1);
        if (kind !== "message" && kind !== "pmessage") continue;
        const event = { channel: String(channel), payload: String(payload), sentinel, seenAt };
        this.events.push(event);
        onEvent(event);
        this.#changed.resolve();
        this.#changed = Promise.withResolvers();
      }
    } catch {
      // Disposed, or the Sentinel went away; the waits below time out then.
    }
  }

  /** The first event, already seen or still to come, that satisfies `match`. */
  async first(
    match: (event: SentinelEvent) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<SentinelEvent> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const found = this.events.find(match);
      if (found) return found;
      const remaining = deadline - performance.now();
      if (remaining <= 0) {
        throw new Error(
          `No ${what} within ${timeoutMs} ms; events: ${
            JSON.stringify(this.events.map((e) => `${e.channel} ${e.payload}`))
          }`,
        );
      }
      await within(this.#changed.promise, remaining, "").catch(() => {});
    }
  }

  [Symbol.dispose](): void {
    this.#stop.abort();
    for (const connection of this.#connections) connection.close();
  }
}

/** Whether a Sentinel event payload is about master `name` (`... @ name ip port` or `master name ...`). */
function about(event: SentinelEvent, name: string): boolean {
  return event.payload.split(" ").includes(name);
}

interface Failover {
  readonly n: number;
  readonly oldPort: number;
  readonly newPort: number;
  readonly forcedAt: number;
  readonly selectedAt: number;
  readonly switchAt: number;
  /** From +switch-master to the first write acknowledged by the new master. */
  readonly firstAckMs: number;
}

Deno.test(
  "five SENTINEL FAILOVERs under four writers lose no acknowledged write",
  processes,
  async () => {
    const started = performance.now();
    await using deployment = await startDeployment({ masterName: "manual" });
    const { port, tunnel } = await tunnelFor(deployment);
    await using _tunnel = tunnel;
    const nodeAt = (p: number) => deployment.nodes.find((n) => n.port === p)!;
    using events = await EventWatch.open(
      deployment.sentinels,
      { channels: ["+selected-slave"], patterns: [] },
      () => {},
    );
    const writers = startWriters(port, 4, 1);
    const failovers: Failover[] = [];
    let report: WriterReport;
    try {
      await writers.log.first(
        (a) => a.node === deployment.nodes[0]!.port,
        5000,
        "write acknowledged by the first master",
      );
      for (let n = 1; n <= 5; n++) {
        await deployment.waitReady();
        const oldPort = portOf(await deployment.sentinelMaster());
        await using watch = await deployment.watchSwitch(30_000);
        const forcedAt = performance.now();
        await deployment.forceFailover();
        const { address, seenAt: switchAt } = await watch.next;
        const newPort = portOf(address);
        assert.notEqual(newPort, oldPort, `failover ${n} switched to the same node`);
        const selected = await events.first(
          (e) => e.seenAt >= forcedAt && about(e, deployment.masterName),
          5000,
          `+selected-slave for failover ${n}`,
        );
        const first = await writers.log.first(
          (a) => a.node === newPort && a.at >= switchAt,
          15_000,
          `write acknowledged by the new master ${address} after failover ${n}`,
        );
        failovers.push({
          n,
          oldPort,
          newPort,
          forcedAt,
          selectedAt: selected.seenAt,
          switchAt,
          firstAckMs: first.at - switchAt,
        });
        await sleep(1000);
        // Sentinel turns a demoted master into a replica only ~10 s after the switch. Do it now,
        // as Sentinel would, so it is a candidate with its link up for the next failover.
        await deployment.cli(nodeAt(oldPort), "REPLICAOF", "127.0.0.1", String(newPort));
        await waitReplicasLinked(deployment, newPort, 20_000);
      }
    } finally {
      report = await writers.stop();
    }

    const finalPort = portOf(await deployment.sentinelMaster());
    const lost = new Set(await missingKeys(finalPort, report.acks.map((a) => a.key)));
    const lostAcks = report.acks.filter((a) => lost.has(a.key));
    // A lost ack belongs to the last failover whose old master acknowledged it while it was master.
    const perFailover = failovers.map(() => ({
      beforeSwitch: 0,
      afterSwitch: 0,
      earliest: Infinity,
      latest: -Infinity,
    }));
    let unattributed = 0;
    for (const ack of lostAcks) {
      let index = -1;
      failovers.forEach((f, i) => {
        const since = i === 0 ? 0 : failovers[i - 1]!.switchAt;
        if (f.oldPort === ack.node && ack.at >= since) index = i;
      });
      const slot = perFailover[index];
      if (slot === undefined) {
        unattributed++;
        continue;
      }
      if (ack.at < failovers[index]!.switchAt) slot.beforeSwitch++;
      else slot.afterSwitch++;
      slot.earliest = Math.min(slot.earliest, ack.at - failovers[index]!.selectedAt);
      slot.latest = Math.max(slot.latest, ack.at - failovers[index]!.selectedAt);
    }
    const lines = failovers.map((f, i) => {
      const slot = perFailover[i]!;
      const range = slot.beforeSwitch + slot.afterSwitch === 0
        ? ""
        : `, lost writes acked ${slot.earliest.toFixed(0)} to ${
          slot.latest.toFixed(0)
        } ms after +selected-slave`;
      return `  failover ${f.n}: ${f.oldPort} -> ${f.newPort}, +selected-slave ${
        (f.selectedAt - f.forcedAt).toFixed(0)
      } ms after SENTINEL FAILOVER, +switch-master ${
        (f.switchAt - f.selectedAt).toFixed(0)
      } ms after +selected-slave${range}; first ack on the new master ${
        f.firstAckMs.toFixed(1)
      } ms after +switch-master; lost ${slot.beforeSwitch} acked before +switch-master, ${slot.afterSwitch} after`;
    });
    console.log(
      `${report.acks.length} writes acknowledged, ${lost.size} lost (missing on the final master ` +
        `${finalPort}), ${unattributed} not attributed to a failover; took ${
          ((performance.now() - started) / 1000).toFixed(1)
        } s\n${lines.join("\n")}\n  writer errors: ${JSON.stringify([...report.errors])}`,
    );
    assert.equal(failovers.length, 5);
    assert.equal(
      lost.size,
      0,
      `${lost.size} of ${report.acks.length} acknowledged writes are missing on the final master:\n` +
        lines.join("\n"),
    );
  },
);

/** What a client saw: its first reply (or the error that ended it) and when. */
interface Outcome {
  readonly at: number;
  readonly reply?: RespValue;
  readonly error?: string;
}

Deno.test(
  "a failover aborted after +selected-slave resumes on the old master",
  processes,
  async () => {
    const started = performance.now();
    await using deployment = await startDeployment({
      masterName: "aborted",
      replicas: 1,
      failoverTimeoutMs: 3000,
      // Long enough that no Sentinel flags the frozen replica or starts a failover of its own.
      downAfterMs: 30_000,
    });
    const oldMaster = deployment.nodes[0]!;
    const replica = deployment.nodes[1]!;
    const oldPortReply = ["port", String(oldMaster.port)];
    const { port, tunnel } = await tunnelFor(deployment);
    await using _tunnel = tunnel;

    // A: attached to the old master before the failover starts.
    using early = await connectClient(port, 15_000);
    assert.deepEqual(await early.call(["CONFIG", "GET", "port"]), oldPortReply);

    // SIGSTOP the selected replica before the leader's SLAVEOF NO ONE (sent on its next timer tick,
    // about 100 ms after +selected-slave) reaches it: the promotion then never completes and the
    // leader gives up after failover-timeout with -failover-abort-slave-timeout.
    let frozenAt: number | undefined;
    using events = await EventWatch.open(deployment.sentinels, {
      channels: ["+selected-slave", "+promoted-slave", "+switch-master"],
      patterns: ["-failover-abort-*"],
    }, (event) => {
      if (
        event.channel === "+selected-slave" && about(event, deployment.masterName) &&
        frozenAt === undefined
      ) {
        replica.stop();
        frozenAt = performance.now();
      }
    });
    try {
      const done = new AbortController();
      const earlyEnded: Promise<Outcome> = (async () => {
        try {
          const reply = await early.read({ signal: done.signal });
          return { at: performance.now(), reply };
        } catch (error) {
          return { at: performance.now(), error: (error as Error).message };
        }
      })();

      const failoverAt = performance.now();
      await deployment.forceFailover();
      const selected = await events.first(
        (e) => e.channel === "+selected-slave" && about(e, deployment.masterName),
        10_000,
        "+selected-slave",
      );
      assert.ok(
        selected.payload.includes(replica.address),
        `the leader selected another node: ${selected.payload}`,
      );

      // B: clients that arrive inside the promotion window, once the tunnel has had time to see
      // +selected-slave (it subscribes to the same Sentinels).
      const held = [500, 1500].map(async (delayMs) => {
        await sleep(Math.max(0, selected.seenAt + delayMs - performance.now()));
        const client = await connectClient(port, 15_000);
        const connectedAt = performance.now();
        try {
          const reply = await client.call(["CONFIG", "GET", "port"]);
          return { connectedAt, outcome: { at: performance.now(), reply } as Outcome };
        } catch (error) {
          return {
            connectedAt,
            outcome: { at: performance.now(), error: (error as Error).message } as Outcome,
          };
        } finally {
          client.close();
        }
      });

      const end = await events.first(
        (e) =>
          (e.channel.startsWith("-failover-abort-") || e.channel === "+switch-master") &&
          about(e, deployment.masterName),
        15_000,
        "-failover-abort-* or +switch-master",
      );
      assert.equal(
        end.channel,
        "-failover-abort-slave-timeout",
        `setup: the failover did not abort as planned (${end.channel} ${end.payload}); ` +
          `replica frozen ${frozenAt === undefined ? "never" : "at"} ${
            frozenAt === undefined ? "" : (frozenAt - selected.seenAt).toFixed(1)
          } ms after +selected-slave`,
      );
      assert.ok(
        !events.events.some((e) => e.channel === "+promoted-slave"),
        "setup: the replica was promoted",
      );
      const clients = await Promise.all(held);
      const earlyOutcome = await within(
        earlyEnded,
        Math.max(0, end.seenAt + 2000 - performance.now()),
        "The early client's connection did not end",
      ).catch((error: Error) => error);
      done.abort();

      // After the abort, writes through the tunnel are acknowledged by the old master.
      const writes: number[] = [];
      for (let i = 0; i < 10; i++) {
        using client = await connectClient(port, 15_000);
        const node = await client.call(["CONFIG", "GET", "port"]);
        assert.equal(await client.call(["SET", `after-abort:${i}`, String(i)]), "OK");
        writes.push(Array.isArray(node) ? Number(node[1]) : -1);
      }
      const onOldMaster = await deployment.cli(oldMaster, "MGET", "after-abort:0", "after-abort:9");

      const since = (t: number) => `${(t - selected.seenAt).toFixed(0)} ms`;
      console.log(
        `abort: +selected-slave at 0 ms (replica frozen ${
          frozenAt === undefined ? "never" : since(frozenAt)
        }), ${end.channel} at ${since(end.seenAt)}; early client ${
          earlyOutcome instanceof Error
            ? "never cut"
            : `ended at ${since(earlyOutcome.at)} (${earlyOutcome.error ?? "reply"})`
        }; ${
          clients.map((c, i) =>
            `window client ${i + 1} connected at ${since(c.connectedAt)}, first reply at ${
              since(c.outcome.at)
            }: ${JSON.stringify(c.outcome.reply ?? c.outcome.error)}`
          ).join("; ")
        }; after the abort ${
          writes.filter((p) => p === oldMaster.port).length
        }/10 writes on the old master; took ${((performance.now() - started) / 1000).toFixed(1)} s`,
      );

      // The early client is cut once the failover is under way (a check may see the leader's
      // failover_in_progress before +selected-slave arrives), and before the abort.
      assert.ok(
        !(earlyOutcome instanceof Error),
        `a client attached to the old master before +selected-slave was not cut: ` +
          `its connection was still open ${since(end.seenAt + 2000)} after +selected-slave ` +
          `(2 s after ${end.channel})`,
      );
      assert.ok(
        earlyOutcome.at > failoverAt && earlyOutcome.at < end.seenAt,
        `the early client ended at ${since(earlyOutcome.at)}, not between SENTINEL FAILOVER ` +
          `(${since(failoverAt)}) and ${end.channel} (${since(end.seenAt)})`,
      );
      // Clients that arrive in the window are held until the abort, then served by the old master.
      for (const [i, c] of clients.entries()) {
        assert.ok(
          c.connectedAt < end.seenAt,
          `setup: window client ${i + 1} connected after ${end.channel}`,
        );
        assert.ok(
          c.outcome.at > end.seenAt,
          `window client ${i + 1}, connected ${since(c.connectedAt)} after +selected-slave, got ` +
            `its first reply ${JSON.stringify(c.outcome.reply ?? c.outcome.error)} at ${
              since(c.outcome.at)
            }, before ${end.channel} at ${since(end.seenAt)}`,
        );
        assert.deepEqual(
          c.outcome.reply,
          oldPortReply,
          `window client ${i + 1} was not served by the old master`,
        );
      }
      assert.deepEqual(writes, Array(10).fill(oldMaster.port));
      assert.equal(onOldMaster, "0\n9");
    } finally {
      replica.cont();
    }
  },
);
