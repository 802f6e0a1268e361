/**
 * Starts bench/floor_proxy.ts, the Deno floor: a minimal Deno TCP proxy to a
 * fixed address, run with the same Deno binary and `deno run --quiet` as the
 * tunnel.
 *
 * ```ts
 * await using floor = await startFloor({ port: 7100, upstream: "127.0.0.1:6379" });
 * ```
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { canConnect } from "../tests/_deployment.ts";

/** The floor proxy, relative to the repository root. */
export const FLOOR_SCRIPT = "bench/floor_proxy.ts";
const SCRIPT = fileURLToPath(new URL("./floor_proxy.ts", import.meta.url));

/**
 * The buffer of each direction of the floor the idle measurement starts: the
 * tunnel's small buffer, which an idle tunnel holds, so that "tunnel minus
 * floor" is the tunnel's own state. With 64 KiB buffers the floor holds about
 * 90 KiB per idle connection.
 */
export const IDLE_FLOOR_BUFFER_BYTES = 1024;

/** Options for {@linkcode startFloor}. */
export interface StartFloorOptions {
  /** The port it listens on, on 127.0.0.1. */
  port: number;
  /** Where every client goes, `"host:port"`. */
  upstream: string;
  /**
   * The buffer of each direction of each connection, in bytes.
   * @default {65536}
   */
  bufferBytes?: number;
  /**
   * How long to wait for the port to accept connections.
   * @default {10000}
   */
  timeoutMs?: number;
}

/** A running floor proxy. */
export interface FloorProcess extends AsyncDisposable {
  readonly pid: number;
  readonly port: number;
}

/**
 * Starts the floor proxy and waits until its port accepts connections.
 * Disposing it stops the process.
 *
 * @throws {Error} with its output when it exits or the port never opens
 */
export async function startFloor(options: StartFloorOptions): Promise<FloorProcess> {
  const args = ["run", "--quiet", "--allow-net", SCRIPT, String(options.port), options.upstream];
  if (options.bufferBytes !== undefined) args.push(String(options.bufferBytes));
  const child = new Deno.Command(Deno.execPath(), {
    args,
    env: { RUST_BACKTRACE: "0", NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let exited = false;
  const status = child.status.finally(() => exited = true);
  const dispose = async () => {
    if (!exited) {
      try {
        child.kill("SIGKILL");
      } catch { /* exited meanwhile */ }
    }
    await status;
    await stderr;
  };
  const deadline = performance.now() + (options.timeoutMs ?? 10_000);
  while (!exited && performance.now() < deadline) {
    if (await canConnect(options.port)) {
      return { pid: child.pid, port: options.port, [Symbol.asyncDispose]: dispose };
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await dispose();
  throw new Error(
    `Cannot start the floor proxy on port ${options.port}: ${
      exited ? `it exited with code ${(await status).code}` : "the port never opened"
    }\n${(await stderr).trim().slice(-2000)}`,
  );
}
