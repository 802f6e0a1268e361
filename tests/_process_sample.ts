/**
 * Prints what `readProcess()` reads, as one JSON line (`null` for what it
 * could not read): `metrics_test.ts` runs it under different permissions.
 */
import { EventLoopLag, readProcess } from "../src/ops/metrics.ts";

const sample = await readProcess({ startedAt: Date.now(), eventLoopLag: new EventLoopLag() });
console.log(JSON.stringify({
  residentBytes: sample.residentBytes,
  heapUsedBytes: sample.heapUsedBytes,
  cpuSeconds: sample.cpuSeconds,
  openFds: sample.openFds ?? null,
  maxFds: sample.maxFds ?? null,
}));
