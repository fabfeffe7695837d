/**
 * What the fuzzer holds every decoder to. An input must either decode to a valid CloudEvent that
 * comes back equivalent when encoded and decoded again along the same path, or be refused with a
 * `PosthornError` of one of the decoding codes. Anything else is a {@link Finding}.
 */
import {
  CloudEvent,
  differences,
  type ErrorCode,
  type ExtensionRegistry,
  isAttributeName,
  isCloudEvent,
  isPosthornError,
  PosthornError,
} from "@posthorn/core";

/** The kinds of finding the harness reports. */
export type FindingKind =
  /** A decoder threw something other than a PosthornError (TypeError, RangeError, a string...). */
  | "untyped-error"
  /** A PosthornError with a code a decoder must not use. */
  | "unexpected-code"
  /** A decoder returned something that is not a valid CloudEvent. */
  | "invalid-event"
  /** The decoded event did not survive encoding and decoding again along the same path. */
  | "round-trip"
  /** A documented promise of the API was broken (a never-throwing reader threw, two readers disagreed...). */
  | "contract"
  /** An input polluted a built-in prototype. */
  | "prototype-pollution"
  /** One input took longer than the per-input limit. */
  | "hang"
  /** The heap limit was hit while decoding one input. */
  | "memory"
  /** The error message echoed too much of the input. */
  | "oversized-error";

/** An oracle violation: what the harness reports, with the input that caused it. */
export class Finding extends Error {
  override readonly name = "Finding";
  /**
   * @param kind - the kind of violation
   * @param message - what went wrong, in a sentence
   * @param cause - the error the decoder threw, when there is one
   */
  constructor(
    readonly kind: FindingKind,
    message: string,
    cause?: unknown,
  ) {
    super(clip(message), cause === undefined ? undefined : { cause });
  }
}

/** Text cut to a length a report can show (a hostile input can make an error message of megabytes). */
export function clip(text: string, max = 600): string {
  return text.length > max ? `${text.slice(0, max)}... (${text.length} characters)` : text;
}

/** The codes a decoder may refuse an input with (core's `EventFormat.decode` contract, the bindings' docs). */
export const DECODE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "MalformedInput",
  "InvalidEvent",
  "UnsupportedContentType",
  "PayloadTooLarge",
]);

/** Longest error message accepted: errors quote untrusted text cut short (core's `quoted`). */
export const MAX_ERROR_MESSAGE = 4096;

/** What one decoder call gave: a value, or a typed refusal. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: PosthornError };

/**
 * Something worth knowing that is not a violation of the oracle: a PosthornError wrapping an
 * engine error (TypeError, RangeError) thrown inside Posthorn's own code. `asDecodeError` does
 * this on purpose, but each one is a place where a decoder did not check its input first.
 * `--strict` turns them into findings.
 */
export interface Note {
  /** Where the wrapped error was thrown (the first frame in Posthorn's sources), for grouping. */
  readonly site: string;
  /** The wrapped error, as `Name: message`. */
  readonly error: string;
  /** How many inputs hit it. */
  count: number;
  /** The first input that hit it. */
  readonly iteration: number;
}

interface OracleState {
  iteration: number;
  strict: boolean;
  notes: Map<string, Note>;
  /** How many calls ended how, by call: `json.decode ok`, `json.decode MalformedInput`. */
  outcomes: Map<string, number>;
}

const state: OracleState = { iteration: -1, strict: false, notes: new Map(), outcomes: new Map() };

/** Counts an outcome for the report (`readAmqpMessage plain`, `rhea refused the bytes`). */
export function tally(key: string): void {
  state.outcomes.set(key, (state.outcomes.get(key) ?? 0) + 1);
}

const count = tally;

/** The outcome counts gathered so far, and forgets them. */
export function takeOutcomes(): Record<string, number> {
  const out = Object.fromEntries([...state.outcomes].sort(([a], [b]) => a.localeCompare(b)));
  state.outcomes.clear();
  return out;
}

/** Set by the runner before each input, so notes name the input that made them. */
export function setIteration(iteration: number): void {
  state.iteration = iteration;
}

/** Whether wrapped engine errors are findings (`--strict`). */
export function setStrict(strict: boolean): void {
  state.strict = strict;
}

/** The notes gathered so far, and forgets them. */
export function takeNotes(): Note[] {
  const out = [...state.notes.values()];
  state.notes.clear();
  return out;
}

const ENGINE_ERRORS = new Set(["TypeError", "RangeError", "ReferenceError", "EvalError"]);

/** The first stack frame inside a package's sources, or the first frame at all. */
function siteOf(err: Error): string {
  const lines = (err.stack ?? "").split("\n").filter((l) => l.trimStart().startsWith("at "));
  const own = lines.find((l) => /[/\\]packages[/\\][^/\\]+[/\\]src[/\\]/.test(l));
  return (own ?? lines[0] ?? "(no stack)").trim().replace(/^at /, "");
}

/**
 * The engine error a PosthornError wraps, when it was thrown by Posthorn code rather than by an
 * API that reports bad input with one (TextDecoder's fatal mode, JSON.parse).
 */
function maskedEngineError(err: PosthornError): Error | undefined {
  let cause: unknown = err.cause;
  for (let depth = 0; depth < 5 && cause instanceof Error; depth++) {
    if (isPosthornError(cause)) {
      cause = cause.cause;
      continue;
    }
    const coded = typeof (cause as { code?: unknown }).code === "string";
    if (ENGINE_ERRORS.has(cause.name) && !coded) return cause;
    return undefined;
  }
  return undefined;
}

/**
 * Checks a thrown value against the oracle: a PosthornError with one of `codes` passes (and is
 * returned); anything else is a {@link Finding}.
 *
 * @param err - what the decoder threw
 * @param what - the call, for the finding's message
 * @param codes - the codes accepted
 */
export function typedError(
  err: unknown,
  what: string,
  codes: ReadonlySet<ErrorCode> = DECODE_CODES,
): PosthornError {
  if (err instanceof Finding) throw err;
  if (!isPosthornError(err) || !(err instanceof Error)) {
    const name = err instanceof Error ? err.name : typeof err;
    const message = err instanceof Error ? err.message : String(err);
    throw new Finding("untyped-error", `${what} threw ${name}: ${message}`, err);
  }
  if (!(err instanceof PosthornError)) {
    throw new Finding("untyped-error", `${what} threw a look-alike of PosthornError`, err);
  }
  if (!codes.has(err.code)) {
    throw new Finding(
      "unexpected-code",
      `${what} threw PosthornError ${err.code}, not one of ${[...codes].join(", ")}: ${err.message}`,
      err,
    );
  }
  if (typeof err.message !== "string" || err.message.length > MAX_ERROR_MESSAGE) {
    throw new Finding(
      "oversized-error",
      `${what} threw ${err.code} with a ${err.message.length}-character message: ${err.message.slice(0, 200)}...`,
      err,
    );
  }
  const masked = maskedEngineError(err);
  if (masked !== undefined) {
    if (state.strict) {
      throw new Finding(
        "untyped-error",
        `${what} threw ${err.code} wrapping ${masked.name} from Posthorn code: ${masked.message}`,
        err,
      );
    }
    const site = siteOf(masked);
    const key = `${masked.name} ${site}`;
    const seen = state.notes.get(key);
    if (seen) seen.count++;
    else {
      state.notes.set(key, {
        site,
        error: `${masked.name}: ${masked.message}`,
        count: 1,
        iteration: state.iteration,
      });
    }
  }
  return err;
}

/**
 * Runs one decoder call and sorts its result: a value, a typed refusal, or a {@link Finding}.
 *
 * @param what - the call, for the finding's message
 * @param call - the decoder call
 * @param codes - the codes it may refuse with
 */
export function attempt<T>(
  what: string,
  call: () => T,
  codes: ReadonlySet<ErrorCode> = DECODE_CODES,
): Outcome<T> {
  try {
    const value = call();
    count(`${what} ok`);
    return { ok: true, value };
  } catch (err) {
    const error = typedError(err, what, codes);
    count(`${what} ${error.code}`);
    return { ok: false, error };
  }
}

/** Like {@link attempt}, for a call that returns a promise. */
export async function attemptAsync<T>(
  what: string,
  call: () => Promise<T>,
  codes: ReadonlySet<ErrorCode> = DECODE_CODES,
): Promise<Outcome<T>> {
  try {
    const value = await call();
    count(`${what} ok`);
    return { ok: true, value };
  } catch (err) {
    const error = typedError(err, what, codes);
    count(`${what} ${error.code}`);
    return { ok: false, error };
  }
}

/**
 * Checks that a decoder returned a valid, frozen Posthorn CloudEvent whose members are attribute
 * names (or `data`) and that the constructor accepts again.
 *
 * @param value - what the decoder returned
 * @param what - the call, for the finding's message
 */
export function checkEvent(value: unknown, what: string): CloudEvent {
  if (!isCloudEvent(value) || !(value instanceof CloudEvent)) {
    throw new Finding(
      "invalid-event",
      `${what} returned ${describeValue(value)}, not a CloudEvent`,
    );
  }
  if (Object.getPrototypeOf(value) !== CloudEvent.prototype || !Object.isFrozen(value)) {
    throw new Finding(
      "invalid-event",
      `${what} returned an event with a changed prototype or unfrozen`,
    );
  }
  const copy: Record<string, unknown> = {};
  for (const key of Reflect.ownKeys(value)) {
    if (typeof key !== "string" || (key !== "data" && !isAttributeName(key))) {
      throw new Finding("invalid-event", `${what} returned an event with member ${String(key)}`);
    }
    Object.defineProperty(copy, key, {
      value: (value as unknown as Record<string, unknown>)[key],
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  const data = (value as { data?: unknown }).data;
  if (
    typeof data === "number" ||
    (typeof data === "object" && data !== null && !(data instanceof Uint8Array))
  ) {
    const bad = nonFinite(data);
    if (bad !== undefined) {
      throw new Finding(
        "invalid-event",
        `${what} returned an event whose JSON data holds ${bad}, which JSON cannot carry (re-encoding changes or refuses it)`,
      );
    }
  }
  try {
    new CloudEvent(copy as never);
  } catch (err) {
    throw new Finding(
      "invalid-event",
      `${what} returned an event the CloudEvent constructor refuses: ${(err as Error).message}`,
      err,
    );
  }
  return value;
}

/** The first NaN or infinite number in a JSON value, as text; `undefined` when there is none. */
function nonFinite(value: unknown): string | undefined {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === "number") {
      if (!Number.isFinite(v)) return String(v);
    } else if (typeof v === "object" && v !== null && !ArrayBuffer.isView(v)) {
      for (const key of Object.keys(v)) stack.push((v as Record<string, unknown>)[key]);
    }
  }
  return undefined;
}

/**
 * Checks that an event decoded from the input comes back equivalent when encoded and decoded
 * again along the same path.
 *
 * @param event - the decoded event
 * @param again - encodes the event and decodes it again along the same path
 * @param what - the path, for the finding's message
 * @param registry - the registry the path used (equivalence reads declared Timestamps from it)
 */
export function checkRoundTrip(
  event: CloudEvent,
  again: (event: CloudEvent) => unknown,
  what: string,
  registry?: ExtensionRegistry,
): void {
  let back: unknown;
  try {
    back = again(event);
  } catch (err) {
    throw new Finding(
      "round-trip",
      `${what}: the decoded event could not be encoded and decoded again: ${(err as Error)?.name}: ${(err as Error)?.message}`,
      err,
    );
  }
  const decoded = checkEvent(back, `${what} (second decoding)`);
  let diff: string[];
  try {
    diff = differences(event, decoded, registry === undefined ? undefined : { registry });
  } catch (err) {
    throw new Finding(
      "round-trip",
      `${what}: equivalence check threw ${(err as Error).message}`,
      err,
    );
  }
  if (diff.length > 0) {
    throw new Finding(
      "round-trip",
      `${what}: not equivalent after a second round: ${diff.join("; ")}`,
    );
  }
}

/** Checks a batch decoder's result: an array of valid events. */
export function checkEvents(value: unknown, what: string): CloudEvent[] {
  if (!Array.isArray(value)) {
    throw new Finding("invalid-event", `${what} returned ${describeValue(value)}, not an array`);
  }
  return value.map((e, i) => checkEvent(e, `${what}[${i}]`));
}

function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return typeof value;
  return `an object of class ${value.constructor?.name ?? "(none)"}`;
}

// The built-ins whose prototypes an input could reach through a careless assignment.
const WATCHED: ReadonlyArray<readonly [string, object]> = [
  ["Object.prototype", Object.prototype],
  ["Array.prototype", Array.prototype],
  ["Function.prototype", Function.prototype],
  ["String.prototype", String.prototype],
  ["Uint8Array.prototype", Uint8Array.prototype],
  ["CloudEvent.prototype", CloudEvent.prototype],
];

type Snapshot = Array<{ name: string; target: object; keys: Map<PropertyKey, unknown> }>;

function snapshot(): Snapshot {
  return WATCHED.map(([name, target]) => {
    const keys = new Map<PropertyKey, unknown>();
    for (const key of Reflect.ownKeys(target)) {
      const d = Object.getOwnPropertyDescriptor(target, key);
      keys.set(key, d && "value" in d ? d.value : d?.get);
    }
    return { name, target, keys };
  });
}

let baseline: Snapshot | undefined;

/** Records the built-in prototypes as they are now; {@link checkPrototypes} compares with it. */
export function recordPrototypes(): void {
  baseline = snapshot();
}

/** Throws a `prototype-pollution` finding when a watched prototype gained or changed a member. */
export function checkPrototypes(): void {
  if (baseline === undefined) return;
  for (const { name, target, keys } of baseline) {
    const now = Reflect.ownKeys(target);
    if (now.length !== keys.size) {
      const added = now.filter((k) => !keys.has(k)).map(String);
      throw new Finding("prototype-pollution", `${name} gained ${added.join(", ") || "members"}`);
    }
    for (const key of now) {
      const d = Object.getOwnPropertyDescriptor(target, key);
      const value = d && "value" in d ? d.value : d?.get;
      if (!keys.has(key) || keys.get(key) !== value) {
        throw new Finding("prototype-pollution", `${name}.${String(key)} was changed`);
      }
    }
  }
  if (Object.getPrototypeOf({}) !== Object.prototype) {
    throw new Finding(
      "prototype-pollution",
      "the prototype of a new object is not Object.prototype",
    );
  }
}
