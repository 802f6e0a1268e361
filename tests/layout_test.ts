/**
 * The code's planes depend one way: `control/` and `data/` import only
 * `shared/` (and npm packages), `shared/` imports nothing of the tunnel,
 * `config/` turns a file or the environment into `shared/`'s settings,
 * `ops/` (admin API, metrics, hooks, logs) reads the planes, and only
 * `wiring/` assembles them all.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const SRC = fileURLToPath(new URL("../src/", import.meta.url));

/** The planes each plane may import from, besides itself. */
const ALLOWED: Record<string, string[]> = {
  shared: [],
  control: ["shared"],
  data: ["shared"],
  config: ["shared"],
  ops: ["shared", "control", "data", "config"],
  wiring: ["shared", "control", "data", "config", "ops"],
};

Deno.test("src/ planes import only the planes below them", async () => {
  const found = new Set<string>();
  const wrong: string[] = [];
  for await (const plane of Deno.readDir(SRC)) {
    assert.ok(plane.isDirectory, `src/${plane.name} is not a plane folder`);
    const allowed = ALLOWED[plane.name];
    assert.ok(allowed, `src/${plane.name} is not one of ${Object.keys(ALLOWED).join(", ")}`);
    found.add(plane.name);
    for await (const file of Deno.readDir(`${SRC}${plane.name}`)) {
      const text = await Deno.readTextFile(`${SRC}${plane.name}/${file.name}`);
      for (const [, path] of text.matchAll(/from "(\.[^"]+)"/g)) {
        const target = /^\.\.\/([a-z]+)\//.exec(path!)?.[1] ?? plane.name;
        if (target !== plane.name && !allowed.includes(target)) {
          wrong.push(`src/${plane.name}/${file.name} imports ${path}`);
        }
      }
    }
  }
  assert.deepEqual(wrong, []);
  assert.deepEqual([...found].sort(), Object.keys(ALLOWED).sort());
});
