import {
  CloudEvent,
  type CloudEventInit,
  type CloudEventLike,
  differences,
  isPosthornError,
} from "@posthorn/core";
import { expect } from "vitest";

// Helpers for interop tests that pin a known limitation of another CloudEvents SDK: rather than
// skip a vector that SDK cannot carry, the test asserts exactly what it does to the vector today,
// so that it fails (and says so) on the day the SDK stops doing it.

/** Whether a timestamp holds more than milliseconds (trailing zeros do not count). */
export function subMillisecond(time: string | undefined): boolean {
  const fraction = /\.(\d+)/.exec(time ?? "")?.[1] ?? "";
  return fraction.replace(/0+$/, "").length > 3;
}

/**
 * A timestamp with its fraction cut to milliseconds, as one that went through a JavaScript
 * `Date` names it. The offset stays: equivalence compares instants.
 */
export function millisecondTime(time: string): string {
  return time.replace(/(\.\d{3})\d+/, "$1");
}

/** What `JSON.stringify` writes for a typed array: an object from each index to its element. */
export function indexObject(bytes: Uint8Array): Record<string, number> {
  return Object.fromEntries(Array.from(bytes, (b, i) => [String(i), b]));
}

/**
 * Asserts that a round trip changed `original` in exactly the attributes `changes` names (`data`
 * for the data), and into exactly the values it gives (`undefined`: gone). Fails when the
 * limitation is gone, when it changes a value differently, and when anything else changed.
 *
 * @param actual - the event the round trip yields
 * @param original - the event that went in
 * @param changes - attribute name (or `data`) to the value the round trip leaves
 * @param context - prefix for failure messages
 */
export function expectPinnedChanges(
  actual: CloudEventLike,
  original: CloudEvent,
  changes: Readonly<Record<string, unknown>>,
  context = "",
): void {
  const changed = differences(original, actual).map((d) => d.slice(0, d.indexOf(":")));
  expect(changed.sort(), `${context}: what the round trip changes`).toEqual(
    Object.keys(changes).sort(),
  );
  const patched: Record<string, unknown> = { ...original };
  for (const [name, value] of Object.entries(changes)) {
    if (value === undefined) delete patched[name];
    else patched[name] = value;
  }
  const expected = CloudEvent.from(patched as unknown as CloudEventInit);
  expect(differences(expected, actual), `${context}: how the round trip changes it`).toEqual([]);
}

/**
 * Asserts that `action` throws a Posthorn error with this code and a message matching `message`.
 *
 * @param action - what should throw
 * @param code - the expected `PosthornError` code
 * @param message - what the message should say
 */
export function expectRefused(action: () => unknown, code: string, message: RegExp): void {
  let thrown: unknown;
  try {
    action();
  } catch (err) {
    thrown = err;
  }
  expect(isPosthornError(thrown), `expected a PosthornError, got ${String(thrown)}`).toBe(true);
  expect((thrown as { code: string }).code).toBe(code);
  expect((thrown as Error).message).toMatch(message);
}
