import assert from "node:assert/strict";

const processes = { sanitizeOps: false, sanitizeResources: false };

/** Whether a process is alive and not a zombie, asked of ps (the tests may not read /proc). */
async function alive(pid: number): Promise<boolean> {
  const { code } = await new Deno.Command("sh", {
    args: [
      "-c",
      'state=$(ps -o stat= -p "$0" 2>/dev/null); case "$state" in ""|Z*) exit 1;; *) exit 0;; esac',
      String(pid),
    ],
    stdout: "null",
    stderr: "null",
  }).output();
  return code === 0;
}

/** Runs runHook() in a Deno process with the tunnel's permissions (the tests' own are narrower). */
async function runHookAsTunnel(command: string[], timeoutMs: number): Promise<unknown> {
  const script = `
    import { runHook } from ${JSON.stringify(new URL("../src/ops/hooks.ts", import.meta.url).href)};
    const result = await runHook(
      { command: ${JSON.stringify(command)}, timeoutMs: ${timeoutMs} },
      { database: "m", from: undefined, to: { hostname: "127.0.0.1", port: 6379 }, via: "test" },
      new AbortController().signal,
    );
    console.log(JSON.stringify(result));
  `;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", "--no-check", script],
    env: { RUST_BACKTRACE: "0", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout).trim();
  assert.ok(output.success, `runHook failed: ${new TextDecoder().decode(output.stderr)}`);
  return JSON.parse(text.split("\n").at(-1)!);
}

Deno.test("runHook() kills the hook's whole process group at its timeout", processes, async () => {
  const dir = await Deno.makeTempDir({ prefix: "st-hook-" });
  try {
    const pidFile = `${dir}/child.pid`;
    // The hook starts a background process, records its pid, and waits.
    const result = await runHookAsTunnel(
      ["sh", "-c", `sleep 30 & echo $! > ${pidFile}; wait`],
      300,
    ) as { timedOut: boolean };
    assert.equal(result.timedOut, true);
    const pid = Number((await Deno.readTextFile(pidFile)).trim());
    assert.ok(pid > 0);
    assert.ok(await alive(Deno.pid), "alive() cannot see a live process");
    let gone = false;
    for (let i = 0; i < 50 && !gone; i++) {
      gone = !(await alive(pid));
      if (!gone) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.ok(gone, `the hook's background process ${pid} outlived the hook's timeout`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
