/**
 * config/sentinel-tunnel.service keeps the hardening and lifecycle the README
 * promises. systemd does not run on the test machines, so this reads the unit.
 */
import assert from "node:assert/strict";

async function readUnit(): Promise<Map<string, string[]>> {
  const text = await Deno.readTextFile(
    new URL("../config/sentinel-tunnel.service", import.meta.url),
  );
  const settings = new Map<string, string[]>();
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      continue;
    }
    const equals = line.indexOf("=");
    assert.ok(equals > 0, `not a setting: ${JSON.stringify(line)}`);
    const key = `${section}.${line.slice(0, equals)}`;
    settings.set(key, [...(settings.get(key) ?? []), line.slice(equals + 1)]);
  }
  return settings;
}

Deno.test("sentinel-tunnel.service is hardened as the README says", async () => {
  const unit = await readUnit();
  const expected: Record<string, string> = {
    "Service.DynamicUser": "yes",
    "Service.NoNewPrivileges": "yes",
    "Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "Service.CapabilityBoundingSet": "",
    "Service.ProtectSystem": "strict",
    "Service.ProtectHome": "yes",
    "Service.PrivateTmp": "yes",
    "Service.PrivateDevices": "yes",
  };
  for (const [key, value] of Object.entries(expected)) {
    assert.deepEqual(unit.get(key), [value], key);
  }
  // V8's JIT writes the code it runs: this setting would kill the process.
  assert.equal(unit.get("Service.MemoryDenyWriteExecute"), undefined);
});

Deno.test("sentinel-tunnel.service restarts on failure and reloads with SIGHUP", async () => {
  const unit = await readUnit();
  assert.deepEqual(unit.get("Service.Restart"), ["on-failure"]);
  assert.deepEqual(unit.get("Service.ExecReload"), ["/bin/kill -HUP $MAINPID"]);
  // The path install.sh uses as root, and the config path the README tells operators to write.
  assert.deepEqual(unit.get("Service.ExecStart"), [
    "/usr/local/bin/sentinel-tunnel /etc/sentinel-tunnel/config.jsonc",
  ]);
  assert.deepEqual(unit.get("Install.WantedBy"), ["multi-user.target"]);
  const installer = await Deno.readTextFile(new URL("../install.sh", import.meta.url));
  assert.match(installer, /\/usr\/local\/bin/);
});
