/**
 * Test utility for the ready pool (`preconnect`): a fake master on loopback
 * that records every connection, a fake master watcher whose targets the test
 * replaces, and a running pool over them.
 *
 * @module
 */
import type { Address } from "../src/shared/address.ts";
import { DEFAULT_TIMEOUTS } from "../src/shared/settings.ts";
import { PortStats } from "../src/shared/stats.ts";
import { ClientSlots } from "../src/data/client_slots.ts";
import { type Dialer, ReadyPool, type ReadySource } from "../src/data/ready_pool.ts";
import type { Targets } from "../src/shared/route.ts";
import { TunnelBuffers } from "../src/data/tunnel.ts";

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits for `condition`, failing with `what` after `timeoutMs`. */
export async function until(
  what: string,
  condition: () => boolean,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * A fake master: every accepted connection, the bytes it sent, and whether it
 * has closed. `onAccept` may answer a connection (a master at maxclients says
 * so and closes); else it answers every chunk with `+PONG`, as Redis would a PING.
 */
export class FakeMaster implements AsyncDisposable {
  readonly listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly conns: { conn: Deno.TcpConn; received: number; closed: boolean }[] = [];
  readonly address: Address = { hostname: "127.0.0.1", port: this.listener.addr.port };
  #accepting: Promise<void>;

  constructor(onAccept?: (conn: Deno.TcpConn) => Promise<void>) {
    this.#accepting = (async () => {
      for await (const conn of this.listener) {
        const entry = { conn, received: 0, closed: false };
        this.conns.push(entry);
        void (async () => {
          try {
            if (onAccept) return await onAccept(conn);
            const buffer = new Uint8Array(1024);
            for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
              entry.received += n;
              await conn.write(new TextEncoder().encode("+PONG\r\n"));
            }
          } catch {
            /* closed by the test */
          } finally {
            entry.closed = true;
          }
        })();
      }
    })().catch(() => {});
  }

  get open(): number {
    return this.conns.filter((c) => !c.closed).length;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.listener.close();
    for (const { conn } of this.conns) {
      try {
        conn.close();
      } catch { /* closed already */ }
    }
    await this.#accepting;
  }
}

/**
 * A fake control plane and port settings: its targets are what the test says, one object per
 * confirmation, as the master watcher makes them.
 */
export class FakeSource implements ReadySource {
  database = { name: "db", preconnect: 3, timeouts: DEFAULT_TIMEOUTS, tcpKeepAlive: false };
  targets: Targets | undefined;
  #changed = Promise.withResolvers<void>();

  constructor(address: Address, preconnect = 3) {
    this.targets = { kind: "master", addresses: [address] };
    this.database.preconnect = preconnect;
  }

  get nextChange(): Promise<void> {
    return this.#changed.promise;
  }

  /** A new confirmation (or none): a new targets object, as the master watcher makes. */
  confirm(address: Address | undefined): Targets | undefined {
    this.targets = address && { kind: "master", addresses: [address] };
    this.#changed.resolve();
    this.#changed = Promise.withResolvers();
    return this.targets;
  }
}

/** A running pool over `source`; aborted and awaited on dispose. */
export function startPool(
  source: FakeSource,
  options: { slots?: ClientSlots; total?: ClientSlots; connect?: Dialer; buffers?: TunnelBuffers } =
    {},
) {
  const controller = new AbortController();
  const stats = new PortStats();
  const buffers = options.buffers ?? new TunnelBuffers();
  const slots = options.slots ?? new ClientSlots(100);
  const pool = new ReadyPool(
    source,
    () => source.database,
    buffers,
    stats,
    { database: slots, total: options.total },
    options.connect,
  );
  const running = pool.run(controller.signal);
  return {
    pool,
    stats,
    buffers,
    slots,
    async [Symbol.asyncDispose]() {
      controller.abort();
      await running;
    },
  };
}
