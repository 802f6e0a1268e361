/**
 * A host name whose first address is dead: in a network namespace of its own
 * whose /etc/hosts resolves "redis.test" to ::1 and then 127.0.0.1, a server
 * on 127.0.0.1 only is reached by name over TCP and TLS. Needs root and
 * iproute2 (CI runs as root); skipped elsewhere, saying why.
 */
import assert from "node:assert/strict";
import { makeCertificates } from "./_certs.ts";

const NS = `st-dual-${Deno.pid}`;

function canRunNamespaces(): string | undefined {
  const uid = new Deno.Command("sh", { args: ["-c", "id -u"], stdout: "piped" }).outputSync();
  if (new TextDecoder().decode(uid.stdout).trim() !== "0") {
    return "needs root to create a network namespace";
  }
  try {
    new Deno.Command("ip", { args: ["-V"], stdout: "null", stderr: "null" }).outputSync();
  } catch {
    return "needs the ip command (iproute2)";
  }
  return undefined;
}

async function ip(...args: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command("ip", { args, stdout: "null", stderr: "piped" })
    .output();
  if (code !== 0) throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(stderr)}`);
}

const why = canRunNamespaces();
if (why) console.log(`dual_stack_test: skipped: ${why}`);

Deno.test({
  name: "a host name whose first address refuses is reached at its next, over TCP and TLS",
  ignore: why !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dual-stack-test-" });
    const hostsDir = `/etc/netns/${NS}`;
    try {
      const certs = await makeCertificates(dir);
      await ip("netns", "add", NS);
      await ip("-n", NS, "link", "set", "lo", "up");
      await Deno.mkdir(hostsDir, { recursive: true });
      await Deno.writeTextFile(`${hostsDir}/hosts`, "::1 redis.test\n127.0.0.1 redis.test\n");
      const probe = new URL("./probes/dual_stack_probe.ts", import.meta.url).pathname;
      const { code, stdout, stderr } = await new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          NS,
          Deno.execPath(),
          "run",
          "--quiet",
          "-A",
          probe,
          certs.caFile,
          certs.server.certFile,
          certs.server.keyFile,
        ],
        env: { RUST_BACKTRACE: "0", NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(stdout);
      assert.equal(code, 0, `probe failed: ${text}${new TextDecoder().decode(stderr)}`);
      const result = JSON.parse(text.trim().split("\n").at(-1)!);
      assert.deepEqual(result.order, ["::1", "127.0.0.1"], "the dead address resolves first");
      assert.equal(result.tcp, "+PONG");
      assert.equal(result.tls, "+PONG");
    } finally {
      await ip("netns", "delete", NS).catch(() => {});
      await Deno.remove(hostsDir, { recursive: true }).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});
