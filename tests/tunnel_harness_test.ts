/**
 * tests/_tunnel.ts, the harness every tunnel of the suite is started by: with
 * `SENTINEL_TUNNEL_BINARY` it runs that executable, with the arguments as
 * given, and nothing else; without it, `deno run` on the script. The release
 * workflow relies on the first to test the compiled binary, `make test` on it
 * to test the stand-in, so a harness that quietly fell back to `deno run`
 * would test the wrong thing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const HARNESS = new URL("./_tunnel.ts", import.meta.url).href;
const decoder = new TextDecoder();

/** Runs `script` in a fresh Deno with `env`, so `_tunnel.ts` reads it at load; its output. */
async function inHarness(script: string, env: Record<string, string>) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", "--no-check", script],
    cwd: ROOT,
    env: { RUST_BACKTRACE: "0", NO_COLOR: "1", ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  return {
    success: output.success,
    stdout: decoder.decode(output.stdout).trim(),
    stderr: decoder.decode(output.stderr).trim(),
  };
}

/** A fake tunnel executable that prints its arguments, one per line, after a marker. */
async function fakeBinary(dir: string): Promise<string> {
  const path = join(dir, "fake-sentinel-tunnel");
  await Deno.writeTextFile(
    path,
    '#!/bin/sh\necho "fake binary"\nfor a in "$@"; do echo "$a"; done\n',
  );
  await Deno.chmod(path, 0o755);
  return path;
}

Deno.test("with SENTINEL_TUNNEL_BINARY the harness runs that executable with the tunnel's arguments", async () => {
  const dir = await Deno.makeTempDir({ prefix: "st-harness-" });
  try {
    const binary = await fakeBinary(dir);
    const { success, stdout, stderr } = await inHarness(
      `import { runCli, tunnelCommand } from ${JSON.stringify(HARNESS)};
       const command = tunnelCommand(["--check", "a config.jsonc"]);
       const result = await runCli(["--check", "a config.jsonc"]);
       console.log(JSON.stringify({ command, result }));`,
      { PATH: Deno.env.get("PATH") ?? "", SENTINEL_TUNNEL_BINARY: binary },
    );
    assert.ok(success, stderr);
    const { command, result } = JSON.parse(stdout.split("\n").at(-1)!);
    assert.deepEqual(command, { program: binary, args: ["--check", "a config.jsonc"] });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "fake binary\n--check\na config.jsonc\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("without SENTINEL_TUNNEL_BINARY the harness runs deno run on SENTINEL_TUNNEL_ENTRY", async () => {
  const { success, stdout, stderr } = await inHarness(
    `import { tunnelCommand } from ${JSON.stringify(HARNESS)};
     console.log(JSON.stringify(tunnelCommand(["--version"])));`,
    { SENTINEL_TUNNEL_ENTRY: "dist/sentinel-tunnel.js" },
  );
  assert.ok(success, stderr);
  const command = JSON.parse(stdout.split("\n").at(-1)!);
  assert.equal(command.program, Deno.execPath());
  assert.equal(command.args[0], "run");
  assert.deepEqual(command.args.slice(-2), ["dist/sentinel-tunnel.js", "--version"]);
});

Deno.test("a SENTINEL_TUNNEL_BINARY that is no executable fails at load, saying what to set", async () => {
  const dir = await Deno.makeTempDir({ prefix: "st-harness-" });
  try {
    const notExecutable = join(dir, "sentinel-tunnel");
    await Deno.writeTextFile(notExecutable, "#!/bin/sh\n");
    for (
      const [value, reason] of [[notExecutable, "is not an executable file"], [
        join(dir, "missing"),
        "No such file",
      ]]
    ) {
      const { success, stderr } = await inHarness(
        `await import(${JSON.stringify(HARNESS)});`,
        { SENTINEL_TUNNEL_BINARY: value! },
      );
      assert.equal(success, false);
      assert.ok(stderr.includes(`SENTINEL_TUNNEL_BINARY=${value}`), stderr);
      assert.ok(stderr.includes(reason!), stderr);
      assert.match(stderr, /make standin/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The .ts files of `folder` and its subfolders. */
async function* sources(folder: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(folder)) {
    if (entry.isDirectory) yield* sources(join(folder, entry.name));
    else if (entry.isFile && entry.name.endsWith(".ts")) yield join(folder, entry.name);
  }
}

Deno.test("only tests/_tunnel.ts builds a command that runs the tunnel", async () => {
  const offenders: string[] = [];
  for (const folder of ["tests", "bench"]) {
    for await (const path of sources(join(ROOT, folder))) {
      if (path.endsWith("/tests/_tunnel.ts") || path.endsWith("/tunnel_harness_test.ts")) continue;
      const text = await Deno.readTextFile(path);
      const name = path.slice(ROOT.length);
      // Importing ENTRY or reading the variable is how a file would build its own `deno run`
      // command; a bench script may set the variable (to pick the bundle) before loading the harness.
      if (/import\s*\{[^}]*\bENTRY\b[^}]*\}\s*from\s*"[^"]*_tunnel\.ts"/.test(text)) {
        offenders.push(`${name}: imports ENTRY`);
      }
      if (
        /Deno\.env\.get\("SENTINEL_TUNNEL_ENTRY"\)/.test(text) &&
        !/Deno\.env\.set\("SENTINEL_TUNNEL_ENTRY"/.test(text)
      ) offenders.push(`${name}: reads SENTINEL_TUNNEL_ENTRY`);
      // Deno itself asked to run the tunnel's script.
      if (
        /Deno\.execPath\(\)[\s\S]{0,400}?"run"[\s\S]{0,400}?(main\.ts|sentinel-tunnel\.js)/.test(
          text,
        )
      ) {
        offenders.push(`${name}: runs main.ts or the bundle with Deno.execPath()`);
      }
    }
  }
  assert.deepEqual(offenders, [], "these files may start a tunnel without tunnelCommand()");
});

/** The words of the Makefile variable `name` (`NAME := ...`, continued lines included). */
async function makefileWords(name: string): Promise<string[]> {
  const makefile = await Deno.readTextFile(join(ROOT, "Makefile"));
  const match = new RegExp(`^${name} := ((?:.*\\\\\n)*.*)$`, "m").exec(makefile);
  assert.ok(match, `the Makefile sets no ${name}`);
  return match[1]!.replaceAll("\\\n", " ").split(/\s+/).filter((word) => word !== "");
}

Deno.test("deno run gives the tunnel exactly the permissions compiled into the binary", async () => {
  const { success, stdout, stderr } = await inHarness(
    `import { tunnelCommand } from ${JSON.stringify(HARNESS)};
     console.log(JSON.stringify(tunnelCommand([])));`,
    { SENTINEL_TUNNEL_ENTRY: "dist/sentinel-tunnel.js" },
  );
  assert.ok(success, stderr);
  const { args } = JSON.parse(stdout.split("\n").at(-1)!) as { args: string[] };
  const permissions = args.filter((arg) => arg.startsWith("--allow-"));
  assert.deepEqual(permissions, await makefileWords("COMPILE_PERMISSIONS"));
});

Deno.test("deno compile compiles the bundle, the bytes every test runs", async () => {
  const makefile = await Deno.readTextFile(join(ROOT, "Makefile"));
  const compiles = makefile.split("\n").filter((line) => /\$\(DENO\) compile /.test(line));
  assert.ok(compiles.length >= 2, "no deno compile in the Makefile");
  for (const line of compiles) assert.match(line, /\$\(BUNDLE\); \\$/, line);
});
