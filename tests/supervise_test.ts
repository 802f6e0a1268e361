import assert from "node:assert/strict";
import { supervise } from "../src/shared/io.ts";

Deno.test("supervise() runs a loop again after it throws, with a growing backoff", async () => {
  const failures: [string, number][] = [];
  let runs = 0;
  await supervise(
    () => {
      runs++;
      if (runs <= 3) return Promise.reject(new Error(`bug ${runs}`));
      return Promise.resolve();
    },
    new AbortController().signal,
    {
      backoffMs: 1,
      maxBackoffMs: 50,
      onFailure: (error, ms) => failures.push([(error as Error).message, ms]),
    },
  );
  assert.equal(runs, 4);
  assert.deepEqual(failures, [["bug 1", 1], ["bug 2", 2], ["bug 3", 4]]);
});

Deno.test("supervise() stops restarting when its signal aborts, and never rejects", async () => {
  const controller = new AbortController();
  let runs = 0;
  await supervise(
    () => {
      runs++;
      if (runs === 2) controller.abort();
      return Promise.reject(new Error("always"));
    },
    controller.signal,
    {
      backoffMs: 1,
      onFailure: () => {
        throw new Error("a failing report must not stop anything");
      },
    },
  );
  assert.equal(runs, 2);
});
