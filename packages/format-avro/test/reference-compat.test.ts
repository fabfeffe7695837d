import { readFileSync } from "node:fs";
import {
  CloudEvent,
  extensions,
  isBytes,
  isJsonContentType,
  parseContentType,
} from "@posthorn/core";
import {
  avro,
  avroCompactFormat,
  CLOUDEVENTS_AVRO_COMPACT_SCHEMA,
  CLOUDEVENTS_AVRO_SCHEMA,
} from "@posthorn/format-avro";
import { expectEquivalent, validVectors } from "@posthorn/testkit";
import avsc from "avsc";
import { describe, expect, it } from "vitest";

// The reference schemas are the CloudEvents specification's own files (../shared/spec beside the
// checkout, as CI also has it), compiled by avsc: an independent Avro implementation.
const load = (name: string) =>
  avsc.Type.forSchema(
    JSON.parse(readFileSync(new URL(`../../../../shared/spec/${name}`, import.meta.url), "utf8")),
  );
const reference = load("cloudevents.avsc");
const referenceCompact = load("cloudevents-compact.avsc");
const compact = avroCompactFormat();

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
const isObject = (v: unknown): v is Record<string, Json> =>
  typeof v === "object" && v !== null && !Array.isArray(v) && !isBytes(v);
const mapValues = <A, B>(o: Record<string, A>, f: (a: A) => B): Record<string, B> =>
  Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v)]));
const buf = (b: Uint8Array) => Buffer.from(b);

// ---- The documented mapping, written a second time, as plain values for avsc.

function box(v: Json): { value: Record<string, unknown> } {
  if (isObject(v) && !(Object.keys(v).length === 1 && "value" in v)) {
    return { value: mapValues(v, inner) };
  }
  return { value: { value: inner(v) } };
}
function inner(v: Json): unknown {
  if (Array.isArray(v)) return v.map(box);
  if (isObject(v)) return mapValues(v, box);
  return v;
}
function member(v: Json): unknown {
  return Array.isArray(v) || isObject(v) ? box(v) : v;
}

function toReference(event: CloudEvent): Record<string, unknown> {
  const attribute: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(event)) {
    if (k !== "data") attribute[k] = isBytes(v) ? buf(v) : v;
  }
  let data: unknown = null;
  if (event.hasData()) {
    const d = event.data as Json | Uint8Array;
    if (isBytes(d)) data = buf(d);
    else if (d === null) {
      data = Buffer.from("null");
      // JSON null with no content type says application/json, so a reader can tell (470bffc).
      if (event.datacontenttype === undefined) attribute.datacontenttype = "application/json";
    } else if (Array.isArray(d)) data = d.map(box);
    else if (isObject(d)) data = mapValues(d, member);
    else data = d;
  }
  return { attribute, data };
}

function unbox(rec: { value: Record<string, unknown> }): Json {
  const keys = Object.keys(rec.value);
  if (keys.length === 1 && keys[0] === "value") return innerOut(rec.value.value);
  return mapValues(rec.value, innerOut);
}
function innerOut(v: unknown): Json {
  if (Array.isArray(v)) return v.map(unbox);
  if (isObject(v)) return mapValues(v as never, unbox);
  return v as Json;
}

function fromReference(value: { attribute: Record<string, unknown>; data: unknown }): CloudEvent {
  const init: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value.attribute)) {
    if (v !== null) init[k] = Buffer.isBuffer(v) ? new Uint8Array(v) : v;
  }
  const d = value.data;
  const ct = init.datacontenttype as string | undefined;
  if (Buffer.isBuffer(d)) {
    init.data = ct && isJsonContentType(ct) ? JSON.parse(d.toString("utf8")) : new Uint8Array(d);
  } else if (Array.isArray(d)) init.data = d.map(unbox);
  else if (isObject(d)) init.data = mapValues(d, (m) => (isObject(m) ? unbox(m as never) : m));
  else if (d !== null) init.data = d;
  return new CloudEvent(init as never);
}

// ---- compact form

function micros(time: string): number {
  const ms = Date.parse(time);
  const fraction = /\.(\d+)/.exec(time)?.[1] ?? "";
  return Math.floor(ms / 1000) * 1e6 + Number(fraction.padEnd(6, "0").slice(0, 6));
}

function toCompactReference(event: CloudEvent): Record<string, unknown> {
  const hasData = event.hasData();
  const data = event.data;
  const ct = event.datacontenttype ?? (hasData && !isBytes(data) ? "application/json" : undefined);
  const ext: Record<string, unknown> = {};
  const own = new Set(["specversion", "id", "source", "type", "datacontenttype", "dataschema"]);
  for (const [k, v] of Object.entries(event)) {
    if (own.has(k) || ["subject", "time", "data"].includes(k)) continue;
    if (typeof v === "string") {
      ext[k] = extensions.typeOf(k) === "Timestamp" ? { long: micros(v) } : { string: v };
    } else if (typeof v === "boolean") ext[k] = { boolean: v };
    else if (typeof v === "number") ext[k] = { int: v };
    else ext[k] = { bytes: buf(v as Uint8Array) };
  }
  let bytes: Buffer | null = null;
  if (hasData) {
    if (isBytes(data)) bytes = buf(data);
    else if (typeof data === "string" && !isJsonContentType(ct)) {
      // A string is written in its text type's charset: Latin-1 where that says ISO-8859-1.
      const charset = parseContentType(ct as string)?.parameters.charset?.toLowerCase();
      bytes = Buffer.from(
        data,
        charset === "iso-8859-1" || charset === "latin1" ? "latin1" : "utf8",
      );
    } else bytes = Buffer.from(JSON.stringify(data));
  }
  return {
    id: event.id,
    source: event.source,
    type: event.type,
    datacontenttype: ct ?? null,
    dataschema: event.dataschema ?? null,
    subject: event.subject ?? null,
    time: event.time === undefined ? null : micros(event.time),
    extensions: ext,
    data: bytes,
  };
}

describe("Avro format against the specification's schema (avsc)", () => {
  it("states a schema with the reference schema's canonical form", () => {
    const mine = avsc.Type.forSchema(CLOUDEVENTS_AVRO_SCHEMA as never);
    expect(mine.fingerprint().toString("hex")).toBe(reference.fingerprint().toString("hex"));
    const mineCompact = avsc.Type.forSchema(CLOUDEVENTS_AVRO_COMPACT_SCHEMA as never);
    expect(mineCompact.fingerprint().toString("hex")).toBe(
      referenceCompact.fingerprint().toString("hex"),
    );
  });

  for (const vec of validVectors) {
    it(`${vec.name}: same bytes as avsc, and each decodes the other's`, () => {
      const ours = avro.encode(vec.event);
      const theirs = reference.toBuffer(toReference(vec.event));
      expect(Buffer.from(ours).equals(theirs)).toBe(true);
      expectEquivalent(fromReference(reference.fromBuffer(Buffer.from(ours))), vec.event, "avsc");
      expectEquivalent(avro.decode(new Uint8Array(theirs)), vec.event, "posthorn");
    });
  }

  it("reads JSON data another producer wrote as nested records of members", () => {
    const theirs = reference.toBuffer({
      attribute: { specversion: "1.0", id: "1", source: "/s", type: "t" },
      data: { order: { value: { id: 7, tags: [{ value: { name: "x" } }] } } },
    });
    expect(avro.decode(new Uint8Array(theirs)).data).toEqual({
      order: { id: 7, tags: [{ name: "x" }] },
    });
  });
});

describe("compact Avro format against the working draft's schema (avsc)", () => {
  for (const vec of validVectors.filter((v) => v.name !== "time-nanos")) {
    it(`${vec.name}: same bytes as avsc, and each decodes the other's`, () => {
      const ours = compact.encode(vec.event);
      const theirs = referenceCompact.toBuffer(toCompactReference(vec.event));
      expect(Buffer.from(ours).equals(theirs)).toBe(true);
      const decoded = referenceCompact.fromBuffer(Buffer.from(ours));
      expect(decoded.id).toBe(vec.event.id);
      expectEquivalent(compact.decode(new Uint8Array(theirs)), vec.event, "posthorn");
    });
  }

  it("refuses a time finer than a microsecond instead of rounding it", () => {
    const event = validVectors.find((v) => v.name === "time-nanos")?.event as CloudEvent;
    expect(() => compact.encode(event)).toThrow(/microsecond/);
  });

  it("keeps a Timestamp extension finer than a microsecond as a string", () => {
    const event = new CloudEvent({
      specversion: "1.0",
      id: "1",
      source: "/s",
      type: "t",
      recordedtime: "2024-01-01T00:00:00.123456789Z",
    });
    expect(compact.decode(compact.encode(event)).recordedtime).toBe(event.recordedtime);
  });
});
