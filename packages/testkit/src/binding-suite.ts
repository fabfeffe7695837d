import { CloudEvent, type ContentMode, type EventFormat, isPosthornError } from "@posthorn/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { detectableInvalidVectors, expectEquivalent } from "./format-suite.js";
import { type EventVector, invalidEvent, validVectors } from "./vectors.js";

/** One way a binding carries events: a content mode and, for structured and batch, a format. */
export interface BindingPath {
  /** `binary`, `structured` or `batch`. */
  readonly mode: ContentMode;
  /** The event format, for `structured` and `batch`. */
  readonly format?: EventFormat;
}

/** How {@link describeBindingConformance} drives a binding. */
export interface BindingHarness {
  /** Shown in test names, e.g. `http (mapping)` or `amqp (RabbitMQ)`. */
  readonly name: string;
  /** Every mode x format the binding supports here. */
  readonly paths: readonly BindingPath[];
  /** Whether attribute values keep their types on this path (AMQP does; HTTP headers do not). */
  readonly typed?: boolean;
  /** Whether attribute names keep their case (Kafka headers do; HTTP headers do not). */
  readonly caseSensitive?: boolean;
  /** Per-test timeout for paths over real connections. */
  readonly timeoutMs?: number;
  /** Runs once before the suite's tests (start a broker, open connections). */
  setup?(): Promise<void> | void;
  /** Runs once after them (close what `setup` opened). */
  teardown?(): Promise<void> | void;
  /**
   * Sends one event along `path` and returns what the other side decoded. For an invalid event
   * it must throw the typed error the sending or the receiving side raised.
   */
  roundTrip(event: CloudEvent, path: BindingPath): Promise<CloudEvent> | CloudEvent;
  /** Sends a batch along a `batch` path and returns what the other side decoded. */
  roundTripBatch?(
    events: readonly CloudEvent[],
    path: BindingPath,
  ): Promise<CloudEvent[]> | CloudEvent[];
  /** Why `path` cannot carry `vector`, or `undefined` when it can. */
  skip?(vector: EventVector, path: BindingPath): string | undefined;
}

/**
 * `binary`, `structured/json`, `batch/protobuf`: how a path reads in test names.
 *
 * @param path - the mode and format
 */
export function pathLabel(path: BindingPath): string {
  return path.format ? `${path.mode}/${path.format.name}` : path.mode;
}

/**
 * What a suite registered, for the calling file to check: a file that only calls a suite can
 * still assert that the suite covers what it should (no path left without cases, no case skipped
 * that should run).
 */
export interface SuiteCoverage {
  /** Every case registered, e.g. `structured/json: typical` (property suites: property names). */
  readonly cases: readonly string[];
  /** The cases registered as skipped, as `case (reason)`. */
  readonly skipped: readonly string[];
}

/**
 * The path labels a binding suite registered cases for, in order (e.g. `binary`,
 * `structured/json`).
 *
 * @param coverage - what the suite returned
 */
export function pathsOf(coverage: SuiteCoverage): string[] {
  return [...new Set(coverage.cases.map((c) => c.slice(0, c.indexOf(": "))))];
}

// A harness mistake shows as a collection error naming it, not as cases that test nothing: a
// structured or batch path without its format, or no path at all.
function checkHarness(harness: BindingHarness): void {
  if (typeof harness?.roundTrip !== "function") {
    throw new TypeError("describeBindingConformance: the harness needs roundTrip(event, path)");
  }
  if (!Array.isArray(harness.paths) || harness.paths.length === 0) {
    throw new TypeError(
      `describeBindingConformance: harness ${JSON.stringify(harness.name)} has no paths; give at least { mode: "binary" }`,
    );
  }
  for (const path of harness.paths) {
    const mode = path?.mode;
    if (mode !== "binary" && mode !== "structured" && mode !== "batch") {
      throw new TypeError(
        `describeBindingConformance: a path's mode must be "binary", "structured" or "batch", got ${JSON.stringify(mode)}`,
      );
    }
    if (mode !== "binary" && path.format === undefined) {
      throw new TypeError(
        `describeBindingConformance: the ${mode} path of ${JSON.stringify(harness.name)} needs its format, e.g. { mode: "${mode}", format: json }`,
      );
    }
    if (mode === "batch" && typeof harness.roundTripBatch !== "function") {
      throw new TypeError(
        `describeBindingConformance: harness ${JSON.stringify(harness.name)} has a batch path but no roundTripBatch(events, path)`,
      );
    }
  }
}

/**
 * The shared conformance suite for a binding: every valid vector along every path round-trips to
 * an equivalent event; every invalid vector the path can detect is rejected with a typed error;
 * batch paths carry a batch of every vector in order. Call it at the top level of a test file.
 *
 * @param harness - how to send an event along each path and read it back
 * @returns the cases it registered, to check coverage with
 * @throws TypeError when the harness has no paths, a path with another mode, a structured or
 *   batch path without its format, or a batch path without `roundTripBatch`
 * @example
 * ```ts
 * describeBindingConformance(httpMappingHarness());
 * ```
 */
export function describeBindingConformance(harness: BindingHarness): SuiteCoverage {
  checkHarness(harness);
  const cases: string[] = [];
  const skipped: string[] = [];
  describe(`binding conformance: ${harness.name}`, () => {
    if (harness.setup) beforeAll(() => harness.setup?.());
    if (harness.teardown) afterAll(() => harness.teardown?.());
    const invalid = detectableInvalidVectors({
      typed: harness.typed ?? false,
      caseSensitive: harness.caseSensitive ?? false,
    });

    for (const path of harness.paths) {
      describe(pathLabel(path), () => {
        if (path.mode === "batch") {
          cases.push(`${pathLabel(path)}: batch of every vector`);
          it(
            "round-trips a batch of every vector, in order",
            async () => {
              const carried = validVectors.filter((x) => harness.skip?.(x, path) === undefined);
              expect(carried.length).toBeGreaterThan(0);
              const events = carried.map((x) => x.event);
              const roundTripBatch = harness.roundTripBatch;
              expect(roundTripBatch, "a batch path needs roundTripBatch").toBeDefined();
              const back = await roundTripBatch?.call(harness, events, path);
              expect(back).toHaveLength(events.length);
              for (const [i, e] of (back ?? []).entries()) {
                expectEquivalent(e, events[i] as CloudEvent, carried[i]?.name);
              }
            },
            harness.timeoutMs,
          );
          return;
        }
        for (const vec of validVectors) {
          const reason = harness.skip?.(vec, path);
          const name = `${pathLabel(path)}: ${vec.name}`;
          cases.push(name);
          if (reason !== undefined) skipped.push(`${name} (${reason})`);
          it.skipIf(reason !== undefined)(
            `${vec.name}${reason ? ` (skipped: ${reason})` : ""}`,
            async () => {
              const back = await harness.roundTrip(vec.event, path);
              expectEquivalent(back, vec.event, `${vec.name} via ${pathLabel(path)}`);
            },
            harness.timeoutMs,
          );
        }
        // An event whose data is itself an event, under a CloudEvents media type. Every binding
        // reads a content type of the form application/cloudevents... as structured mode, so a
        // binary path that writes the datacontenttype as the protocol's content type cannot
        // carry it: it must refuse it when sending, never hand back the inner event or another.
        cases.push(`${pathLabel(path)}: data that is itself an event`);
        it(
          path.mode === "binary"
            ? "carries an event whose data is itself an event, or refuses it with NotSupported"
            : "carries an event whose data is itself an event",
          async () => {
            const event = nestedEvent();
            let back: CloudEvent | undefined;
            let thrown: unknown;
            try {
              back = await harness.roundTrip(event, path);
            } catch (err) {
              thrown = err;
            }
            if (path.mode === "binary" && thrown !== undefined) {
              expect(isPosthornError(thrown), `untyped error: ${String(thrown)}`).toBe(true);
              expect((thrown as { code?: unknown }).code).toBe("NotSupported");
              return;
            }
            if (thrown !== undefined) throw thrown;
            expectEquivalent(back as CloudEvent, event, `nested event via ${pathLabel(path)}`);
          },
          harness.timeoutMs,
        );
        for (const vec of invalid) {
          cases.push(`${pathLabel(path)}: rejects ${vec.name}`);
          it(
            `rejects invalid: ${vec.name}`,
            async () => {
              let thrown: unknown;
              try {
                await harness.roundTrip(invalidEvent(vec), path);
              } catch (err) {
                thrown = err;
              }
              expect(thrown, `${vec.name} was accepted`).toBeDefined();
              expect(isPosthornError(thrown), `untyped error: ${String(thrown)}`).toBe(true);
            },
            harness.timeoutMs,
          );
        }
      });
    }
  });
  return { cases, skipped };
}

/** An event whose data is a structured JSON event, under `application/cloudevents+json`. */
function nestedEvent(): CloudEvent {
  return CloudEvent.create({
    id: "outer-1",
    source: "/conformance/outer",
    type: "com.example.envelope",
    time: "2026-01-02T03:04:05Z",
    datacontenttype: "application/cloudevents+json",
    data: {
      specversion: "1.0",
      id: "inner-1",
      source: "/conformance/inner",
      type: "com.example.inner",
      data: { n: 1 },
    },
  });
}
