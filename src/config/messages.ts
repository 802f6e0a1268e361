/**
 * The words of config errors: a field path as the operator wrote it, a value
 * shortened and never a secret, the known key nearest to a misspelt one, and
 * the parser's codes in plain English.
 *
 * @module
 */
import { z } from "zod";

/** How a field path is written in messages, such as `databases[0].port`. */
export type DescribePath = (path: readonly PropertyKey[]) => string;

/** A path as written in a file: `databases[0].port`; `""` at the top level. */
export function formatPath(path: readonly PropertyKey[]): string {
  let text = "";
  for (const part of path) {
    text += typeof part === "number"
      ? `[${part}]`
      : text === ""
      ? String(part)
      : `.${String(part)}`;
  }
  return text;
}

/** One line for a zod issue: where, the value (or `<redacted>` under credentials) and the rule. */
export function describeIssue(
  issue: z.core.$ZodIssue,
  raw: unknown,
  schema: z.ZodType,
  describePath: DescribePath = formatPath,
): string[] {
  const path = describePath(issue.path);
  const where = path === "" ? "top level" : path;
  if (issue.code === "unrecognized_keys") {
    const known = knownKeys(schema, issue.path);
    return issue.keys.map((key) => {
      const near = nearest(key, known);
      return `${where}: unknown key ${describeValue(key)}${
        near === undefined ? "" : `: did you mean ${JSON.stringify(near)}?`
      }${known.length > 0 ? ` (known keys: ${known.join(", ")})` : ""}`;
    });
  }
  if (issue.code === "invalid_union") {
    // `false` or an object: when the value is an object, its own problems say more than the
    // union's rule does.
    const matched = issue.errors.filter((issues) =>
      issues.some((inner) =>
        inner.path.length > 0 || (inner.code !== "invalid_type" && inner.code !== "invalid_value")
      )
    );
    if (matched.length === 1) {
      return matched[0]!.flatMap((inner) =>
        describeIssue(
          { ...inner, path: [...issue.path, ...inner.path] } as z.core.$ZodIssue,
          raw,
          schema,
          describePath,
        )
      );
    }
  }
  const value = valueAt(raw, issue.path);
  if (value === undefined) return [`${where}: missing: ${issue.message}`];
  // Credentials may hold a password, even when misplaced: never echo them.
  const secret = issue.path.some((part) => typeof part === "string" && /auth$/i.test(part));
  return [
    `${where}: ${secret ? "<redacted>" : describeShape(value)} is not valid: ${issue.message}`,
  ];
}

/**
 * A scalar as JSON; an object or a list by its shape only, since one may hold a
 * password at any depth (`{"masterAuth":{"password":...}}` where a list was due).
 */
function describeShape(value: unknown): string {
  if (!holdsObject(value)) return describeValue(value);
  if (Array.isArray(value)) return `a list of ${value.length} item${value.length === 1 ? "" : "s"}`;
  if (typeof value === "object" && value !== null) {
    const keys = Object.keys(value);
    const shown = keys.slice(0, 5).map((key) => describeValue(key)).join(", ");
    return keys.length === 0
      ? "an empty object"
      : `an object with keys ${shown}${keys.length > 5 ? ` and ${keys.length - 5} more` : ""}`;
  }
  return describeValue(value);
}

/** Whether an object is `value` or anywhere in it (a list of lists of scalars holds none). */
function holdsObject(value: unknown, depth = 0): boolean {
  if (Array.isArray(value)) return depth > 32 || value.some((item) => holdsObject(item, depth + 1));
  return typeof value === "object" && value !== null;
}

/** A value as JSON, cut to 60 characters so that one line stays one line. */
export function describeValue(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let value = raw;
  for (const part of path) {
    if (typeof value !== "object" || value === null || !Object.hasOwn(value, part)) {
      return undefined;
    }
    value = (value as Record<PropertyKey, unknown>)[part];
  }
  return value;
}

function knownKeys(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let node: unknown = schema;
  for (const part of [...path, undefined]) {
    for (;;) {
      if (node instanceof z.ZodOptional || node instanceof z.ZodDefault) {
        node = node.unwrap();
      } else if (node instanceof z.ZodPipe) node = node.in;
      else if (node instanceof z.ZodUnion) {
        // `false` or an object: the object's keys.
        const objects = node.options.filter((option: unknown) => option instanceof z.ZodObject);
        if (objects.length !== 1) break;
        node = objects[0];
      } else break;
    }
    if (part === undefined) break;
    if (node instanceof z.ZodArray) node = node.element;
    else if (node instanceof z.ZodObject) node = node.shape[part as string];
    else return [];
  }
  return node instanceof z.ZodObject ? Object.keys(node.shape).filter((k) => k !== "$schema") : [];
}

/** The known name closest to `name`, if it is close enough to be a likely typo. */
export function nearest(name: string, known: readonly string[]): string | undefined {
  // Past this length a name is no typo of a short key, and the distance costs length squared.
  if (name.length > 100) return undefined;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** A jsonc-parser error code (`printParseErrorCode`) in plain words. */
export function describeParseError(code: string): string {
  const descriptions: Record<string, string> = {
    InvalidSymbol: "unexpected character",
    InvalidNumberFormat: "malformed number",
    PropertyNameExpected: "expected a property name in double quotes",
    ValueExpected: "expected a value",
    ColonExpected: "expected ':'",
    CommaExpected: "expected ',' between entries",
    CloseBraceExpected: "expected '}'",
    CloseBracketExpected: "expected ']'",
    EndOfFileExpected: "unexpected text after the end of the config",
    InvalidCommentToken: "malformed comment",
    UnexpectedEndOfComment: "comment is not closed",
    UnexpectedEndOfString: "string is not closed",
    UnexpectedEndOfNumber: "number is not complete",
    InvalidUnicode: "invalid unicode escape",
    InvalidEscapeCharacter: "invalid escape character",
    InvalidCharacter: "invalid character in string",
  };
  return descriptions[code] ?? code;
}
