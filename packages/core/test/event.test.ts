import {
  CloudEvent,
  createUncheckedEvent,
  declareExtension,
  isCloudEvent,
  isPosthornError,
  PosthornError,
} from "@posthorn/core";
import { describe, expect, it } from "vitest";

const base = { specversion: "1.0", id: "1", source: "/s", type: "t" } as const;

describe("CloudEvent construction", () => {
  it("keeps every attribute, extension and data as given", () => {
    const e = new CloudEvent({
      ...base,
      subject: "sub",
      time: "2024-05-01T10:00:00.123456789+05:30",
      datacontenttype: "application/json",
      dataschema: "https://example.com/s",
      ext: 5,
      flag: true,
      bin: new Uint8Array([1]),
      data: { a: 1 },
    });
    expect(e.time).toBe("2024-05-01T10:00:00.123456789+05:30");
    expect(e.ext).toBe(5);
    expect(e.flag).toBe(true);
    expect(e.data).toEqual({ a: 1 });
    expect(Object.keys(e)).toEqual(expect.arrayContaining(["id", "ext", "flag", "bin", "data"]));
  });

  it("is frozen", () => {
    const e = new CloudEvent({ ...base });
    expect(Object.isFrozen(e)).toBe(true);
    expect(() => {
      (e as unknown as { id: string }).id = "2";
    }).toThrow(TypeError);
  });

  it.each([
    ["specversion", { specversion: "0.3" }],
    ["specversion", { specversion: undefined }],
    ["id", { id: "" }],
    ["id", { id: 5 }],
    ["source", { source: "" }],
    ["source", { source: "has space" }],
    ["type", { type: "" }],
    ["dataschema", { dataschema: "/relative" }],
    ["time", { time: "2024-02-30T00:00:00Z" }],
    ["subject", { subject: "" }],
    ["datacontenttype", { datacontenttype: "nonsense" }],
    ["Upper", { Upper: "x" }],
    ["a_b", { a_b: "x" }],
    ["__proto__", JSON.parse('{"__proto__": "x"}')],
    ["constructor", { constructor: { a: 1 } }],
    ["tostring", { tostring: [1] }],
    ["big", { big: 2 ** 31 }],
    ["frac", { frac: 0.5 }],
    ["obj", { obj: { a: 1 } }],
    ["ctl", { ctl: "a\u0000" }],
    ["data_base64", { data: "x", data_base64: "eA==" }],
    ["data_base64", { data_base64: "not base64!" }],
    ["data", { datacontenttype: "text/plain", data: { a: 1 } }],
  ])("rejects a bad %s with InvalidEvent naming it", (attribute, patch) => {
    let err: unknown;
    try {
      new CloudEvent({ ...base, ...(patch as object) } as never);
    } catch (e) {
      err = e;
    }
    expect(isPosthornError(err, "InvalidEvent")).toBe(true);
    expect((err as PosthornError).attribute).toBe(attribute);
  });

  it("does not pollute prototypes through attribute names", () => {
    const hostile = JSON.parse(
      '{"specversion":"1.0","id":"1","source":"/s","type":"t","constructor":"x","prototype":"y"}',
    );
    const e = new CloudEvent(hostile);
    expect(e.constructor).toBe("x");
    expect(({} as Record<string, unknown>).prototype).toBeUndefined();
    expect(Object.getPrototypeOf(e)).toBe(CloudEvent.prototype);
  });

  it("create and cloneWith refuse a __proto__ member as new CloudEvent does, polluting nothing", () => {
    const hostile = JSON.parse('{"source":"/s","type":"t","__proto__":{"polluted":true}}');
    expect(() => CloudEvent.create(hostile)).toThrowError(
      expect.objectContaining({ code: "InvalidEvent", attribute: "__proto__" }),
    );
    const e = new CloudEvent(base as never);
    expect(() => e.cloneWith(JSON.parse('{"__proto__":{"polluted":true}}'))).toThrowError(
      expect.objectContaining({ code: "InvalidEvent", attribute: "__proto__" }),
    );
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("create, cloneWith and new CloudEvent refuse a value that is not an object with InvalidEvent", () => {
    const e = new CloudEvent(base as never);
    for (const bad of [null, undefined, 5]) {
      const invalid = expect.objectContaining({ name: "PosthornError", code: "InvalidEvent" });
      expect(() => CloudEvent.create(bad as never)).toThrowError(invalid);
      expect(() => e.cloneWith(bad as never)).toThrowError(invalid);
      expect(() => new CloudEvent(bad as never)).toThrowError(invalid);
    }
  });

  it("refuses data that is a function, a symbol or a bigint: no format has a representation", () => {
    for (const data of [() => 1, Symbol("s"), 10n]) {
      expect(() => new CloudEvent({ ...base, data } as never)).toThrowError(
        expect.objectContaining({ code: "InvalidEvent", attribute: "data" }),
      );
    }
  });

  it("turns data_base64 into bytes and Dates into RFC 3339", () => {
    const e = new CloudEvent({
      ...base,
      data_base64: "AQID",
      time: new Date(Date.UTC(2020, 0, 1)),
      when: new Date(0),
    });
    expect(e.data).toEqual(new Uint8Array([1, 2, 3]));
    expect(e.time).toBe("2020-01-01T00:00:00.000Z");
    expect(e.when).toBe("1970-01-01T00:00:00.000Z");
  });

  it("keeps an explicit null data distinct from no data", () => {
    expect(new CloudEvent({ ...base, data: null }).hasData()).toBe(true);
    expect(new CloudEvent({ ...base }).hasData()).toBe(false);
  });

  it("treats null and undefined optional attributes as absent", () => {
    const e = new CloudEvent({ ...base, subject: undefined, ext: null });
    expect("subject" in e).toBe(false);
    expect("ext" in e).toBe(false);
  });
});

describe("CloudEvent.create", () => {
  it("fills id, specversion and time", () => {
    const e = CloudEvent.create({ source: "/s", type: "t" });
    expect(e.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(e.specversion).toBe("1.0");
    expect(Date.parse(e.time as string)).toBeGreaterThan(Date.now() - 60_000);
  });
  it("leaves time out when asked", () => {
    expect("time" in CloudEvent.create({ source: "/s", type: "t" }, { fillTime: false })).toBe(
      false,
    );
  });
  it("keeps a given id", () => {
    expect(CloudEvent.create({ id: "mine", source: "/s", type: "t" }).id).toBe("mine");
  });
});

describe("copies", () => {
  const e = new CloudEvent({ ...base, ext: "x", datacontenttype: "text/plain", data: "hi" });
  it("cloneWith changes and removes attributes, leaving the original", () => {
    const c = e.cloneWith({ subject: "new", ext: undefined });
    expect(c.subject).toBe("new");
    expect("ext" in c).toBe(false);
    expect(e.ext).toBe("x");
    expect(c).not.toBe(e);
  });
  it("cloneWith validates", () => {
    expect(() => e.cloneWith({ id: "" })).toThrowError(
      expect.objectContaining({ code: "InvalidEvent" }),
    );
  });
  it("withData and withoutData", () => {
    expect(e.withData({ a: 1 }, "application/json").data).toEqual({ a: 1 });
    expect(e.withoutData().hasData()).toBe(false);
  });
  it("getExtensions and getAttributes", () => {
    expect(e.getExtensions()).toEqual({ ext: "x" });
    expect(e.getAttributes()).toEqual({ ...base, ext: "x", datacontenttype: "text/plain" });
  });
  it("toJSON writes binary data as data_base64", () => {
    const b = new CloudEvent({ ...base, sig: new Uint8Array([255]), data: new Uint8Array([1, 2]) });
    expect(JSON.parse(JSON.stringify(b))).toEqual({ ...base, sig: "/w==", data_base64: "AQI=" });
  });
});

describe("CloudEvent.from and brands", () => {
  it("returns instances unchanged and validates plain objects", () => {
    const e = new CloudEvent({ ...base });
    expect(CloudEvent.from(e)).toBe(e);
    expect(isCloudEvent(CloudEvent.from({ ...base }))).toBe(true);
    expect(() => CloudEvent.from({ ...base, id: "" })).toThrow(PosthornError);
  });
  it("createUncheckedEvent skips validation (for decoder tests only)", () => {
    const bad = createUncheckedEvent({ ...base, id: "" });
    expect(isCloudEvent(bad)).toBe(true);
    expect(bad.id).toBe("");
  });
});

describe("extensions declared in the default registry", () => {
  it("refuses a value no decoder that knows the declaration would read back", () => {
    // severitynumber is declared Integer, deprecated Boolean, expirytime Timestamp (the spec's):
    // each was sent as given and refused by every receiver (ce-severitynumber: high).
    for (const [name, value] of [
      ["severitynumber", "high"],
      ["severitynumber", true],
      ["deprecated", "maybe"],
      ["deprecated", 1],
      ["expirytime", "tomorrow"],
    ] as const) {
      expect(() => new CloudEvent({ ...base, [name]: value })).toThrow(
        expect.objectContaining({ code: "InvalidEvent", attribute: name }),
      );
    }
  });

  it("takes values of the type, and strings that read as it, as decoders do", () => {
    const event = new CloudEvent({
      ...base,
      severitynumber: 9,
      deprecated: "true",
      expirytime: "2030-01-01T00:00:00Z",
      severitytext: "anything at all",
      priority: "high",
    });
    expect(event.severitynumber).toBe(9);
    // Kept as given: the check reads it, it does not rewrite it.
    expect(event.deprecated).toBe("true");
    expect(event.priority).toBe("high");
  });

  it("follows the application's declarations", () => {
    // (Vitest gives each test file its own modules: the declaration stays in this file.)
    declareExtension({ name: "eventtestretries", type: "Integer" });
    expect(() => new CloudEvent({ ...base, eventtestretries: "many" })).toThrow(
      expect.objectContaining({ code: "InvalidEvent", attribute: "eventtestretries" }),
    );
    expect(new CloudEvent({ ...base, eventtestretries: 3 }).eventtestretries).toBe(3);
  });
});

describe("the messages of a refused String attribute", () => {
  it("say what is wrong with it: missing, another type, empty, or a character a String may not hold", () => {
    const message = (init: Record<string, unknown>) => {
      try {
        new CloudEvent({ ...base, ...init } as never);
      } catch (err) {
        return (err as Error).message;
      }
      return "accepted";
    };
    expect(message({ id: undefined })).toBe("id is required and must be a non-empty String");
    expect(message({ id: 5 })).toBe("id is required and must be a non-empty String, got a number");
    expect(message({ type: "" })).toBe(
      "type is required and must be a non-empty String, got an empty one",
    );
    // Read from a file with its line break: it said only "must be a non-empty String".
    expect(message({ subject: "orders\n" })).toMatch(
      /^subject must be a non-empty String without control characters.*\(a tab or a line break is one\), got "orders\\n"$/,
    );
  });
});
