import {
  CloudEvent,
  type EventFormat,
  ExtensionRegistry,
  extensions,
  isPosthornError,
} from "@posthorn/core";
import { describe, expect, it } from "vitest";

/** What a format factory takes that {@link describeFormatWithRegistry} sets. */
export interface RegistryFormatOptions {
  /** The registry the format is made with. */
  registry?: ExtensionRegistry;
  /** The JSON nesting limit for decoding. */
  maxDepth?: number;
}

const declared = new ExtensionRegistry([
  { name: "priority", type: "Integer" },
  { name: "checksum", type: "Binary" },
]);

// Sent by a producer that declares nothing: the declared types travel as their strings.
const stringly = new CloudEvent({
  specversion: "1.0",
  id: "registry-1",
  source: "/registry",
  type: "com.example.registry",
  priority: "-7",
  checksum: "AAH+/w==",
  untyped: "42",
  datacontenttype: "application/json",
  data: { ok: true },
});

function nested(depth: number): unknown {
  let value: unknown = 1;
  for (let i = 0; i < depth; i++) value = { v: value };
  return value;
}

/**
 * Runs the tests of {@link EventFormat.withRegistry} against a format factory: the adapted format
 * reads declared extensions from the new registry, keeps everything else (name, content types,
 * limits), leaves the original as it was, and is the format itself for the registry it already has.
 *
 * @param make - the format's factory, e.g. `jsonFormat`
 * @example
 * ```ts
 * describeFormatWithRegistry(jsonFormat);
 * ```
 */
export function describeFormatWithRegistry(
  make: (options: RegistryFormatOptions) => EventFormat,
): void {
  const plain = make({});
  describe(`${plain.name}: withRegistry`, () => {
    const adapt = (format: EventFormat, registry: ExtensionRegistry): EventFormat => {
      expect(typeof format.withRegistry).toBe("function");
      return (format.withRegistry as (r: ExtensionRegistry) => EventFormat).call(format, registry);
    };

    it("reads declared extensions from the new registry, the original keeps its own", () => {
      const bytes = make({ registry: new ExtensionRegistry() }).encode(stringly);
      const typed = adapt(plain, declared).decode(bytes);
      expect(typed.priority).toBe(-7);
      expect(typed.checksum).toEqual(new Uint8Array([0, 1, 254, 255]));
      expect(typed.untyped).toBe("42");
      // The same as a format made with that registry.
      expect(typed).toEqual(make({ registry: declared }).decode(bytes));
      const untyped = plain.decode(bytes);
      expect(untyped.priority).toBe("-7");
      expect(untyped.checksum).toBe("AAH+/w==");
    });

    it("applies the registry to batches too, where the format has them", () => {
      const adapted = adapt(plain, declared);
      if (plain.encodeBatch === undefined || adapted.decodeBatch === undefined) {
        expect(adapted.decodeBatch).toBe(plain.decodeBatch);
        return;
      }
      const back = adapted.decodeBatch(plain.encodeBatch([stringly, stringly]));
      expect(back.map((e) => e.priority)).toEqual([-7, -7]);
    });

    it("keeps the name, content types and text", () => {
      const adapted = adapt(plain, declared);
      expect(adapted.name).toBe(plain.name);
      expect(adapted.contentType).toBe(plain.contentType);
      expect(adapted.batchContentType).toBe(plain.batchContentType);
      expect(adapted.text).toBe(plain.text);
    });

    it("keeps the nesting limit the format was made with", () => {
      const limited = adapt(make({ maxDepth: 3 }), declared);
      const deep = plain.encode(stringly.cloneWith({ data: nested(10) }));
      let err: unknown;
      try {
        limited.decode(deep);
      } catch (e) {
        err = e;
      }
      expect(isPosthornError(err, "MalformedInput")).toBe(true);
      // and only that: shallow data and the declared types still come through
      const shallow = limited.decode(plain.encode(stringly.cloneWith({ data: nested(2) })));
      expect(shallow.priority).toBe(-7);
      expect(shallow.data).toEqual(nested(2));
      // the default limit (128) is kept as well
      expect(adapt(plain, declared).decode(deep).data).toEqual(nested(10));
    });

    it("is the format itself for the registry it already uses", () => {
      expect(adapt(plain, extensions)).toBe(plain);
      const adapted = adapt(plain, declared);
      expect(adapt(adapted, declared)).toBe(adapted);
      const own = make({ registry: declared });
      expect(adapt(own, declared)).toBe(own);
      // and an adapted format adapts back
      const back = adapt(adapted, extensions).decode(plain.encode(stringly));
      expect(back.priority).toBe("-7");
    });
  });
}
