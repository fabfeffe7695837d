import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const here = (p: string) => new URL(p, import.meta.url);
const manifest = JSON.parse(readFileSync(here("../package.json"), "utf8"));

describe("installing @posthorn/format-avro", () => {
  it("brings no protobuf library and no runtime dependency", () => {
    const named = [
      manifest.dependencies,
      manifest.peerDependencies,
      manifest.optionalDependencies,
    ].flatMap((d) => Object.keys(d ?? {}));
    expect(named.some((n) => /protobuf/.test(n))).toBe(false);
    expect(Object.keys(manifest.dependencies ?? {})).toEqual([]);
    expect(Object.keys(manifest.peerDependencies).sort()).toEqual(["@posthorn/core", "avsc"]);
  });

  it("imports nothing but core and avsc from its source", () => {
    for (const file of readdirSync(here("../src"))) {
      const text = readFileSync(here(`../src/${file}`), "utf8");
      const imports = [...text.matchAll(/from "([^"]+)"/g)].map((m) => m[1] as string);
      for (const spec of imports) expect(spec).toMatch(/^(\.\/|@posthorn\/core$|avsc$)/);
    }
  });
});
