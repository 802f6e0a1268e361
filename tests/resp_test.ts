import assert from "node:assert/strict";
import {
  CONTROL_LIMITS,
  encodeCommand,
  parseReply,
  RespErrorReply,
  RespProtocolError,
  type RespValue,
} from "../src/control/resp.ts";
import { encodeError } from "../src/data/resp_error.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

function parseText(text: string, start = 0) {
  return parseReply(bytes(text), start);
}

Deno.test("encodeCommand() encodes a command as an array of bulk strings", () => {
  assert.equal(
    decoder.decode(
      encodeCommand(["SENTINEL", "get-master-addr-by-name", "mymaster"]),
    ),
    "*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n",
  );
});

Deno.test("encodeCommand() encodes an empty command and empty arguments", () => {
  assert.equal(decoder.decode(encodeCommand([])), "*0\r\n");
  assert.equal(
    decoder.decode(encodeCommand(["ECHO", ""])),
    "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n",
  );
});

Deno.test("encodeCommand() gives bulk lengths in UTF-8 bytes, not UTF-16 units", () => {
  // "ключ" is 4 UTF-16 units but 8 bytes; "€😀" is 3 units but 3 + 4 bytes.
  assert.equal("€😀".length, 3);
  assert.equal(
    decoder.decode(encodeCommand(["AUTH", "ключ", "€😀"])),
    "*3\r\n$4\r\nAUTH\r\n$8\r\nключ\r\n$7\r\n€😀\r\n",
  );
});

Deno.test("encodeCommand() output parses back into the same strings", () => {
  const args = ["AUTH", "ünïcödé", "line\r\nbreak", "", "😀😀"];
  const encoded = encodeCommand(args);
  assert.deepEqual(parseReply(encoded), { value: args, end: encoded.length });
});

Deno.test("encodeError() replaces CR and LF runs with one space", () => {
  const encoded = encodeError("bad\r\nthing\nhere\r");
  assert.equal(decoder.decode(encoded), "-bad thing here \r\n");
  const parsed = parseReply(encoded);
  assert.ok(parsed);
  assert.equal(parsed.end, encoded.length);
  assert.ok(parsed.value instanceof RespErrorReply);
  assert.equal(parsed.value.message, "bad thing here ");
});

Deno.test("encodeError() leaves a message without line breaks as it is", () => {
  assert.equal(
    decoder.decode(encodeError("ERR no master for database")),
    "-ERR no master for database\r\n",
  );
});

Deno.test("parseReply() parses a simple string", () => {
  assert.deepEqual(parseText("+OK\r\n"), { value: "OK", end: 5 });
  assert.deepEqual(parseText("+\r\n"), { value: "", end: 3 });
});

Deno.test("parseReply() returns an error reply as a value with its code", () => {
  const parsed = parseText("-NOAUTH Authentication required.\r\n");
  assert.ok(parsed);
  assert.equal(parsed.end, 34);
  assert.ok(parsed.value instanceof RespErrorReply);
  assert.equal(parsed.value.message, "NOAUTH Authentication required.");
  assert.equal(parsed.value.code, "NOAUTH");
});

Deno.test("RespErrorReply.code is the first word, or the whole message without a space", () => {
  assert.equal(
    new RespErrorReply("IDONTKNOW I don't know").code,
    "IDONTKNOW",
  );
  assert.equal(new RespErrorReply("LOADING").code, "LOADING");
  assert.equal(new RespErrorReply("").code, "");
});

Deno.test("parseReply() parses integers", () => {
  assert.deepEqual(parseText(":1000\r\n"), { value: 1000, end: 7 });
  assert.deepEqual(parseText(":-42\r\n"), { value: -42, end: 6 });
  assert.deepEqual(parseText(":0\r\n"), { value: 0, end: 4 });
});

Deno.test("parseReply() parses a bulk string", () => {
  assert.deepEqual(parseText("$6\r\nfoobar\r\n"), { value: "foobar", end: 12 });
});

Deno.test("parseReply() parses an empty bulk string", () => {
  assert.deepEqual(parseText("$0\r\n\r\n"), { value: "", end: 6 });
});

Deno.test("parseReply() parses a null bulk string", () => {
  assert.deepEqual(parseText("$-1\r\n"), { value: null, end: 5 });
});

Deno.test("parseReply() keeps CRLF inside a bulk string", () => {
  assert.deepEqual(parseText("$8\r\nab\r\ncd\r\n\r\n"), {
    value: "ab\r\ncd\r\n",
    end: 14,
  });
});

Deno.test("parseReply() decodes a bulk string as UTF-8 using a byte length", () => {
  // "é" is 2 bytes, "😀" is 4.
  assert.deepEqual(parseText("$6\r\né😀\r\n"), { value: "é😀", end: 12 });
});

Deno.test("parseReply() parses an array of mixed types", () => {
  const parsed = parseText("*4\r\n:1\r\n+two\r\n$5\r\nthree\r\n$-1\r\n");
  assert.deepEqual(parsed, { value: [1, "two", "three", null], end: 30 });
});

Deno.test("parseReply() parses empty and null arrays", () => {
  assert.deepEqual(parseText("*0\r\n"), { value: [], end: 4 });
  assert.deepEqual(parseText("*-1\r\n"), { value: null, end: 5 });
});

Deno.test("parseReply() parses nested arrays", () => {
  // The shape of ROLE on a master: role, offset, and a list of replicas.
  const text = "*3\r\n$6\r\nmaster\r\n:3129659\r\n" +
    "*2\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9001\r\n$7\r\n3129242\r\n*0\r\n";
  assert.deepEqual(parseText(text), {
    value: ["master", 3129659, [["127.0.0.1", "9001", "3129242"], []]],
    end: bytes(text).length,
  });
  assert.deepEqual(parseText("*2\r\n*1\r\n*0\r\n*-1\r\n"), {
    value: [[[]], null],
    end: 17,
  });
});

Deno.test("parseReply() keeps error replies inside an array as values", () => {
  const parsed = parseText("*2\r\n-ERR one\r\n+two\r\n");
  assert.ok(parsed);
  const [first, second] = parsed.value as RespValue[];
  assert.ok(first instanceof RespErrorReply);
  assert.equal(first.code, "ERR");
  assert.equal(second, "two");
});

Deno.test("parseReply() starts at the given offset", () => {
  const buf = bytes("+OK\r\n:5\r\n$2\r\nhi\r\n");
  assert.deepEqual(parseReply(buf, 0), { value: "OK", end: 5 });
  assert.deepEqual(parseReply(buf, 5), { value: 5, end: 9 });
  assert.deepEqual(parseReply(buf, 9), { value: "hi", end: 17 });
  assert.equal(parseReply(buf, 17), undefined);
});

Deno.test("parseReply() parses a subarray that does not start at byte 0", () => {
  const whole = bytes("junk+PONG\r\n");
  assert.deepEqual(parseReply(whole.subarray(4)), { value: "PONG", end: 7 });
});

const MULTI_REPLY = "+OK\r\n" +
  "-ERR wrong\r\n" +
  ":-7\r\n" +
  "$0\r\n\r\n" +
  "$-1\r\n" +
  "$5\r\na\r\nbc\r\n" +
  "$5\r\né€\r\n" + // 2 + 3 bytes
  "*-1\r\n" +
  "*0\r\n" +
  "*3\r\n$9\r\n127.0.0.1\r\n*2\r\n:1\r\n*1\r\n+x\r\n-IDONTKNOW no\r\n";

function parseAll(buf: Uint8Array): { values: RespValue[]; offset: number } {
  const values: RespValue[] = [];
  let offset = 0;
  for (;;) {
    const reply = parseReply(buf, offset);
    if (reply === undefined) return { values, offset };
    values.push(reply.value);
    offset = reply.end;
  }
}

Deno.test("parseReply() returns undefined until the whole reply has arrived", () => {
  const full = bytes(MULTI_REPLY);
  const expected: { value: RespValue; end: number }[] = [];
  for (let offset = 0; offset < full.length;) {
    const reply = parseReply(full, offset);
    assert.ok(reply, `a complete reply at offset ${offset}`);
    expected.push(reply);
    offset = reply.end;
  }
  assert.equal(expected.length, 10);
  assert.equal(expected.at(-1)?.end, full.length);

  for (let cut = 0; cut <= full.length; cut++) {
    // A copy, so that no byte past the cut can be seen.
    const prefix = full.slice(0, cut);
    const complete = expected.filter((r) => r.end <= cut);
    let result;
    try {
      result = parseAll(prefix);
    } catch (error) {
      assert.fail(`cut at ${cut} threw ${error}`);
    }
    assert.deepEqual(
      result.values,
      complete.map((r) => r.value),
      `cut at ${cut}`,
    );
    assert.equal(result.offset, complete.at(-1)?.end ?? 0, `cut at ${cut}`);
  }
});

Deno.test("parseReply() returns undefined for every prefix of one nested reply", () => {
  const full = bytes("*2\r\n*2\r\n$3\r\nfoo\r\n:12\r\n$4\r\nb\r\nr\r\n");
  assert.deepEqual(parseReply(full), {
    value: [["foo", 12], "b\r\nr"],
    end: full.length,
  });
  for (let cut = 0; cut < full.length; cut++) {
    assert.equal(parseReply(full.slice(0, cut)), undefined, `cut at ${cut}`);
  }
});

Deno.test("parseReply() accepts the largest bulk length and waits for its bytes", () => {
  assert.equal(parseText(`$${CONTROL_LIMITS.maxBulkBytes}\r\nabc`), undefined);
});

Deno.test("parseReply() refuses a bulk string, array or nesting over its limits", () => {
  assert.throws(() => parseText(`$${CONTROL_LIMITS.maxBulkBytes + 1}\r\n`), {
    name: "RespProtocolError",
    message: `Cannot parse RESP bulk string: length ${
      CONTROL_LIMITS.maxBulkBytes + 1
    } is out of range -1..${CONTROL_LIMITS.maxBulkBytes}`,
  });
  assert.throws(() => parseText(`*${CONTROL_LIMITS.maxElements + 1}\r\n`), RespProtocolError);
  const nested = "*1\r\n".repeat(CONTROL_LIMITS.maxDepth + 1) + ":1\r\n";
  assert.throws(() => parseText(nested), {
    name: "RespProtocolError",
    message: `Cannot parse RESP array: nested deeper than ${CONTROL_LIMITS.maxDepth} levels`,
  });
  const deepest = "*1\r\n".repeat(CONTROL_LIMITS.maxDepth) + ":1\r\n";
  assert.ok(parseText(deepest) !== undefined);
  const small = { maxLineBytes: 8, maxBulkBytes: 4, maxElements: 2, maxDepth: 1 };
  assert.throws(() => parseReply(new TextEncoder().encode("*3\r\n"), 0, small), RespProtocolError);
  assert.throws(() => parseReply(new TextEncoder().encode("$5\r\n"), 0, small), RespProtocolError);
});

Deno.test("parseReply() refuses a line with no end once it passes the line limit", () => {
  const limit = CONTROL_LIMITS.maxLineBytes;
  // Up to the limit it may still end: wait for more bytes.
  assert.equal(parseText("+" + "a".repeat(limit)), undefined);
  assert.throws(() => parseText("+" + "a".repeat(limit + 3)), {
    name: "RespProtocolError",
    message: `Cannot parse RESP reply: a line is longer than ${limit} bytes`,
  });
  assert.deepEqual(parseText("+" + "a".repeat(limit) + "\r\n")?.value, "a".repeat(limit));
});

Deno.test("parseReply() throws RespProtocolError on an unknown type byte", () => {
  assert.throws(() => parseText("?foo\r\n"), {
    name: "RespProtocolError",
    message: 'Cannot parse RESP reply: unknown type byte "?"',
  });
  assert.throws(() => parseText("\r\n"), RespProtocolError);
  assert.throws(() => parseText("*2\r\n:1\r\nhello\r\n"), RespProtocolError);
});

Deno.test("parseReply() throws RespProtocolError on CR without LF", () => {
  assert.throws(() => parseText("+OK\rX\r\n"), {
    name: "RespProtocolError",
    message: "Cannot parse RESP reply: CR without LF",
  });
  assert.throws(() => parseText("$3\rabc\r\n"), RespProtocolError);
});

Deno.test("parseReply() throws RespProtocolError on a length out of range", () => {
  assert.throws(() => parseText("$-2\r\n"), {
    name: "RespProtocolError",
    message:
      `Cannot parse RESP bulk string: length -2 is out of range -1..${CONTROL_LIMITS.maxBulkBytes}`,
  });
  assert.throws(() => parseText("*-5\r\n"), {
    message: `Cannot parse RESP array: length -5 is out of range -1..${CONTROL_LIMITS.maxElements}`,
  });
  assert.throws(() => parseText("$67108865\r\n"), RespProtocolError);
  assert.throws(() => parseText("*99999999999\r\n"), RespProtocolError);
});

Deno.test("parseReply() throws RespProtocolError on a length that is not an integer", () => {
  assert.throws(() => parseText("$abc\r\n"), {
    name: "RespProtocolError",
    message: 'Cannot parse RESP bulk string length: "abc" is not an integer',
  });
  assert.throws(() => parseText("*\r\n"), {
    message: 'Cannot parse RESP array length: "" is not an integer',
  });
  assert.throws(() => parseText("$1.5\r\n"), RespProtocolError);
});

Deno.test("parseReply() throws RespProtocolError when a bulk string lacks its CRLF", () => {
  assert.throws(() => parseText("$3\r\nabcde"), {
    name: "RespProtocolError",
    message: "Cannot parse RESP bulk string: expected CRLF after 3 bytes",
  });
  assert.throws(() => parseText("$3\r\nabc\rX"), RespProtocolError);
  assert.throws(() => parseText("*1\r\n$1\r\nab\r\n"), RespProtocolError);
});

Deno.test("parseReply() throws RespProtocolError on an integer that is not an integer", () => {
  for (const text of [":12a", ":", ":1.5", ": 1", ":+1", ":--1"]) {
    assert.throws(
      () => parseText(`${text}\r\n`),
      (error) =>
        error instanceof RespProtocolError &&
        error instanceof Error &&
        error.message ===
          `Cannot parse RESP integer: ${JSON.stringify(text.slice(1))} is not an integer`,
      text,
    );
  }
});

Deno.test("parseReply() refuses a complete line longer than the line limit", () => {
  const limit = CONTROL_LIMITS.maxLineBytes;
  assert.throws(() => parseText("+" + "a".repeat(limit + 1) + "\r\n"), RespProtocolError);
  assert.throws(() => parseText("-" + "E".repeat(2 * limit) + "\r\n"), RespProtocolError);
});
