/**
 * What every probe shares: one JSON line per record on stdout, an error's
 * words, and a sleep.
 *
 * @module
 */

/** Prints one record as a JSON line, which the test reads. */
export function print(record: Record<string, unknown>): void {
  console.log(JSON.stringify(record));
}

/** An error's message, for a record. */
export function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));
