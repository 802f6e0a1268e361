/**
 * {@linkcode parseConfig}: JSONC text to a resolved config. The text is bounded
 * before it is parsed (its length, and how deep it nests, since the parser
 * recurses), and parsed strictly: a key given twice and a number too large to
 * hold are errors, with their line and column, not silently the last one or
 * `null`.
 *
 * @module
 */
import { createScanner, type JSONPath, printParseErrorCode, visit } from "jsonc-parser";
import type { TunnelConfig } from "../shared/settings.ts";
import { ConfigError } from "./config_error.ts";
import { describeParseError, formatPath } from "./messages.ts";
import { validateConfig } from "./resolve.ts";

/** The largest config accepted, in bytes of the file (and characters of text): 1 MiB. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * How deep objects and arrays may nest. A config nests five levels at most
 * (`databases[0].onMasterChange.command`); the limit keeps the parser's recursion
 * far from the stack's end.
 */
export const MAX_CONFIG_DEPTH = 32;

/** Options for {@linkcode parseConfig}. */
export interface ParseConfigOptions {
  /** Where environment variables named by `passwordEnv` are read. @default {Deno.env.get} */
  getEnv?: (name: string) => string | undefined;
  /** Reads the TLS files the config names. @default {readPemFileSync} */
  readTextFile?: (path: string) => string;
  /**
   * What relative TLS file paths are relative to. @default {Deno.cwd()}; {@linkcode loadConfig}
   * gives the config file's directory
   */
  baseDirectory?: string;
}

/**
 * Parses and resolves config text. `source` names the text in messages.
 *
 * @throws {ConfigError} when the text is not a valid config
 */
export function parseConfig(
  text: string,
  source: string,
  options: ParseConfigOptions = {},
): TunnelConfig {
  const getEnv = options.getEnv ?? ((name: string) => Deno.env.get(name));
  // Editors on Windows may save a byte order mark; it is no part of the JSON.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.length > MAX_CONFIG_BYTES) {
    throw new ConfigError(source, [
      `the config is ${text.length} characters long, over the limit of ${MAX_CONFIG_BYTES}: a config is a few kilobytes; check that this is the config`,
    ]);
  }
  const tooDeep = findTooDeep(text);
  if (tooDeep !== undefined) {
    throw new ConfigError(source, [
      `${tooDeep}: nested deeper than ${MAX_CONFIG_DEPTH} levels of objects and arrays: a config nests 5 at most; remove the extra brackets`,
    ]);
  }
  const parsed = parseStrictJsonc(text);
  if ("problems" in parsed) throw new ConfigError(source, parsed.problems);
  const raw = parsed.value;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(source, [
      'the config is a JSON object, such as { "sentinels": ["127.0.0.1:26379"], "databases": [{ "name": "mymaster", "port": 6380 }] }',
    ]);
  }
  const format = Object.hasOwn(raw, "Sentinels_addresses_list") || Object.hasOwn(raw, "Databases")
    ? "original"
    : "documented";
  const result = validateConfig(raw, format, {
    getEnv,
    ...(options.readTextFile === undefined ? {} : { readTextFile: options.readTextFile }),
    ...(options.baseDirectory === undefined ? {} : { baseDirectory: options.baseDirectory }),
  });
  if ("problems" in result) throw new ConfigError(source, result.problems);
  return result.config;
}

// jsonc-parser's SyntaxKind, a const enum in its types.
const OPEN_BRACE = 1;
const CLOSE_BRACE = 2;
const OPEN_BRACKET = 3;
const CLOSE_BRACKET = 4;
const EOF = 17;

/** `line:col` of the first bracket that opens a level past the limit, if any. */
function findTooDeep(text: string): string | undefined {
  // The scanner does not recurse, and skips strings and comments.
  const scanner = createScanner(text, true);
  let depth = 0;
  for (let token = scanner.scan(); token !== EOF; token = scanner.scan()) {
    if (token === OPEN_BRACE || token === OPEN_BRACKET) {
      if (++depth > MAX_CONFIG_DEPTH) {
        return `${scanner.getTokenStartLine() + 1}:${scanner.getTokenStartCharacter() + 1}`;
      }
    } else if ((token === CLOSE_BRACE || token === CLOSE_BRACKET) && depth > 0) depth--;
  }
  return undefined;
}

type Container = Record<string, unknown> | unknown[];

/**
 * The value of JSONC text, or its problems, each `line:col: ...`: the first
 * syntax error alone, else every key given twice and every number too large.
 */
function parseStrictJsonc(text: string): { value: unknown } | { problems: string[] } {
  let syntaxError: string | undefined;
  const problems: string[] = [];
  const root: unknown[] = [];
  let parent: Container = root;
  let property: string | undefined;
  /** Per open object, where each of its keys was first given. */
  let keys = new Map<string, string>();
  const outer: { parent: Container; keys: Map<string, string> }[] = [];
  const put = (value: unknown) => {
    if (Array.isArray(parent)) parent.push(value);
    // Deno has no `__proto__` setter, so "__proto__" is a key like any other (which the schema
    // refuses), not the prototype.
    else if (property !== undefined) parent[property] = value;
  };
  const open = (container: Container) => {
    put(container);
    outer.push({ parent, keys });
    parent = container;
    keys = new Map();
    property = undefined;
  };
  const close = () => {
    ({ parent, keys } = outer.pop()!);
  };
  const where = (path: JSONPath) => {
    const text = formatPath(path);
    return text === "" ? "top level" : text;
  };
  visit(text, {
    onObjectBegin: () => open({}),
    onObjectEnd: close,
    onArrayBegin: () => open([]),
    onArrayEnd: close,
    onObjectProperty(name, _offset, _length, line, character, path) {
      const at = `${line + 1}:${character + 1}`;
      const first = keys.get(name);
      if (first === undefined) keys.set(name, at);
      else {
        problems.push(
          `${at}: ${where([...path(), name])}: the key ${
            JSON.stringify(name).slice(0, 60)
          } is given twice, also at ${first}: keep one of them`,
        );
      }
      property = name;
    },
    onLiteralValue(value, offset, length, line, character, path) {
      if (typeof value === "number" && !Number.isFinite(value)) {
        const fullPath = path();
        const secret = fullPath.some((part) => typeof part === "string" && /auth$/i.test(part));
        const literal = text.slice(offset, offset + Math.min(length, 40)) +
          (length > 40 ? "..." : "");
        problems.push(
          `${line + 1}:${character + 1}: ${where(fullPath)}: ${
            secret ? "<redacted>" : literal
          } is not valid: the number is too large to hold; write one below 1e308, such as 6380`,
        );
      }
      put(value);
    },
    onError(error, _offset, _length, line, character) {
      syntaxError ??= `${line + 1}:${character + 1}: syntax error: ${
        describeParseError(printParseErrorCode(error))
      }`;
    },
  }, { allowTrailingComma: true, disallowComments: false });
  if (syntaxError !== undefined) return { problems: [syntaxError] };
  if (problems.length > 0) return { problems };
  return { value: root[0] };
}
