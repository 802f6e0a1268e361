/**
 * The one RESP reply the data plane writes itself: the error a client gets
 * when it cannot be tunnelled. Everything else on the data path is copied.
 *
 * @module
 */

const encoder = new TextEncoder();

/** Encodes an error reply; line breaks in the message are replaced with spaces. */
export function encodeError(message: string): Uint8Array {
  return encoder.encode(`-${message.replace(/[\r\n]+/g, " ")}\r\n`);
}
