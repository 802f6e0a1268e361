/**
 * Structured logs: text lines for people, JSON lines for machines, to stderr
 * or to a file. Passwords never reach a log record: the code logs addresses,
 * names and causes only.
 *
 * @module
 */
import { configureSync, type LogLevel, type LogRecord, type Sink } from "@logtape/logtape";

/** The levels `--log-level` takes. */
export const LOG_LEVELS = ["debug", "info", "warning", "error"] as const;

/** Options for {@linkcode setupLogging}. */
export interface LoggingOptions {
  /** The lowest level written. @default {"info"} */
  level?: LogLevel;
  /** `text` for people, `json` for one JSON object a line. */
  format: "text" | "json";
  /** Append to this file instead of writing to stderr. */
  file?: string | undefined;
}

/**
 * Sends every log record to stderr or to a file.
 *
 * @throws {Deno.errors.NotFound | Deno.errors.PermissionDenied} when the file cannot be opened
 */
export function setupLogging(options: LoggingOptions): void {
  const encoder = new TextEncoder();
  const output = options.file === undefined
    ? Deno.stderr
    : Deno.openSync(options.file, { append: true, create: true });
  const formatter = options.format === "json" ? formatJson : formatText;
  const sink: Sink = (record: LogRecord) => {
    try {
      output.writeSync(encoder.encode(formatter(record)));
    } catch {
      // A full disk or a closed stderr must not stop the tunnel.
    }
  };
  configureSync({
    reset: true,
    sinks: { main: sink },
    loggers: [
      {
        category: ["sentinel-tunnel"],
        sinks: ["main"],
        lowestLevel: options.level ?? "info",
      },
      {
        category: ["logtape", "meta"],
        sinks: ["main"],
        lowestLevel: "warning",
      },
    ],
  });
}

/** The message with its values in place; strings go in bare, not quoted. */
function renderMessage(record: LogRecord): string {
  let text = "";
  record.message.forEach((part, i) => {
    text += i % 2 === 0 || typeof part === "string"
      ? String(part)
      : JSON.stringify(part) ?? String(part);
  });
  return text;
}

/** `2026-01-02T03:04:05.678Z warning Database mymaster: ...` */
function formatText(record: LogRecord): string {
  return `${new Date(record.timestamp).toISOString()} ${record.level.padEnd(7)} ${
    renderMessage(record)
  }\n`;
}

/** One JSON object a line, with the message's values as fields of their own. */
function formatJson(record: LogRecord): string {
  return JSON.stringify({
    time: new Date(record.timestamp).toISOString(),
    level: record.level,
    logger: record.category.join("."),
    message: renderMessage(record),
    ...record.properties,
  }) + "\n";
}
