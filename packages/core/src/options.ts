import { PosthornError } from "./errors.js";

// How a refused value reads in the message: numbers as JavaScript prints them (NaN, -1, 2.5),
// anything else with its type, since a string "100" prints like the number.
function shown(value: unknown): string {
  return typeof value === "number" ? String(value) : `${typeof value} ${JSON.stringify(value)}`;
}

function refuse(name: string, value: unknown, rule: string): PosthornError {
  return new PosthornError("NotSupported", `${name} must be ${rule}, got ${shown(value)}`, {
    attribute: name,
  });
}

/**
 * Checks a time limit option (`timeoutMs`, `closeTimeoutMs`, `drainTimeoutMs`, ...) once, where
 * the publisher, subscriber or receiver is made: a number of milliseconds, 0 or more. `Infinity`
 * (or anything past `MAX_TIMER_MS`) is no limit; what 0 means each option documents. `NaN`, a
 * negative number and anything not a number are refused: compared with `>` or `<`, `NaN` is
 * false both ways and silently turns a limit off, and a negative one fires at once. An interval
 * rather than a limit, or a number handed to a client that needs it finite, gives `most`.
 *
 * @param name - the option's name, as the caller wrote it (`"timeoutMs"`, `"retry.maxDelayMs"`)
 * @param value - the value given; `undefined` (not given) passes
 * @param least - the smallest value accepted (default 0)
 * @param most - the largest value accepted (default `Infinity`)
 * @returns `value`
 * @throws {@link PosthornError} `NotSupported` naming the option and the value
 */
export function checkTimeOption<T extends number | undefined>(
  name: string,
  value: T,
  least = 0,
  most = Number.POSITIVE_INFINITY,
): T {
  if (value === undefined || (typeof value === "number" && value >= least && value <= most)) {
    return value;
  }
  throw refuse(
    name,
    value,
    most === Number.POSITIVE_INFINITY
      ? `a number of milliseconds, ${least} or more (Infinity for no limit)`
      : `a number of milliseconds from ${least} to ${most}`,
  );
}

/**
 * Checks a count or size option (`maxInFlight`, `maxQueued`, `maxPayloadBytes`, ...) once, where
 * the publisher, subscriber or receiver is made: a whole number of at least `least`, or, where
 * `unbounded` allows it, `Infinity` for no limit. `least` is 1 for counts that 0 would turn into
 * a wait with no end (no publish may be in flight, no delivery may be pending) and 0 for limits
 * where 0 refuses everything past it, as documented. `NaN`, a fraction, a smaller number and
 * anything not a number are refused.
 *
 * @param name - the option's name, as the caller wrote it
 * @param value - the value given; `undefined` (not given) passes
 * @param least - the smallest value that means something: 0 or 1 (default 1)
 * @param unbounded - whether `Infinity` is accepted as no limit (default `true`); `false` for a
 *   number handed to a client or a server that needs a finite one
 * @returns `value`
 * @throws {@link PosthornError} `NotSupported` naming the option and the value
 */
export function checkCountOption<T extends number | undefined>(
  name: string,
  value: T,
  least: 0 | 1 = 1,
  unbounded = true,
): T {
  if (
    value === undefined ||
    (typeof value === "number" &&
      value >= least &&
      (Number.isInteger(value) || (unbounded && value === Number.POSITIVE_INFINITY)))
  ) {
    return value;
  }
  throw refuse(
    name,
    value,
    `a whole number, ${least} or more${unbounded ? " (Infinity for no limit)" : ""}`,
  );
}

/**
 * Checks an option that takes one of a few values (numbers such as `acks` and `qos`, or strings
 * such as `mode` and `releaseOutcome`) once, where it is given: `value` must be one of `choices`
 * itself, so `NaN`, `"1"`, `1.0000001` and `"Binary"` are refused as plainly as 3. Handed on
 * unchecked, such a value reaches the client library or the wire, where it fails late, or not at
 * all and means something else (a misspelt mode read as the default).
 *
 * @param name - the option's name, as the caller wrote it (`"acks"`, `"releaseOutcome"`)
 * @param value - the value given; `undefined` (not given) passes
 * @param choices - the values accepted
 * @returns `value`
 * @throws {@link PosthornError} `NotSupported` naming the option, the choices and the value
 */
export function checkChoiceOption<T>(
  name: string,
  value: T,
  choices: readonly (number | string)[],
): T {
  if (value === undefined || choices.includes(value as number | string)) return value;
  const listed = choices.map((c) => (typeof c === "string" ? JSON.stringify(c) : String(c)));
  throw refuse(name, value, `one of ${listed.join(", ")}`);
}

/**
 * The default `closeTimeoutMs` of every binding's publisher (AMQP, HTTP, Kafka, MQTT, NATS,
 * WebSocket): how long `close()` waits for what is still in flight, 5 seconds. Each binding
 * exports it under this name too.
 */
export const DEFAULT_CLOSE_TIMEOUT_MS = 5000;
