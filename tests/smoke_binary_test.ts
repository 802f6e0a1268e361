/**
 * .ci/smoke_binary.sh, the release workflow's test of the binaries built for Linux arm64 and macOS,
 * run here on the tunnel under test so that it cannot rot before a release needs it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { tunnelCommand } from "./_tunnel.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const processes = { sanitizeOps: false, sanitizeResources: false };

/** A base port with the three after it free too, for the script's master, Sentinel, tunnel, admin. */
function freePortRun(): number {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    const listeners: Deno.Listener[] = [];
    try {
      for (let port = base; port < base + 4; port++) {
        listeners.push(Deno.listen({ hostname: "127.0.0.1", port }));
      }
      return base;
    } catch {
      // One of them is taken: try another base.
    } finally {
      for (const listener of listeners) listener.close();
    }
  }
  throw new Error("no four free ports in a row on 127.0.0.1 after 50 tries");
}

/** Quotes `word` for sh. */
function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** The tunnel under test as one executable file: the binary, or a script around `deno run`. */
async function tunnelExecutable(dir: string): Promise<string> {
  const { program, args } = tunnelCommand([]);
  if (args.length === 0) return program;
  const path = join(dir, "sentinel-tunnel");
  await Deno.writeTextFile(
    path,
    `#!/bin/sh\nexec ${[program, ...args].map(shellQuote).join(" ")} "$@"\n`,
  );
  await Deno.chmod(path, 0o755);
  return path;
}

async function smoke(binary: string) {
  const output = await new Deno.Command("sh", {
    args: [".ci/smoke_binary.sh", binary],
    cwd: ROOT,
    env: { RUST_BACKTRACE: "0", NO_COLOR: "1", SMOKE_BASE_PORT: String(freePortRun()) },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    text: decoder.decode(output.stdout) + decoder.decode(output.stderr),
  };
}

Deno.test("the release smoke test passes on the tunnel under test", processes, async () => {
  const dir = await Deno.makeTempDir({ prefix: "st-smoke-test-" });
  try {
    const { code, text } = await smoke(await tunnelExecutable(dir));
    assert.equal(code, 0, text);
    assert.match(
      text,
      /smoke: ok: --check --online, \/readyz, a write through port \d+, exit 0 on SIGTERM/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(
  "the release smoke test fails, saying why, on a binary that does not tunnel",
  processes,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "st-smoke-test-" });
    try {
      // Prints a version and exits 0 for anything else: nothing listens, nothing is written.
      const fake = join(dir, "sentinel-tunnel");
      await Deno.writeTextFile(fake, '#!/bin/sh\necho "sentinel-tunnel 0.0.0 (fake)"\n');
      await Deno.chmod(fake, 0o755);
      const { code, text } = await smoke(fake);
      assert.equal(code, 1, text);
      assert.match(text, /exited 0 while waiting for: curl .*\/readyz/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
