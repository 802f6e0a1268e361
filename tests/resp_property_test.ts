/**
 * Properties of the control plane's RESP codec, over generated values and
 * arbitrary bytes: what is encoded parses back, a reply split anywhere waits
 * for more bytes, and no input makes the parser do anything but return a
 * value, ask for more, or throw RespProtocolError.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  CONTROL_LIMITS,
  encodeCommand,
  parseReply,
  RespErrorReply,
  RespProtocolError,
  type RespValue,
} from "../src/control/resp.ts";

const encoder = new TextEncoder();

/** Encodes a reply the way a server would (the codec only encodes commands). */
function encodeReply(value: RespValue): string {
  if (value === null) return "$-1\r\n";
  if (typeof value === "number") return `:${value}\r\n`;
  if (typeof value === "string") return `$${encoder.encode(value).length}\r\n${value}\r\n`;
  if (value instanceof RespErrorReply) return `-${value.message}\r\n`;
  return `*${value.length}\r\n${value.map(encodeReply).join("")}`;
}

/** Replies as Sentinel and Redis send them: strings, integers, nulls, errors, nested arrays. */
const reply: fc.Arbitrary<RespValue> = fc.letrec<{ value: RespValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.string({ unit: "grapheme", maxLength: 40 }),
    fc.integer(),
    fc.constant(null),
    fc.stringMatching(/^[A-Z]{1,10}( [ -~]{0,30})?$/).map((m) => new RespErrorReply(m)),
    fc.array(tie("value"), { maxLength: 6 }),
  ),
})).value;

Deno.test("parseReply() reads back every encoded reply, whole and after a prefix", () => {
  fc.assert(
    fc.property(reply, fc.string({ maxLength: 10 }), (value, junk) => {
      const bytes = encoder.encode(encodeReply(value));
      assert.deepEqual(parseReply(bytes), { value, end: bytes.length });
      // Parsing from an offset leaves what comes before alone.
      const prefix = encoder.encode(encodeReply(junk));
      const both = new Uint8Array(prefix.length + bytes.length);
      both.set(prefix);
      both.set(bytes, prefix.length);
      assert.deepEqual(parseReply(both, prefix.length), { value, end: both.length });
    }),
  );
});

Deno.test("parseReply() waits for more bytes at every cut of a reply", () => {
  fc.assert(
    fc.property(reply, fc.nat(), (value, at) => {
      const bytes = encoder.encode(encodeReply(value));
      const cut = at % bytes.length;
      assert.equal(parseReply(bytes.subarray(0, cut)), undefined);
    }),
  );
});

Deno.test("encodeCommand() output parses back into the same strings", () => {
  fc.assert(
    fc.property(
      fc.array(fc.string({ unit: "grapheme", maxLength: 30 }), { maxLength: 8 }),
      (args) => {
        assert.deepEqual(parseReply(encodeCommand(args))?.value, args);
      },
    ),
  );
});

Deno.test("parseReply() on arbitrary bytes returns, waits, or throws RespProtocolError only", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }),
        // Mostly well-formed headers with hostile lengths, depths and contents.
        fc.array(
          fc.oneof(
            fc.constantFrom("*", "$", ":", "+", "-").chain((type) =>
              fc.oneof(fc.integer({ min: -3, max: 20 }), fc.constant(2 ** 40)).map((n) =>
                `${type}${n}\r\n`
              )
            ),
            fc.string({ maxLength: 12 }).map((s) => `${s}\r\n`),
          ),
          { maxLength: 30 },
        ).map((parts) => encoder.encode(parts.join(""))),
      ),
      (bytes) => {
        try {
          const parsed = parseReply(bytes);
          if (parsed !== undefined) assert.ok(parsed.end > 0 && parsed.end <= bytes.length);
        } catch (error) {
          assert.ok(error instanceof RespProtocolError, `threw ${String(error)}`);
        }
      },
    ),
  );
});

Deno.test("parseReply() refuses what passes the limits, however it is built", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 50 }), (extra) => {
      const deep = "*1\r\n".repeat(CONTROL_LIMITS.maxDepth + extra) + ":1\r\n";
      assert.throws(() => parseReply(encoder.encode(deep)), RespProtocolError);
      const wide = `*${CONTROL_LIMITS.maxElements + extra}\r\n`;
      assert.throws(() => parseReply(encoder.encode(wide)), RespProtocolError);
      const long = `$${CONTROL_LIMITS.maxBulkBytes + extra}\r\n`;
      assert.throws(() => parseReply(encoder.encode(long)), RespProtocolError);
    }),
  );
});
