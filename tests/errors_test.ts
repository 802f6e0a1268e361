/**
 * The one error classifier (`shared/errors.ts`): errors are sorted by their
 * types and the codes the system gave them, never by their words.
 */
import assert from "node:assert/strict";
import { acceptErrorKind, errorCode, isOutOfDescriptors } from "../src/shared/errors.ts";

/** An OS error as Deno makes one: its words, and the errno name as `code`. */
function osError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

Deno.test("acceptErrorKind() tells one connection's trouble from exhaustion, by type and code", () => {
  assert.equal(acceptErrorKind(new Deno.errors.ConnectionAborted("x")), "connection");
  assert.equal(acceptErrorKind(new Deno.errors.ConnectionReset("x")), "connection");
  assert.equal(acceptErrorKind(new Deno.errors.NotConnected("x")), "connection");
  assert.equal(
    acceptErrorKind(osError("Transport endpoint is not connected (os error 107)", "ENOTCONN")),
    "connection",
  );
  assert.equal(acceptErrorKind(osError("Protocol error (os error 71)", "EPROTO")), "connection");
  assert.equal(acceptErrorKind(osError("Operation not permitted", "EPERM")), "connection");
  assert.equal(
    acceptErrorKind(osError("Too many open files (os error 24)", "EMFILE")),
    "exhaustion",
  );
  assert.equal(
    acceptErrorKind(osError("Too many open files in system (os error 23)", "ENFILE")),
    "exhaustion",
  );
  assert.equal(
    acceptErrorKind(osError("No buffer space available (os error 105)", "ENOBUFS")),
    "exhaustion",
  );
  // The words alone decide nothing: an error without a code is not one connection's.
  assert.equal(acceptErrorKind(new Error("Protocol error (os error 71)")), "exhaustion");
  assert.equal(acceptErrorKind(new Deno.errors.BadResource("closed")), "closed");
  assert.equal(isOutOfDescriptors(osError("Too many open files", "EMFILE")), true);
  assert.equal(isOutOfDescriptors(osError("No buffer space available", "ENOBUFS")), false);
});

Deno.test("errorCode() reads the code Deno gives a real out-of-descriptors error", () => {
  const files: Deno.FsFile[] = [];
  let error: unknown;
  try {
    // Opened until the process's limit (ulimit -n) is reached.
    for (let i = 0; i < 1_000_000 && error === undefined; i++) {
      try {
        files.push(Deno.openSync("/dev/null"));
      } catch (e) {
        error = e;
      }
    }
  } finally {
    for (const file of files) file.close();
  }
  assert.equal(errorCode(error), "EMFILE", String(error));
  assert.equal(isOutOfDescriptors(error), true);
  assert.equal(acceptErrorKind(error), "exhaustion");
});
