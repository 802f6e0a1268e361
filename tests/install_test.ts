/**
 * install.sh as an operator runs it on a VM, against a local HTTP server that
 * lays out fake release artifacts the way GitHub serves release downloads:
 * BASE/latest/download/FILE and BASE/download/vVERSION/FILE. The fake
 * artifacts are small shell scripts named for this machine's target.
 */
import assert from "node:assert/strict";
import { join } from "node:path";

const INSTALL_SH = join(import.meta.dirname!, "..", "install.sh");
const TARGET = Deno.build.target;
const ARTIFACT = `sentinel-tunnel-${TARGET}${Deno.build.os === "windows" ? ".exe" : ""}`;
const INSTALLED = Deno.build.os === "windows" ? "sentinel-tunnel.exe" : "sentinel-tunnel";
// As install.sh itself decides it (Deno.uid() would need --allow-sys).
const IS_ROOT = new TextDecoder().decode(
  (await new Deno.Command("sh", { args: ["-c", "id -u"] }).output()).stdout,
).trim() === "0";

/** A release on the fake server. */
interface FakeRelease {
  version: string;
  /** Served as the latest release too. */
  latest?: boolean;
  /** Publish a checksum that does not match the artifact. */
  wrongChecksum?: boolean;
  /** An artifact that fails to run, as one built for another machine would. */
  broken?: boolean;
}

const RELEASES: FakeRelease[] = [
  { version: "1.2.3" },
  { version: "1.3.0", latest: true },
  { version: "6.6.6", wrongChecksum: true },
  { version: "7.0.0", broken: true },
];

function fakeBinary(version: string): string {
  return `#!/bin/sh\necho "sentinel-tunnel ${version} (deno 2.9.6)"\n`;
}

const BROKEN_BINARY = `#!/bin/sh\necho "Exec format error" >&2\nexit 126\n`;

async function sha256Hex(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

async function writeRelease(dir: string, release: FakeRelease): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const binary = new TextEncoder().encode(
    release.broken ? BROKEN_BINARY : fakeBinary(release.version),
  );
  let checksum = await sha256Hex(binary);
  if (release.wrongChecksum) checksum = await sha256Hex(new TextEncoder().encode("tampered"));
  await Deno.writeFile(join(dir, ARTIFACT), binary);
  await Deno.writeTextFile(join(dir, `${ARTIFACT}.sha256`), `${checksum}  ${ARTIFACT}\n`);
}

/** Serves fake releases over HTTP on loopback; `await using` stops it and removes its files. */
class ReleaseServer implements AsyncDisposable {
  readonly baseUrl: string;
  readonly #root: string;
  readonly #server: Deno.HttpServer<Deno.NetAddr>;

  private constructor(root: string, server: Deno.HttpServer<Deno.NetAddr>) {
    this.#root = root;
    this.#server = server;
    this.baseUrl = `http://127.0.0.1:${server.addr.port}/releases`;
  }

  static async start(releases: FakeRelease[] = RELEASES): Promise<ReleaseServer> {
    const root = await Deno.makeTempDir({ prefix: "sentinel-tunnel-releases-" });
    for (const release of releases) {
      await writeRelease(join(root, "download", `v${release.version}`), release);
      if (release.latest) await writeRelease(join(root, "latest", "download"), release);
    }
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (request) => serveFile(root, new URL(request.url).pathname),
    );
    return new ReleaseServer(root, server);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#server.shutdown();
    await Deno.remove(this.#root, { recursive: true });
  }
}

async function serveFile(root: string, pathname: string): Promise<Response> {
  const parts = pathname.split("/").filter((part) => part !== "").map(decodeURIComponent);
  if (parts[0] !== "releases" || parts.some((part) => part === ".." || part.includes("/"))) {
    return new Response("not found\n", { status: 404 });
  }
  try {
    return new Response(await Deno.readFile(join(root, ...parts.slice(1))));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.IsADirectory) {
      return new Response("not found\n", { status: 404 });
    }
    throw error;
  }
}

/** A throwaway HOME, TMPDIR and install prefix, removed on dispose. */
class Sandbox implements AsyncDisposable {
  readonly dir: string;
  readonly home: string;
  readonly tmp: string;
  readonly prefix: string;

  private constructor(dir: string) {
    this.dir = dir;
    this.home = join(dir, "home");
    this.tmp = join(dir, "tmp");
    this.prefix = join(dir, "bin");
  }

  static async create(): Promise<Sandbox> {
    const sandbox = new Sandbox(await Deno.makeTempDir({ prefix: "sentinel-tunnel-install-" }));
    await Deno.mkdir(sandbox.home);
    await Deno.mkdir(sandbox.tmp);
    return sandbox;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Deno.remove(this.dir, { recursive: true });
  }
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function runInstaller(
  sandbox: Sandbox,
  args: string[],
  env: Record<string, string> = {},
  { asNobody = false } = {},
): Promise<RunResult> {
  // As root, setpriv runs the installer as an unprivileged user, to test what a user gets.
  const command = asNobody ? "setpriv" : "sh";
  const prefix = asNobody ? ["--reuid=65534", "--regid=65534", "--clear-groups", "sh"] : [];
  const output = await new Deno.Command(command, {
    args: [...prefix, INSTALL_SH, ...args],
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: sandbox.home,
      TMPDIR: sandbox.tmp,
      ...env,
    },
    stdin: "null",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

async function runInstalled(path: string): Promise<string> {
  const output = await new Deno.Command("sh", { args: [path, "--version"] }).output();
  assert.equal(output.code, 0);
  return new TextDecoder().decode(output.stdout);
}

async function listDir(path: string): Promise<string[] | undefined> {
  try {
    return (await Array.fromAsync(Deno.readDir(path))).map((entry) => entry.name).sort();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

async function assertInstalled(sandbox: Sandbox, result: RunResult, version: string) {
  const installed = join(sandbox.prefix, INSTALLED);
  assert.equal(result.code, 0, `install.sh failed:\n${result.stdout}${result.stderr}`);
  assert.deepEqual(await listDir(sandbox.prefix), [INSTALLED]);
  assert.equal(await Deno.readTextFile(installed), fakeBinary(version));
  if (Deno.build.os !== "windows") assert.equal((await Deno.stat(installed)).mode! & 0o777, 0o755);
  assert.equal(await runInstalled(installed), `sentinel-tunnel ${version} (deno 2.9.6)\n`);
  assert.ok(
    result.stdout.includes(`Installed ${installed}: sentinel-tunnel ${version} (deno 2.9.6)`),
    result.stdout,
  );
  assert.deepEqual(await listDir(sandbox.tmp), [], "install.sh left its temporary files");
}

Deno.test("install.sh --help prints usage and exits 0", async () => {
  await using sandbox = await Sandbox.create();
  const { code, stdout } = await runInstaller(sandbox, ["--help"]);
  assert.equal(code, 0);
  assert.match(stdout, /^Usage: install\.sh /);
  for (const option of ["--version", "--prefix", "--base-url"]) assert.ok(stdout.includes(option));
});

Deno.test("install.sh --version installs that release into the prefix and checks it runs", async () => {
  await using server = await ReleaseServer.start();
  await using sandbox = await Sandbox.create();
  const result = await runInstaller(sandbox, [
    "--version",
    "1.2.3",
    "--base-url",
    server.baseUrl,
    "--prefix",
    sandbox.prefix,
  ]);
  await assertInstalled(sandbox, result, "1.2.3");
  assert.ok(result.stdout.includes(`${server.baseUrl}/download/v1.2.3`), result.stdout);
  assert.match(result.stdout, /Checksum verified: [0-9a-f]{64}/);
  assert.ok(result.stdout.includes(`${sandbox.prefix} is not on your PATH`), result.stdout);
});

Deno.test("install.sh without --version installs the latest release", async () => {
  await using server = await ReleaseServer.start();
  await using sandbox = await Sandbox.create();
  const result = await runInstaller(
    sandbox,
    ["--base-url", server.baseUrl, "--prefix", sandbox.prefix],
    { PATH: `${sandbox.prefix}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}` },
  );
  await assertInstalled(sandbox, result, "1.3.0");
  assert.ok(result.stdout.includes(`${server.baseUrl}/latest/download`), result.stdout);
  assert.ok(!result.stdout.includes("not on your PATH"), result.stdout);
});

Deno.test("install.sh takes the version, base URL and prefix from the environment", async () => {
  await using server = await ReleaseServer.start();
  await using sandbox = await Sandbox.create();
  const result = await runInstaller(sandbox, [], {
    SENTINEL_TUNNEL_VERSION: "v1.2.3",
    SENTINEL_TUNNEL_BASE_URL: `${server.baseUrl}/`,
    SENTINEL_TUNNEL_PREFIX: sandbox.prefix,
  });
  await assertInstalled(sandbox, result, "1.2.3");
});

Deno.test("install.sh aborts on a checksum mismatch and installs nothing", async () => {
  await using server = await ReleaseServer.start();
  await using sandbox = await Sandbox.create();
  const args = ["--version", "6.6.6", "--base-url", server.baseUrl, "--prefix", sandbox.prefix];

  const fresh = await runInstaller(sandbox, args);
  assert.equal(fresh.code, 1, fresh.stdout);
  assert.match(
    fresh.stderr,
    /checksum mismatch for sentinel-tunnel-.*: expected [0-9a-f]{64}, got/,
  );
  assert.match(fresh.stderr, /nothing was installed/);
  assert.equal(await listDir(sandbox.prefix), undefined, "the prefix was created");
  assert.deepEqual(await listDir(sandbox.tmp), [], "install.sh left its temporary files");

  // An earlier install stays exactly as it was.
  await Deno.mkdir(sandbox.prefix);
  await Deno.writeTextFile(join(sandbox.prefix, INSTALLED), fakeBinary("1.0.0"));
  const over = await runInstaller(sandbox, args);
  assert.equal(over.code, 1, over.stdout);
  assert.deepEqual(await listDir(sandbox.prefix), [INSTALLED]);
  assert.equal(await Deno.readTextFile(join(sandbox.prefix, INSTALLED)), fakeBinary("1.0.0"));
});

Deno.test("install.sh installs nothing when the downloaded binary does not run", async () => {
  await using server = await ReleaseServer.start();
  await using sandbox = await Sandbox.create();
  await Deno.mkdir(sandbox.prefix);
  await Deno.writeTextFile(join(sandbox.prefix, INSTALLED), fakeBinary("1.0.0"));
  const { code, stderr } = await runInstaller(sandbox, [
    "--version",
    "7.0.0",
    "--base-url",
    server.baseUrl,
    "--prefix",
    sandbox.prefix,
  ]);
  assert.equal(code, 1);
  assert.match(stderr, /does not run on this machine: Exec format error/);
  assert.deepEqual(await listDir(sandbox.prefix), [INSTALLED]);
  assert.equal(await Deno.readTextFile(join(sandbox.prefix, INSTALLED)), fakeBinary("1.0.0"));
  assert.deepEqual(await listDir(sandbox.tmp), [], "install.sh left its temporary files");
});

Deno.test("install.sh fails clearly for a version that was never released", async () => {
  await using server = await ReleaseServer.start();
  await using sandbox = await Sandbox.create();
  const { code, stderr } = await runInstaller(sandbox, [
    "--version",
    "9.9.9",
    "--base-url",
    server.baseUrl,
    "--prefix",
    sandbox.prefix,
  ]);
  assert.equal(code, 1);
  assert.ok(
    stderr.includes(`cannot download ${server.baseUrl}/download/v9.9.9/${ARTIFACT}`),
    stderr,
  );
  assert.match(stderr, /check the version \("9\.9\.9"\)/);
  assert.equal(await listDir(sandbox.prefix), undefined, "the prefix was created");
});

Deno.test("install.sh stops with a hint when no release repository is set", async () => {
  await using sandbox = await Sandbox.create();
  const { code, stderr } = await runInstaller(sandbox, ["--prefix", sandbox.prefix]);
  assert.equal(code, 1);
  assert.match(stderr, /no release repository is set .*--base-url/);
});

Deno.test("install.sh rejects an unknown option with exit 2", async () => {
  await using sandbox = await Sandbox.create();
  const { code, stderr } = await runInstaller(sandbox, ["--frobnicate"]);
  assert.equal(code, 2);
  assert.match(stderr, /unknown argument "--frobnicate"/);
  assert.match(stderr, /--help/);
});

Deno.test({
  name: "install.sh installs into ~/.local/bin by default when not root",
  async fn() {
    await using server = await ReleaseServer.start();
    await using sandbox = await Sandbox.create();
    if (IS_ROOT) {
      for (const dir of [sandbox.dir, sandbox.home, sandbox.tmp]) await Deno.chmod(dir, 0o777);
    }
    const result = await runInstaller(sandbox, ["--base-url", server.baseUrl], {}, {
      asNobody: IS_ROOT,
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      await runInstalled(join(sandbox.home, ".local", "bin", INSTALLED)),
      "sentinel-tunnel 1.3.0 (deno 2.9.6)\n",
    );
  },
});

Deno.test("install.sh passes shellcheck", async () => {
  let output;
  try {
    output = await new Deno.Command("shellcheck", { args: ["--shell=sh", INSTALL_SH] }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotCapable) {
      throw new Error(
        "Cannot run shellcheck: install it (Debian/Ubuntu: sudo apt-get install shellcheck; " +
          "macOS: brew install shellcheck), or run make setup as root",
        { cause: error },
      );
    }
    throw error;
  }
  assert.equal(output.code, 0, new TextDecoder().decode(output.stdout));
});
