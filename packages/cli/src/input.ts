import {
  CloudEvent,
  isAttributeName,
  isContextAttribute,
  isPosthornError,
  malformed,
  PosthornError,
  parseJson,
  utf8Decode,
  utf8Encode,
} from "@posthorn/core";
import { json } from "@posthorn/format-json";

/**
 * Reads events written in the CloudEvents JSON event format: one event, a JSON batch (an array),
 * or JSON lines (one event per line; blank lines are skipped).
 *
 * @param text - the input
 * @param source - where it came from, for error messages (`stdin`, a file name)
 * @returns the events, validated
 * @throws {@link PosthornError} `MalformedInput` or `InvalidEvent`, naming the line for JSON lines
 */
export function parseEventsText(text: string, source = "input"): CloudEvent[] {
  const trimmed = text.trim();
  if (trimmed === "") throw malformed(`${source} is empty: expected a CloudEvent in JSON`);
  const bytes = utf8Encode(trimmed);
  if (trimmed.startsWith("[")) {
    let events: CloudEvent[];
    try {
      events = json.decodeBatch(bytes);
    } catch (err) {
      throw prefixed(err, `${source}: not a JSON batch of CloudEvents`);
    }
    // Sending nothing and exiting 0 would hide an input that went wrong, as an empty one would.
    if (events.length === 0) throw malformed(`${source} is an empty batch: expected CloudEvents`);
    return events;
  }
  try {
    return [json.decode(bytes)];
  } catch (whole) {
    const lines = trimmed.split(/\r?\n/);
    // One JSON value over several lines (a pretty-printed event) is one event: say what is wrong
    // with it, not that its first line is not JSON.
    if (lines.length === 1 || isOneJsonValue(trimmed)) {
      throw prefixed(whole, `${source}: not a CloudEvent`);
    }
    const events: CloudEvent[] = [];
    for (const [i, line] of lines.entries()) {
      if (line.trim() === "") continue;
      try {
        events.push(json.decode(utf8Encode(line)));
      } catch (err) {
        throw prefixed(err, `${source} line ${i + 1}: not a CloudEvent`);
      }
    }
    return events;
  }
}

function isOneJsonValue(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function prefixed(err: unknown, what: string): PosthornError {
  if (isPosthornError(err)) {
    return new PosthornError(err.code, `${what}: ${err.message}`, {
      cause: err,
      ...(err.attribute === undefined ? {} : { attribute: err.attribute }),
    });
  }
  return malformed(`${what}: ${err instanceof Error ? err.message : String(err)}`, err);
}

/** What {@link buildEvent} takes: the `--type`, `--source`, `--data`, ... options of `send`. */
export interface BuildEventOptions {
  /** The event `type` (`--type`); required. */
  type?: string | undefined;
  /** The event `source` (`--source`); required. */
  source?: string | undefined;
  /** The event `id` (`--id`); a random UUID when absent. */
  id?: string | undefined;
  /** The event `subject` (`--subject`). */
  subject?: string | undefined;
  /**
   * The `datacontenttype` (`--datacontenttype`); with `data` and none given, `application/json`
   * when the data parses as JSON, else `text/plain`.
   */
  datacontenttype?: string | undefined;
  /** Parsed as JSON when it is JSON (and `datacontenttype` is JSON or absent), else sent as text. */
  data?: string | undefined;
  /** `name=value` extension attributes (String values). */
  extensions?: readonly string[] | undefined;
}

/**
 * Builds one event from command-line options, with a generated id and the current time.
 *
 * @param options - the attributes, data and extensions from the command line
 * @throws {@link PosthornError} `InvalidEvent` when `type` or `source` is missing or invalid,
 *   `MalformedInput` when an extension is not `name=value`
 */
export function buildEvent(options: BuildEventOptions): CloudEvent {
  if (!options.type || !options.source) {
    throw new PosthornError(
      "InvalidEvent",
      "an event needs --type and --source (or give --event file.json, or pipe events on stdin)",
    );
  }
  const init: Record<string, unknown> = { type: options.type, source: options.source };
  if (options.id !== undefined) init.id = options.id;
  if (options.subject !== undefined) init.subject = options.subject;
  for (const pair of options.extensions ?? []) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw malformed(`--ext "${pair}" is not name=value`);
    const name = pair.slice(0, eq);
    // An extension, not a way around the other flags: a context attribute (or data) given as
    // --ext would silently replace --type, --source, --id, --subject or --data.
    if (isContextAttribute(name) || name === "data" || name === "data_base64") {
      throw new PosthornError(
        "InvalidEvent",
        `--ext ${name}=... names a context attribute, not an extension: use its own option`,
        { attribute: name },
      );
    }
    if (!isAttributeName(name)) {
      throw new PosthornError(
        "InvalidEvent",
        `--ext ${JSON.stringify(name)}: extension names are lower-case letters and digits`,
        { attribute: name },
      );
    }
    if (Object.hasOwn(init, name)) {
      throw new PosthornError("InvalidEvent", `--ext ${name} is given twice`, { attribute: name });
    }
    init[name] = pair.slice(eq + 1);
  }
  if (options.data !== undefined) {
    const declared = options.datacontenttype;
    const wantsJson = declared === undefined || /[/+]json(;|$)/i.test(declared);
    let value: unknown = options.data;
    let isJson = false;
    if (wantsJson) {
      try {
        // Core's limits, as for JSON from the wire: --data nested 2,000 deep, or holding 1e400
        // (read as Infinity), was sent as it parsed.
        value = parseJson(options.data, "--data");
        isJson = true;
      } catch (err) {
        // Text that is not JSON is sent as text; JSON past the limits is an error.
        if (isOneJsonValue(options.data)) throw err;
        value = options.data;
      }
    }
    init.data = value;
    init.datacontenttype = declared ?? (isJson ? "application/json" : "text/plain");
  } else if (options.datacontenttype !== undefined) {
    init.datacontenttype = options.datacontenttype;
  }
  return CloudEvent.create(init as Parameters<typeof CloudEvent.create>[0]);
}

/**
 * Reads all of a readable stream (stdin) as UTF-8 text.
 *
 * @param stream - the stream
 * @param source - what it is, for the error message (default `stdin`)
 * @throws {@link PosthornError} `MalformedInput` when the bytes are not valid UTF-8 (they were
 *   read as U+FFFD, changing the events they held)
 */
export async function readAll(
  stream: AsyncIterable<Uint8Array | string>,
  source = "stdin",
): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream)
    chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : Buffer.from(chunk));
  return utf8Decode(Buffer.concat(chunks), source);
}
