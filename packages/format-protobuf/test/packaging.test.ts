import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const here = (p: string) => new URL(p, import.meta.url);
const manifest = JSON.parse(readFileSync(here("../package.json"), "utf8"));

describe("installing @posthorn/format-protobuf", () => {
  it("brings no Avro library and no runtime dependency", () => {
    const named = [
      manifest.dependencies,
      manifest.peerDependencies,
      manifest.optionalDependencies,
    ].flatMap((d) => Object.keys(d ?? {}));
    expect(named.some((n) => /avsc|avro/.test(n))).toBe(false);
    expect(Object.keys(manifest.dependencies ?? {})).toEqual([]);
    expect(Object.keys(manifest.peerDependencies).sort()).toEqual(["@posthorn/core", "protobufjs"]);
  });

  it("imports nothing but core from its source (protobufjs types are structural)", () => {
    for (const file of readdirSync(here("../src"))) {
      const text = readFileSync(here(`../src/${file}`), "utf8");
      const imports = [...text.matchAll(/from "([^"]+)"/g)].map((m) => m[1] as string);
      for (const spec of imports) expect(spec).toMatch(/^(\.\/|@posthorn\/core$)/);
    }
  });
});
