import {
  CloudEvent,
  canonicalize,
  differences,
  ExtensionRegistry,
  equivalent,
} from "@posthorn/core";
import { describe, expect, it } from "vitest";

const base = { specversion: "1.0", id: "1", source: "/s", type: "t" } as const;
const ev = (x: Record<string, unknown>) => new CloudEvent({ ...base, ...x } as never);

describe("equivalent", () => {
  it("compares typed values with the strings untyped transports return", () => {
    expect(
      equivalent(
        ev({ n: 42, b: true, bin: new Uint8Array([1, 2]) }),
        ev({ n: "42", b: "true", bin: "AQI=" }),
      ),
    ).toBe(true);
    expect(equivalent(ev({ n: 42 }), ev({ n: "43" }))).toBe(false);
  });
  it("compares time as an instant at full precision", () => {
    expect(
      equivalent(
        ev({ time: "2024-05-01T10:00:00+05:30" }),
        ev({ time: "2024-05-01T04:30:00.000Z" }),
      ),
    ).toBe(true);
    expect(
      equivalent(
        ev({ time: "2024-05-01T10:00:00.1234567Z" }),
        ev({ time: "2024-05-01T10:00:00.123Z" }),
      ),
    ).toBe(false);
  });
  it("compares declared Timestamp extensions as instants, others as strings", () => {
    const a = ev({ recordedtime: "2024-01-01T00:00:00Z", other: "2024-01-01T00:00:00Z" });
    const b = ev({ recordedtime: "2024-01-01T01:00:00+01:00", other: "2024-01-01T00:00:00Z" });
    expect(equivalent(a, b)).toBe(true);
    expect(
      equivalent(ev({ other: "2024-01-01T00:00:00Z" }), ev({ other: "2024-01-01T01:00:00+01:00" })),
    ).toBe(false);
    const registry = new ExtensionRegistry([{ name: "other", type: "Timestamp" }]);
    expect(
      equivalent(
        ev({ other: "2024-01-01T00:00:00Z" }),
        ev({ other: "2024-01-01T01:00:00+01:00" }),
        { registry },
      ),
    ).toBe(true);
  });
  it("reads a declared Integer, Boolean or Binary extension held as a string as its type", () => {
    // The constructor keeps "05" and "+5" as given; a receiver that knows the declaration
    // (HTTP, Kafka, MQTT and NATS headers) restores 5.
    expect(differences(ev({ severitynumber: "05" }), ev({ severitynumber: 5 }))).toEqual([]);
    expect(equivalent(ev({ severitynumber: "+5" }), ev({ severitynumber: "5" }))).toBe(true);
    expect(equivalent(ev({ severitynumber: "-0" }), ev({ severitynumber: 0 }))).toBe(true);
    expect(equivalent(ev({ severitynumber: "05" }), ev({ severitynumber: 6 }))).toBe(false);
    const registry = new ExtensionRegistry([{ name: "level", type: "Integer" }]);
    expect(equivalent(ev({ level: "007" }), ev({ level: 7 }), { registry })).toBe(true);
    // Undeclared, a string is a String: "05" and 5 differ.
    expect(equivalent(ev({ level: "05" }), ev({ level: 5 }))).toBe(false);
    expect(canonicalize(ev({ severitynumber: "012" })).attributes.severitynumber).toBe("12");
  });
  it("needs the same attribute names", () => {
    expect(differences(ev({ a: "x" }), ev({}))).toEqual([
      'a: "x" on the left, absent on the right',
    ]);
  });
  it("compares data as bytes, text or JSON", () => {
    expect(
      equivalent(
        ev({ datacontenttype: "text/plain", data: "hé" }),
        ev({ datacontenttype: "text/plain", data: new TextEncoder().encode("hé") }),
      ),
    ).toBe(true);
    expect(
      equivalent(
        ev({ datacontenttype: "application/json", data: { a: [1] } }),
        ev({ datacontenttype: "application/json", data: { a: [1] } }),
      ),
    ).toBe(true);
    expect(
      equivalent(
        ev({ datacontenttype: "application/json", data: { a: [1] } }),
        ev({ datacontenttype: "application/json", data: { a: [2] } }),
      ),
    ).toBe(false);
    expect(
      equivalent(
        ev({ datacontenttype: "application/json", data: { a: 1 } }),
        ev({ datacontenttype: "application/json", data: new TextEncoder().encode('{"a":1}') }),
      ),
    ).toBe(true);
    expect(equivalent(ev({ data: new Uint8Array([1]) }), ev({ data: new Uint8Array([2]) }))).toBe(
      false,
    );
  });
  it("treats empty data as no data", () => {
    expect(
      equivalent(
        ev({ datacontenttype: "text/plain", data: "" }),
        ev({ datacontenttype: "text/plain" }),
      ),
    ).toBe(true);
    expect(equivalent(ev({ data: new Uint8Array(0) }), ev({}))).toBe(true);
  });
  it("keeps null JSON data distinct from no data", () => {
    expect(
      equivalent(
        ev({ datacontenttype: "application/json", data: null }),
        ev({ datacontenttype: "application/json" }),
      ),
    ).toBe(false);
  });
  it("reads JSON data with no content type as application/json", () => {
    expect(
      equivalent(
        ev({ data: { a: 1 } }),
        ev({ datacontenttype: "application/json", data: { a: 1 } }),
      ),
    ).toBe(true);
  });
  it("ignores case and a utf-8 charset in datacontenttype, but not other parameters", () => {
    expect(
      equivalent(
        ev({ datacontenttype: "Application/JSON; charset=UTF-8" }),
        ev({ datacontenttype: "application/json" }),
      ),
    ).toBe(true);
    expect(
      equivalent(
        ev({ datacontenttype: "text/plain; charset=latin1" }),
        ev({ datacontenttype: "text/plain" }),
      ),
    ).toBe(false);
  });
  it("canonicalize sorts attribute names", () => {
    expect(Object.keys(canonicalize(ev({ z: "1", a: "2" })).attributes)).toEqual([
      "a",
      "id",
      "source",
      "specversion",
      "type",
      "z",
    ]);
  });
});

describe("registry lookups", () => {
  it("do not find Object.prototype members", () => {
    const registry = new ExtensionRegistry();
    expect(registry.typeOf("constructor")).toBeUndefined();
    expect(registry.typeOf("toString")).toBeUndefined();
    expect(registry.typeOf("time")).toBe("Timestamp");
  });
});

describe("declarations", () => {
  it("refuse a type that is not one of the seven CloudEvents types, and a declaration that is no object", () => {
    const registry = new ExtensionRegistry();
    for (const type of ["integer", "Int", "Date", undefined]) {
      expect(() => registry.declare({ name: "priority", type } as never)).toThrowError(TypeError);
    }
    expect(() => registry.declare(null as never)).toThrowError(/a declaration is an object/);
    expect(registry.get("priority")).toBeUndefined();
    for (const type of [
      "Boolean",
      "Integer",
      "String",
      "Binary",
      "URI",
      "URI-reference",
      "Timestamp",
    ]) {
      expect(registry.declare({ name: "priority", type } as never).typeOf("priority")).toBe(type);
    }
  });
});
