/**
 * The container image of deploy/container (`make image`), run with podman
 * against real Redis and Sentinel processes on the host's network: configured
 * by `SENTINEL_TUNNEL_*` variables with the password from a file on the host
 * (a podman secret), ready on `/readyz`, writes kept on the master across a
 * SIGKILL failover (and, where a demoted master could still answer, across a
 * SIGSTOP of the master), SIGTERM ending it with status 0 within a 1 s grace
 * period, and never running as root. It prints the figures the README quotes: image
 * size, time to ready, idle RSS and CPU, the failover's.
 *
 * Ignored, saying why, without root, podman or the bundle.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { freePort, startDeployment } from "./_deployment.ts";
import { firstAck, masterFrozen, portOf, startWriters } from "./_failover.ts";
import { missingKeys } from "./_traffic.ts";
import { connectClient } from "./_tunnel.ts";
import { eventually } from "./_wait.ts";
import { COMPOSE, SIDECAR, sidecarTunnelConfig, yamlDocuments } from "./_deploy_examples.ts";
import {
  buildImage,
  type Container,
  containersUnavailable,
  cpuSeconds,
  podman,
  podmanSecret,
  procStatus,
  runContainer,
} from "./_container.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const why = await containersUnavailable();
if (why) console.log(`image_test: ignored: ${why}`);
const processes = { sanitizeOps: false, sanitizeResources: false };
/** The image's user: nonroot, as distroless images number it. */
const IMAGE_UID = "65532";

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** GET `path` on the admin port: its status, or undefined when nothing answers. */
async function adminStatus(port: number, path: string): Promise<number | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, {
      signal: AbortSignal.timeout(2000),
    });
    await response.body?.cancel();
    return response.status;
  } catch {
    return undefined;
  }
}

/** The permissions the Makefile runs the bundle with (RUN_PERMISSIONS). */
async function makefileRunPermissions(): Promise<string[]> {
  const makefile = await Deno.readTextFile(`${ROOT}Makefile`);
  const line = /^RUN_PERMISSIONS := (.*)$/m.exec(makefile);
  assert.ok(line, "the Makefile has no RUN_PERMISSIONS line");
  return line[1]!.trim().split(/\s+/);
}

Deno.test({
  name: "the image runs sentinel-tunnel as a numeric non-root user, without a shell, labelled",
  ignore: why !== undefined,
  ...processes,
  async fn() {
    const image = await buildImage();
    const config = JSON.parse(
      await podman("image", "inspect", "--format", "{{json .Config}}", image),
    );
    assert.equal(config.User, `${IMAGE_UID}:${IMAGE_UID}`);
    const version = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).version;
    assert.equal(config.Labels["org.opencontainers.image.version"], version);
    assert.match(config.Labels["org.opencontainers.image.revision"], /^[0-9a-f]{40}(-dirty)?$/);
    assert.ok(config.Labels["org.opencontainers.image.source"]);
    // The entry point runs the bundle with the permissions the Makefile gives it, nothing more.
    const entrypoint: string[] = config.Entrypoint;
    assert.equal(entrypoint[0], "/usr/bin/deno");
    assert.equal(entrypoint.at(-1), "/app/sentinel-tunnel.js");
    assert.deepEqual(
      entrypoint.filter((a) => a.startsWith("--allow-")),
      await makefileRunPermissions(),
    );
    // No network, a read-only root: the bundle needs nothing fetched and nothing written.
    const version_ = runContainer(image, { network: "none", args: ["--version"] });
    await using _version = version_;
    assert.equal((await version_.status).code, 0, JSON.stringify(version_.logs));
    // Nothing but Deno can be run: there is no shell.
    const shell = runContainer(image, {
      podmanArgs: ["--entrypoint", "/bin/sh"],
      args: ["-c", "id"],
    });
    await using _shell = shell;
    assert.notEqual((await shell.status).code, 0);
    const size = Number(await podman("image", "inspect", "--format", "{{.Size}}", image));
    console.log(`image: ${(size / 1e6).toFixed(1)} MB uncompressed`);
  },
});

Deno.test({
  name:
    "the container, configured from the environment with a secret from a file, turns ready, keeps writes on the master across a SIGKILL failover and stops on SIGTERM",
  ignore: why !== undefined,
  ...processes,
  async fn() {
    const image = await buildImage();
    const password = `pw-${crypto.randomUUID()}`;
    await using deployment = await startDeployment({ masterName: "imaged", password });

    // The password reaches the container as podman and Kubernetes deliver secrets: from a file
    // on the host, into the variable that SENTINEL_TUNNEL_MASTER_PASSWORD names (passwordEnv).
    await using secretFromFile = await podmanSecret(`st-test-${Deno.pid}-redis-password`, password);
    const secret = secretFromFile.name;

    const port = freePort();
    const admin = freePort();
    const started = performance.now();
    const container: Container = runContainer(image, {
      env: {
        SENTINEL_TUNNEL_SENTINELS: deployment.sentinels.map((s) => s.address).join(","),
        SENTINEL_TUNNEL_DATABASES: `${deployment.masterName}:${port}`,
        SENTINEL_TUNNEL_BIND: "127.0.0.1",
        SENTINEL_TUNNEL_ADMIN: `127.0.0.1:${admin}`,
      },
      podmanArgs: ["--secret", `${secret},type=env,target=SENTINEL_TUNNEL_MASTER_PASSWORD`],
    });
    await using _container = container;

    await eventually("/readyz answering 200", async () => {
      return await adminStatus(admin, "/readyz") === 200 ? true : undefined;
    }, 30_000);
    const readyMs = performance.now() - started;
    assert.equal(await adminStatus(admin, "/healthz"), 200);
    // The tunnel logs no secret.
    assert.ok(!JSON.stringify(container.logs).includes(password));

    const pid = await container.pid();
    for (const field of ["Uid", "Gid"]) {
      const ids = (await procStatus(pid, field)).split(/\s+/);
      assert.deepEqual(ids, [IMAGE_UID, IMAGE_UID, IMAGE_UID, IMAGE_UID], `${field}: ${ids}`);
    }
    assert.equal(await procStatus(pid, "CapEff"), "0000000000000000");
    const cpuBefore = await cpuSeconds(pid);
    await sleep(5000);
    const idleCpu = (await cpuSeconds(pid)) - cpuBefore;
    const rss = await procStatus(pid, "VmRSS");
    console.log(
      `container: /readyz ready ${readyMs.toFixed(0)} ms after podman run; idle RSS ${rss}, ` +
        `CPU ${(idleCpu / 5 * 1000).toFixed(1)} ms/s over 5 s`,
    );

    // A SIGKILL failover, with writers through the container's port.
    const oldMaster = deployment.nodes[0]!;
    await using watch = await deployment.watchSwitch();
    const writers = startWriters({ port, clients: 4, pauseMs: 2, password });
    let switchAt: number;
    let newPort: number;
    try {
      await firstAck(writers.acks, (a) => a.node === oldMaster.port, 10_000);
      oldMaster.kill("SIGKILL");
      const killedAt = performance.now();
      const { address, seenAt } = await watch.next;
      switchAt = seenAt;
      newPort = portOf(address);
      assert.notEqual(newPort, oldMaster.port);
      const first = await firstAck(
        writers.acks,
        (a) => a.node === newPort && a.at >= seenAt,
        10_000,
      );
      const recoveryMs = Math.max(0, first.at - seenAt);
      await sleep(300);
      const stale = writers.acks.filter((a) => a.node === oldMaster.port && a.at >= switchAt);
      console.log(
        `container: SIGKILL: +switch-master ${(seenAt - killedAt).toFixed(0)} ms after the kill; ` +
          `first write on the new master ${recoveryMs.toFixed(1)} ms after +switch-master; ` +
          `old-master acknowledgements after the switch: ${stale.length}`,
      );
      assert.ok(recoveryMs < 1000, `recovery took ${recoveryMs} ms`);
    } finally {
      await writers.stop();
    }
    const report = await writers.stop();
    const stale = report.acks.filter((a) => a.node === oldMaster.port && a.at >= switchAt);
    assert.deepEqual(stale, []);
    const afterSwitch = report.acks.filter((a) => a.node === newPort);
    assert.ok(afterSwitch.length > 0);
    assert.deepEqual(await missingKeys(newPort, afterSwitch.map((a) => a.key), password), []);
    assert.equal(await adminStatus(admin, "/readyz"), 200);
    console.log(
      `container: after the failover under 4 writers: RSS ${await procStatus(pid, "VmRSS")}, ` +
        `peak RSS ${await procStatus(pid, "VmHWM")}, ${report.acks.length} writes`,
    );

    // SIGTERM with a client connected: status 0 within a 1 s grace period (podman stop sends
    // SIGKILL after it, which would be status 137), the client's tunnel closed.
    using client = await connectClient(port);
    await client.call(["AUTH", password]);
    assert.equal(await client.call(["PING"]), "PONG");
    const stopAt = performance.now();
    await podman("stop", "--time", "1", container.name);
    const { code } = await container.status;
    const stopMs = performance.now() - stopAt;
    console.log(
      `container: SIGTERM: exited with ${code}, podman stop took ${stopMs.toFixed(0)} ms`,
    );
    assert.equal(code, 0, `exit status ${code} after SIGTERM`);
    await container.waitForLog((r) => r.message === "Stopped", 1000);
    await assert.rejects(client.call(["PING"]), "the client's tunnel is closed");
  },
});

Deno.test({
  name:
    "the container runs the Kubernetes example's ConfigMap config from a read-only mount, and the Compose healthcheck passes",
  ignore: why !== undefined,
  ...processes,
  async fn() {
    const image = await buildImage();
    const password = `pw-${crypto.randomUUID()}`;
    // The example's Sentinels take the data nodes' password, as the chart it names sets them up.
    await using deployment = await startDeployment({
      masterName: "mymaster",
      password,
      sentinelPassword: password,
    });
    const [deploymentObject] = (await yamlDocuments(SIDECAR)).filter((d) =>
      d.kind === "Deployment"
    );
    const sidecar = (deploymentObject as {
      spec: { template: { spec: { initContainers: { name: string; args: string[] }[] } } };
    }).spec.template.spec.initContainers.find((c) => c.name === "sentinel-tunnel")!;

    // The example's config with this deployment's Sentinels and free ports on the host's network.
    const port = freePort();
    const admin = freePort();
    const config = (await sidecarTunnelConfig())
      .replace(
        /"sentinels":\s*\[[^\]]*\]/,
        `"sentinels": ${JSON.stringify(deployment.sentinels.map((s) => s.address))}`,
      )
      .replace(`"admin": "0.0.0.0:9121"`, `"admin": "127.0.0.1:${admin}"`)
      .replace(`"port": 6379`, `"port": ${port}`);
    assert.ok(config.includes(`"port": ${port}`) && config.includes(`:${admin}"`), config);
    const configDir = await Deno.makeTempDir({ prefix: "st-configmap-" });
    await using _configDir = {
      [Symbol.asyncDispose]: () => Deno.remove(configDir, { recursive: true }).catch(() => {}),
    };
    // A ConfigMap's files are 0644 for a non-root container to read.
    await Deno.chmod(configDir, 0o755);
    await Deno.writeTextFile(`${configDir}/tunnel.jsonc`, config, { mode: 0o644 });

    await using secretFromFile = await podmanSecret(
      `st-test-${Deno.pid}-configmap-password`,
      password,
    );
    const secret = secretFromFile.name;

    const container = runContainer(image, {
      podmanArgs: [
        "--volume",
        `${configDir}:/etc/sentinel-tunnel:ro`,
        "--secret",
        `${secret},type=env,target=REDIS_PASSWORD`,
        // readOnlyRootFilesystem: not even a /tmp to write to.
        "--read-only-tmpfs=false",
      ],
      args: sidecar.args,
    });
    await using _container = container;
    await eventually("/readyz answering 200", async () => {
      return await adminStatus(admin, "/readyz") === 200 ? true : undefined;
    }, 30_000).catch((error) => {
      throw new Error(`${error.message}; logs:\n${JSON.stringify(container.logs)}`);
    });
    using client = await connectClient(port);
    assert.equal(await client.call(["AUTH", password]), "OK");
    const master = portOf(await deployment.sentinelMaster());
    assert.deepEqual(await client.call(["CONFIG", "GET", "port"]), ["port", String(master)]);

    // The Compose example's healthcheck, run in the container as Compose runs it.
    const [compose] = await yamlDocuments(COMPOSE) as {
      services: Record<string, { healthcheck: { test: string[] } }>;
    }[];
    const [kind, ...command] = compose!.services["sentinel-tunnel"]!.healthcheck.test;
    assert.equal(kind, "CMD");
    const probe = command.map((part) => part.replace("127.0.0.1:9121", `127.0.0.1:${admin}`));
    await podman("exec", container.name, ...probe);
  },
});

Deno.test({
  name:
    "through the container, a master frozen (SIGSTOP) and woken after the switch acknowledges no write",
  ignore: why !== undefined,
  ...processes,
  async fn() {
    const image = await buildImage();
    await using deployment = await startDeployment({ masterName: "imagefrozen" });
    const port = freePort();
    const admin = freePort();
    const container = runContainer(image, {
      env: {
        SENTINEL_TUNNEL_SENTINELS: deployment.sentinels.map((s) => s.address).join(","),
        SENTINEL_TUNNEL_DATABASES: `${deployment.masterName}:${port}`,
        SENTINEL_TUNNEL_ADMIN: `127.0.0.1:${admin}`,
      },
    });
    await using _container = container;
    await eventually("/readyz answering 200", async () => {
      return await adminStatus(admin, "/readyz") === 200 ? true : undefined;
    }, 30_000);
    // The old master wakes up believing it is master, with client writes in its buffers: the
    // case where a write acknowledged by it after the switch could happen, and must not.
    await masterFrozen(deployment, { port, label: "container: ", missingOnNewMaster: missingKeys });
  },
});
