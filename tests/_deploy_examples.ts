/**
 * Test utility: the container examples of deploy/ read as their users'
 * tools read them.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
/** The Kubernetes sidecar example. */
export const SIDECAR = `${ROOT}deploy/kubernetes/sidecar.yaml`;
/** The Compose example. */
export const COMPOSE = `${ROOT}deploy/compose/compose.yaml`;

/** The documents of a YAML file, parsed; throws on the first YAML error or warning. */
export async function yamlDocuments(path: string): Promise<Record<string, unknown>[]> {
  const documents = parseAllDocuments(await Deno.readTextFile(path));
  assert.ok(Array.isArray(documents), `${path}: no YAML documents`);
  return documents.map((document, index) => {
    const problems = [...document.errors, ...document.warnings];
    assert.deepEqual(problems.map(String), [], `${path}, document ${index}`);
    return document.toJS() as Record<string, unknown>;
  });
}

/** The tunnel config (JSONC) that the sidecar example's ConfigMap carries, as text. */
export async function sidecarTunnelConfig(): Promise<string> {
  const configMap = (await yamlDocuments(SIDECAR)).find((d) => d.kind === "ConfigMap");
  const data = (configMap?.data ?? {}) as Record<string, string>;
  const config = data["tunnel.jsonc"];
  assert.ok(config, "the ConfigMap has no tunnel.jsonc");
  return config;
}
