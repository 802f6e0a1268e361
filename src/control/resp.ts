/**
 * A small RESP2 codec for the control plane: it encodes commands and parses
 * replies incrementally. The data path never parses RESP; it only copies bytes.
 *
 * Parsing keeps "need more bytes" (`undefined`) apart from "protocol error"
 * (a thrown {@linkcode RespProtocolError}).
 *
 * @module
 */

/** An error reply from the server, such as `-IDONTKNOW ...`. It is a value, not a throw. */
export class RespErrorReply {
  /** The whole message, such as `NOAUTH Authentication required.`. */
  readonly message: string;
  constructor(message: string) {
    this.message = message;
  }
  /** The first word of the message, such as `NOAUTH` or `IDONTKNOW`. */
  get code(): string {
    const space = this.message.indexOf(" ");
    return space === -1 ? this.message : this.message.slice(0, space);
  }
}

/** A parsed RESP2 reply. Bulk strings are decoded as UTF-8. */
export type RespValue =
  | string
  | number
  | null
  | RespErrorReply
  | RespValue[];

/** The bytes received do not follow RESP. The connection cannot be used any more. */
export class RespProtocolError extends Error {
  override name = "RespProtocolError";
}

/** A reply and the offset just past it. */
export interface ParsedReply {
  value: RespValue;
  end: number;
}

const CR = 13;
const LF = 10;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * What one reply may hold. A peer that sends more is broken or hostile: the
 * parse fails with a {@linkcode RespProtocolError} and only that connection ends.
 */
export interface RespLimits {
  /** The longest line (a status, an error, a length header), CRLF excluded. */
  readonly maxLineBytes: number;
  /** The largest bulk string. */
  readonly maxBulkBytes: number;
  /** The most elements in one array. */
  readonly maxElements: number;
  /** How deep arrays may nest. */
  readonly maxDepth: number;
}

/**
 * Limits for the control plane: Sentinel and ROLE replies are a few KiB; the
 * largest real ones (`SENTINEL replicas` of a big deployment) stay far below.
 */
export const CONTROL_LIMITS: RespLimits = Object.freeze({
  maxLineBytes: 64 * 1024,
  maxBulkBytes: 1024 * 1024,
  maxElements: 4096,
  maxDepth: 8,
});

/** Encodes a command as a RESP array of bulk strings. */
export function encodeCommand(args: readonly string[]): Uint8Array {
  let text = `*${args.length}\r\n`;
  for (const arg of args) {
    text += `$${encoder.encode(arg).length}\r\n${arg}\r\n`;
  }
  return encoder.encode(text);
}

/**
 * Parses one reply from `buf` starting at `start`.
 *
 * @returns the reply and where it ends, or `undefined` when more bytes are needed
 * @throws {RespProtocolError} when the bytes are not RESP
 */
export function parseReply(
  buf: Uint8Array,
  start = 0,
  limits: RespLimits = CONTROL_LIMITS,
): ParsedReply | undefined {
  return parseAt(buf, start, limits, 0);
}

function parseAt(
  buf: Uint8Array,
  start: number,
  limits: RespLimits,
  depth: number,
): ParsedReply | undefined {
  const lineEnd = findLineEnd(buf, start, limits.maxLineBytes);
  if (lineEnd === -1) return undefined;
  const type = buf[start];
  const line = decoder.decode(buf.subarray(start + 1, lineEnd));
  const next = lineEnd + 2;
  switch (type) {
    case 0x2b: // '+'
      return { value: line, end: next };
    case 0x2d: // '-'
      return { value: new RespErrorReply(line), end: next };
    case 0x3a: // ':'
      return { value: parseInteger(line, "integer"), end: next };
    case 0x24: { // '$'
      const length = parseLength(line, "bulk string", limits.maxBulkBytes);
      if (length === -1) return { value: null, end: next };
      if (buf.length < next + length + 2) return undefined;
      if (buf[next + length] !== CR || buf[next + length + 1] !== LF) {
        throw new RespProtocolError(
          `Cannot parse RESP bulk string: expected CRLF after ${length} bytes`,
        );
      }
      return {
        value: decoder.decode(buf.subarray(next, next + length)),
        end: next + length + 2,
      };
    }
    case 0x2a: { // '*'
      const count = parseLength(line, "array", limits.maxElements);
      if (count === -1) return { value: null, end: next };
      if (count > 0 && depth + 1 > limits.maxDepth) {
        throw new RespProtocolError(
          `Cannot parse RESP array: nested deeper than ${limits.maxDepth} levels`,
        );
      }
      const items: RespValue[] = [];
      let offset = next;
      for (let i = 0; i < count; i++) {
        const item = parseAt(buf, offset, limits, depth + 1);
        if (item === undefined) return undefined;
        items.push(item.value);
        offset = item.end;
      }
      return { value: items, end: offset };
    }
    default:
      throw new RespProtocolError(
        `Cannot parse RESP reply: unknown type byte ${
          JSON.stringify(String.fromCharCode(type ?? 0))
        }`,
      );
  }
}

function findLineEnd(buf: Uint8Array, start: number, maxLineBytes: number): number {
  // The type byte and CRLF come on top of the line itself.
  const limit = Math.min(buf.length - 1, start + maxLineBytes + 2);
  for (let i = start; i < limit; i++) {
    if (buf[i] === CR) {
      if (buf[i + 1] === LF) return i;
      throw new RespProtocolError("Cannot parse RESP reply: CR without LF");
    }
  }
  if (buf.length - start > maxLineBytes + 2) {
    throw new RespProtocolError(
      `Cannot parse RESP reply: a line is longer than ${maxLineBytes} bytes`,
    );
  }
  return -1;
}

function parseInteger(text: string, what: string): number {
  if (!/^-?\d+$/.test(text)) {
    throw new RespProtocolError(
      `Cannot parse RESP ${what}: ${JSON.stringify(text)} is not an integer`,
    );
  }
  return Number(text);
}

function parseLength(text: string, what: string, max: number): number {
  const length = parseInteger(text, `${what} length`);
  if (length < -1 || length > max) {
    throw new RespProtocolError(
      `Cannot parse RESP ${what}: length ${length} is out of range -1..${max}`,
    );
  }
  return length;
}
