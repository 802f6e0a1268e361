/**
 * Waiting in integration tests for what a running tunnel does in its own
 * time, polled: the one `eventually()`.
 */

/**
 * Polls `probe` every 100 ms until it returns a value; a probe that throws
 * counts as not yet. Fails after `timeoutMs` naming `what` and the last error.
 */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what} did not happen within ${timeoutMs} ms${last ? `: ${last}` : ""}`);
}
