/**
 * The README's quick start, run as a newcomer runs it: its shell blocks in
 * order, from the repository root, with its config saved as the file it names,
 * against a real deployment; then a plain RESP client must be served by the
 * master through the port. The README says how its blocks are adapted here:
 * the deployment's Sentinels go on the config's `sentinels` line, and a free
 * port replaces the example's port wherever it appears.
 *
 * The blocks are marked by an HTML comment just before their fence:
 * - `<!-- quick-start -->`: shell commands, run in `sh -e` to completion;
 * - `<!-- quick-start: serve -->`: one command that keeps running, started in
 *   the background while the blocks after it run, and stopped with SIGTERM;
 * - `<!-- quick-start: FILE -->`: the contents of FILE, written at the root.
 *
 * As in the reader's shell, the aliases an earlier block defined stay defined.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { canConnect, freePort, startDeployment } from "./_deployment.ts";
import { connectClient } from "./_tunnel.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

/** One marked block of the README's quick start. */
interface QuickStartBlock {
  kind: "run" | "serve" | "file";
  /** The file a "file" block is saved as, relative to the root. */
  file?: string;
  text: string;
  /** The line of its marker in README.md, for messages. */
  line: number;
}

const MARKER = /^<!-- quick-start(?::\s*(\S+))?\s*-->$/;

/** The marked blocks of `markdown`, in order. */
function quickStartBlocks(markdown: string): QuickStartBlock[] {
  const lines = markdown.split("\n");
  const blocks: QuickStartBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const marker = MARKER.exec(lines[i]!.trim());
    if (!marker) continue;
    const line = i + 1;
    let open = i + 1;
    while (open < lines.length && lines[open]!.trim() === "") open++;
    if (!/^```\w*$/.test(lines[open] ?? "")) {
      throw new SyntaxError(`README.md:${line}: a quick-start marker is not followed by a fence`);
    }
    const close = lines.findIndex((text, index) => index > open && text === "```");
    if (close === -1) throw new SyntaxError(`README.md:${line}: the block is never closed`);
    const text = lines.slice(open + 1, close).join("\n") + "\n";
    const name = marker[1];
    if (name === undefined) blocks.push({ kind: "run", text, line });
    else if (name === "serve") blocks.push({ kind: "serve", text, line });
    else blocks.push({ kind: "file", file: name, text, line });
    i = close;
  }
  return blocks;
}

/** `text` with its `"sentinels"` line naming `addresses` instead. */
function withSentinels(text: string, addresses: readonly string[]): string {
  const lines = text.split("\n");
  const at = lines.flatMap((line, index) => /"sentinels"\s*:/.test(line) ? [index] : []);
  assert.equal(at.length, 1, `the config has no single "sentinels" line:\n${text}`);
  lines[at[0]!] = lines[at[0]!]!.replace(/\[[^\]]*\]/, JSON.stringify(addresses));
  return lines.join("\n");
}

/**
 * The commands of a shell block, one per line as the reader types them (a line
 * ending in a backslash goes on), without blank and comment lines.
 */
function commandsOf(text: string): string[] {
  const commands: string[] = [];
  let pending = "";
  for (const line of text.split("\n")) {
    pending += line;
    if (line.endsWith("\\")) {
      pending += "\n";
      continue;
    }
    if (pending.trim() !== "" && !pending.trim().startsWith("#")) commands.push(pending);
    pending = "";
  }
  return commands;
}

const decoder = new TextDecoder();

/** Runs one command in `sh` from the root, after the aliases defined so far. */
async function runCommand(aliases: string, command: string, timeoutMs: number) {
  const output = await new Deno.Command("sh", {
    args: ["-c", `${aliases}\n${command}`],
    cwd: ROOT,
    env: { RUST_BACKTRACE: "0", NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  return {
    code: output.code,
    output: decoder.decode(output.stdout) + decoder.decode(output.stderr),
  };
}

/** A command started in the background by `sh`, which passes SIGTERM on to it. */
function serve(aliases: string, command: string) {
  const script = [
    aliases,
    `${command.trim()} &`,
    "pid=$!",
    `trap 'kill -TERM "$pid" 2>/dev/null' TERM`,
    `wait "$pid" && status=0 || status=$?`,
    // The trap ran during the first wait: wait again for the command's own status.
    `if [ "$status" -gt 128 ] && kill -0 "$pid" 2>/dev/null; then`,
    `  wait "$pid" && status=0 || status=$?`,
    "fi",
    `exit "$status"`,
  ].join("\n");
  const child = new Deno.Command("sh", {
    args: ["-c", script],
    cwd: ROOT,
    env: { RUST_BACKTRACE: "0", NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logs = { text: "" };
  const collect = (stream: ReadableStream<Uint8Array>) =>
    stream.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({
        write(chunk) {
          logs.text += chunk;
        },
      }),
    );
  const read = Promise.all([collect(child.stdout), collect(child.stderr)]);
  let exited = false;
  const status = child.status.then((value) => {
    exited = true;
    return value;
  });
  return {
    logs,
    get exited() {
      return exited;
    },
    async stop(): Promise<Deno.CommandStatus> {
      if (!exited) child.kill("SIGTERM");
      const timer = setTimeout(() => {
        if (!exited) child.kill("SIGKILL");
      }, 15_000);
      try {
        const result = await status;
        await read;
        return result;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

Deno.test("README.md marks its quick start: shell blocks, a config file and a command to serve", async () => {
  const blocks = quickStartBlocks(await Deno.readTextFile(`${ROOT}README.md`));
  assert.deepEqual(
    blocks.map((block) => block.kind === "file" ? `file ${block.file}` : block.kind),
    ["run", "file tunnel.jsonc", "run", "serve", "run"],
  );
  const [setup, , check, server] = blocks;
  assert.match(setup!.text, /^make setup && make bundle$/m);
  assert.match(check!.text, /^sentinel-tunnel --check --online tunnel\.jsonc$/m);
  assert.equal(server!.text.trim().split("\n").length, 1, "the serve block is one command");
});

Deno.test(
  "the README's quick start, run as written against a real deployment, serves a client through the port",
  { sanitizeOps: false, sanitizeResources: false },
  async () => {
    const blocks = quickStartBlocks(await Deno.readTextFile(`${ROOT}README.md`));
    const config = blocks.find((block) => block.kind === "file");
    assert.ok(config?.file, "no quick-start config file");
    const name = /"name"\s*:\s*"([^"]+)"/.exec(config.text)?.[1];
    const examplePort = /"port"\s*:\s*(\d+)/.exec(config.text)?.[1];
    assert.ok(name && examplePort, `the config names no database and port:\n${config.text}`);
    const port = freePort();
    const portPattern = new RegExp(`(?<!\\d)${examplePort}(?!\\d)`, "g");

    await using deployment = await startDeployment({ masterName: name });
    const configPath = `${ROOT}${config.file}`;
    await assert.rejects(
      Deno.lstat(configPath),
      Deno.errors.NotFound,
      `${configPath} exists; the quick start would overwrite it: move it away first`,
    );
    let server: ReturnType<typeof serve> | undefined;
    let status: Deno.CommandStatus | undefined;
    try {
      let aliases = "";
      for (const block of blocks) {
        const text = block.text.replace(portPattern, String(port));
        const where = `README.md:${block.line}`;
        if (block.kind === "file") {
          const sentinels = deployment.sentinels.map((sentinel) => sentinel.address);
          await Deno.writeTextFile(`${ROOT}${block.file}`, withSentinels(text, sentinels));
        } else if (block.kind === "serve") {
          server = serve(aliases, text);
          const deadline = Date.now() + 30_000;
          while (!await canConnect(port)) {
            assert.ok(!server.exited, `${where}: the tunnel exited:\n${server.logs.text}`);
            assert.ok(
              Date.now() < deadline,
              `${where}: nothing listens on ${port}:\n${server.logs.text}`,
            );
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        } else {
          for (const command of commandsOf(text)) {
            const { code, output } = await runCommand(aliases, command, 600_000);
            assert.equal(code, 0, `${where}: ${command}: exit ${code}:\n${output}`);
            if (server) {
              assert.doesNotMatch(
                output,
                /^(\(error\)|ERR\b|Could not connect)/m,
                `${where}: ${command}:\n${output}`,
              );
            }
            if (/--check --online/.test(command)) {
              assert.ok(
                output.includes(name),
                `${where}: the check does not name "${name}":\n${output}`,
              );
            }
            if (/^alias\s/.test(command)) aliases += `${command}\n`;
          }
        }
      }
      assert.ok(server, "the quick start starts no tunnel");

      // A plain RESP client, through the port, reaches the master the Sentinels name.
      const master = await deployment.sentinelMaster();
      using client = await connectClient(port);
      assert.deepEqual(await client.call(["CONFIG", "GET", "port"]), [
        "port",
        master.slice(master.lastIndexOf(":") + 1),
      ]);
      const value = crypto.randomUUID();
      assert.equal(await client.call(["SET", "readme-test", value]), "OK");
      const node = deployment.nodes.find((candidate) => candidate.address === master);
      assert.ok(node, `no node at ${master}`);
      assert.equal(await deployment.cli(node, "GET", "readme-test"), value);
    } finally {
      status = await server?.stop();
      await Deno.remove(configPath).catch(() => {});
    }
    assert.equal(status?.code, 0, `the tunnel did not exit 0 on SIGTERM:\n${server?.logs.text}`);
  },
);
