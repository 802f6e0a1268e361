/**
 * Structured logs: text lines for people, JSON lines for machines, to stderr
 * or to a file. Passwords never reach a log record: the code logs addresses,
 * names and causes only.
 *
 * Logging never blocks the tunnels: a synchronous write to a pipe nobody reads
 * froze every tunnel. Lines go through LogTape's stream sink in non-blocking
 * mode into a queue of at most 1 MiB, written out by async writes, which wait
 * off the event loop. A reader that stops reading (a stuck pipe, a frozen
 * collector) loses the oldest lines past that, counted in
 * {@linkcode logLinesDropped} and reported in one line once it reads again.
 * A line repeated word for word more than 10 times in 10 s is folded into a
 * count. In text, every control character of a value is escaped, so a value
 * (a host name, a Sentinel's payload) cannot forge a line.
 *
 * @module
 */
import {
  configure,
  dispose,
  getJsonLinesFormatter,
  getLogger,
  getStreamSink,
  getTextFormatter,
  getThrottlingFilter,
  type LogLevel,
  type LogRecord,
  type SanitizationOptions,
  sanitizeControlSequences,
  type TextFormatter,
  type ThrottlingSummaryLogger,
} from "@logtape/logtape";

/** The levels `--log-level` takes. */
export const LOG_LEVELS = ["debug", "info", "warning", "error"] as const;

/** Where log bytes go: stderr, a file, or a test's own writer. */
export interface LogOutput {
  write(bytes: Uint8Array): Promise<number>;
}

/** Options for {@linkcode setupLogging}. */
export interface LoggingOptions {
  /** The lowest level written. @default {"info"} */
  level?: LogLevel;
  /** `text` for people, `json` for one JSON object a line. */
  format: "text" | "json";
  /** Append to this file instead of writing to stderr. */
  file?: string | undefined;
  /** Write here instead of stderr or the file; for tests. @default {Deno.stderr} */
  output?: LogOutput;
  /**
   * Bytes of lines that may wait for a slow reader; past that the oldest are
   * dropped. @default {1048576}
   */
  bufferBytes?: number;
  /** How often LogTape formats the records logged since the last time. @default {100} */
  flushIntervalMs?: number;
}

/**
 * Records LogTape holds between two flushes. It hands every line to the
 * output queue at once, so only a burst of more than twice this many within
 * one flush interval overflows it.
 */
const RECORD_BATCH = 1000;

/** Identical lines allowed per window before they are folded into a count. */
const REPEAT_LIMIT = 10;
const REPEAT_WINDOW_MS = 10_000;

/** Every character a terminal or a line-splitting reader might act on is escaped. */
const ESCAPE_ALL: SanitizationOptions = { newlines: "escape", sgr: "escape" };

let droppedLines = 0;
let unreportedLines = 0;
let reportTimer: ReturnType<typeof setTimeout> | undefined;
let reportDelayMs = 200;
let closeFile: (() => void) | undefined;
let configured = false;

/** Log lines lost since the process started: dropped for a stuck reader, or failed to write. */
export function logLinesDropped(): number {
  return droppedLines;
}

/**
 * Sends every log record to stderr or to a file, without ever blocking.
 *
 * @throws {Deno.errors.NotFound | Deno.errors.PermissionDenied} when the file cannot be opened
 */
export async function setupLogging(options: LoggingOptions): Promise<void> {
  const file = options.output === undefined && options.file !== undefined
    ? Deno.openSync(options.file, { append: true, create: true })
    : undefined;
  const output = options.output ?? file ?? Deno.stderr;
  const flushInterval = options.flushIntervalMs ?? 100;
  await stopLogging();
  closeFile = file && (() => file.close());
  unreportedLines = 0;
  // LogTape counts drops on a timer a flush interval late: wait for the tail, then report once.
  reportDelayMs = 2 * flushInterval;
  const queue = new OutputQueue(output, options.bufferBytes ?? 1024 * 1024);
  const sink = getStreamSink(queue.writable(), {
    formatter: options.format === "json" ? formatJson : formatText,
    nonBlocking: {
      bufferSize: RECORD_BATCH,
      flushInterval,
      onDrop: (event) => countLost(event.count),
      onError: (event) => {
        if (event.operation !== "close") countLost(1);
      },
    },
  });
  await configure({
    reset: true,
    sinks: { main: sink },
    filters: {
      repeats: getThrottlingFilter({
        limit: REPEAT_LIMIT,
        windowMs: REPEAT_WINDOW_MS,
        // Only identical lines are repeats: one per rejected client is not.
        key: (record) =>
          `${record.level} ${record.category.join(".")} ${renderMessage(record, jsonValue)}`,
        maxKeys: 256,
        summary: {
          logger: summaryLogger(),
          level: "info",
          message: "Folded {suppressed} repeats of: {line}",
        },
      }),
    },
    loggers: [
      {
        category: ["sentinel-tunnel"],
        sinks: ["main"],
        filters: ["repeats"],
        lowestLevel: options.level ?? "info",
      },
      {
        category: ["logtape", "meta"],
        sinks: ["main"],
        lowestLevel: "warning",
      },
    ],
  });
  configured = true;
}

/**
 * Writes what is waiting, for at most `timeoutMs`: a stuck reader must not
 * keep the process from exiting. Then stops logging.
 */
export async function flushLogs(timeoutMs = 1000): Promise<void> {
  if (!configured) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    stopLogging(),
    new Promise((resolve) => timer = setTimeout(resolve, timeoutMs)),
  ]);
  clearTimeout(timer);
}

async function stopLogging(): Promise<void> {
  clearTimeout(reportTimer);
  reportTimer = undefined;
  if (configured) {
    configured = false;
    await dispose();
  }
  closeFile?.();
  closeFile = undefined;
}

function countLost(count: number): void {
  droppedLines += count;
  unreportedLines += count;
}

/** A line reached the reader, so it reads again: say once how many were lost meanwhile. */
function onWritten(): void {
  if (unreportedLines === 0 || reportTimer !== undefined) return;
  reportTimer = setTimeout(() => {
    reportTimer = undefined;
    const dropped = unreportedLines;
    unreportedLines = 0;
    getLogger(["sentinel-tunnel", "log"]).warning(
      "Dropped {dropped} log lines while the log reader was stuck, too slow, or failing",
      { dropped },
    );
  }, reportDelayMs);
}

/**
 * Formatted lines on their way to the output, at most `maxBytes` of them.
 * LogTape hands every line over at once, so it never waits for the reader;
 * when the reader falls behind, the oldest lines are dropped here. A failed
 * write (a full disk, a closed stderr) loses its line, and the next is tried.
 */
class OutputQueue {
  readonly #output: LogOutput;
  readonly #maxBytes: number;
  readonly #lines: Uint8Array[] = [];
  #bytes = 0;
  #writing: Promise<void> | undefined;

  constructor(output: LogOutput, maxBytes: number) {
    this.#output = output;
    this.#maxBytes = maxBytes;
  }

  /** A stream for LogTape's sink that queues each line and never makes it wait. */
  writable(): WritableStream<Uint8Array> {
    return new WritableStream({
      write: (line) => this.#push(line),
      close: () => this.#writing,
    });
  }

  #push(line: Uint8Array): void {
    if (line.length > this.#maxBytes) return countLost(1);
    this.#lines.push(line);
    this.#bytes += line.length;
    let lost = 0;
    while (this.#bytes > this.#maxBytes) {
      this.#bytes -= this.#lines.shift()!.length;
      lost++;
    }
    if (lost > 0) countLost(lost);
    this.#writing ??= this.#drain();
  }

  async #drain(): Promise<void> {
    try {
      for (let line; (line = this.#lines.shift()) !== undefined;) {
        this.#bytes -= line.length;
        try {
          for (let done = 0; done < line.length;) {
            done += await this.#output.write(line.subarray(done));
          }
        } catch {
          countLost(1);
          continue;
        }
        onWritten();
      }
    } finally {
      this.#writing = undefined;
    }
  }
}

/** Summaries without the folded records, which would repeat the line twice in JSON. */
function summaryLogger(): ThrottlingSummaryLogger {
  const log = getLogger(["sentinel-tunnel", "log"]);
  return {
    info(message, properties) {
      // The rest keeps LogTape's symbol that lets the summary past the filter it comes from.
      const { firstRecord: _first, lastRecord: _last, key, startTime: _s, endTime: _e, ...rest } =
        properties;
      log.info(message, { ...rest, line: key });
    },
  };
}

/** A value in text: strings bare, the rest as JSON, every control character escaped. */
function renderValue(value: unknown): string {
  const text = jsonValue(value);
  // LogTape leaves tabs alone; they are C0 too, and a column-splitting reader would act on them.
  return sanitizeControlSequences(text, ESCAPE_ALL).replaceAll("\t", "\\t");
}

/** JSON for the values of a JSON line, where the line's own encoding escapes them. */
function jsonValue(value: unknown): string {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** The message with its values in place; strings go in bare, not quoted. */
function renderMessage(record: LogRecord, render: (value: unknown) => string): string {
  let text = "";
  record.message.forEach((part, i) => {
    text += i % 2 === 0 ? String(part) : render(part);
  });
  return text;
}

/** `2026-01-02T03:04:05.678Z warning Database mymaster: ...` */
const formatText: TextFormatter = getTextFormatter({
  timestamp: "rfc3339",
  level: "full",
  value: renderValue,
  sanitize: ESCAPE_ALL,
  format: ({ timestamp, level, message }) => `${timestamp} ${level.padEnd(7)} ${message}`,
});

const jsonLines = getJsonLinesFormatter({ properties: "flatten", categorySeparator: "." });

/**
 * One JSON object a line: `@timestamp`, `level`, `logger`, `message`, and the
 * message's values as fields of their own. The message is rendered as in text
 * (strings bare); JSON escapes its control characters.
 */
function formatJson(record: LogRecord): string {
  return jsonLines({ ...record, message: [renderMessage(record, jsonValue)] });
}
