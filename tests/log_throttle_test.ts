/**
 * LogThrottle: the one way a repeated event is kept from flooding the log.
 * Times are given, not slept: every case is exact.
 */
import assert from "node:assert/strict";
import { LogThrottle } from "../src/shared/log_throttle.ts";

Deno.test("LogThrottle logs the first occurrence, holds repeats within the interval, and counts them in the next line", () => {
  const throttle = new LogThrottle(1000);
  assert.deepEqual(throttle.admit("a", 0), { held: 0 });
  assert.equal(throttle.admit("a", 10), undefined);
  assert.equal(throttle.admit("a", 999), undefined);
  assert.equal(throttle.held, 2);
  assert.deepEqual(throttle.admit("a", 1000), { held: 2 });
  assert.equal(throttle.held, 0);
  assert.equal(throttle.nextLineAt, 2000);
});

Deno.test("LogThrottle logs another kind at once, and starts its count afresh", () => {
  const throttle = new LogThrottle(1000);
  throttle.admit("a", 0);
  assert.equal(throttle.admit("a", 1), undefined);
  assert.deepEqual(throttle.admit("b", 2), { held: 0 });
  // Back to the first kind: news again, logged at once.
  assert.deepEqual(throttle.admit("a", 3), { held: 0 });
});

Deno.test("LogThrottle.flush() takes the held count for a summary, and the interval runs from it", () => {
  const throttle = new LogThrottle(1000);
  throttle.admit("a", 0);
  throttle.admit("a", 100);
  throttle.admit("a", 200);
  assert.equal(throttle.flush(1000), 2);
  assert.equal(throttle.flush(1001), 0);
  // The summary was a line: the next repeat waits for the interval from it.
  assert.equal(throttle.admit("a", 1500), undefined);
  assert.deepEqual(throttle.admit("a", 2000), { held: 1 });
});

Deno.test("LogThrottle.reset() makes the next occurrence news", () => {
  const throttle = new LogThrottle(30_000);
  throttle.admit("a", 0);
  throttle.reset();
  assert.deepEqual(throttle.admit("a", 1), { held: 0 });
});
