#!/usr/bin/env node
// Runs publint and attw (Are The Types Wrong) on every published package, after `npm run build`,
// and checks that each command a package declares in `bin` is linked into the workspace's
// node_modules/.bin and runs (`--version` prints the package's version).
// Exits non-zero when any check reports a problem for any package.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const only = process.argv.slice(2);
let failed = 0;

for (const dir of readdirSync(join(root, "packages")).sort()) {
  const pkgDir = join(root, "packages", dir);
  const manifest = join(pkgDir, "package.json");
  if (!existsSync(manifest)) continue;
  const pkg = JSON.parse(readFileSync(manifest, "utf8"));
  if (pkg.private) continue;
  if (only.length > 0 && !only.includes(dir) && !only.includes(pkg.name)) continue;
  if (!existsSync(join(pkgDir, "dist"))) {
    console.error(`${pkg.name}: no dist/ (run npm run build first)`);
    failed++;
    continue;
  }
  for (const command of Object.keys(pkg.bin ?? {})) {
    const link = join(root, "node_modules", ".bin", command);
    try {
      const printed = execFileSync(link, ["--version"], { encoding: "utf8" }).trim();
      if (printed !== pkg.version) throw new Error(`--version printed "${printed}"`);
      console.log(`ok   ${"bin".padEnd(8)} ${pkg.name} (${command})`);
    } catch (err) {
      failed++;
      console.error(`FAIL ${"bin".padEnd(8)} ${pkg.name}: ${link} does not run: ${err.message}`);
    }
  }
  for (const [tool, args] of [
    ["publint", ["publint", "--strict", pkgDir]],
    ["attw", ["attw", "--pack", pkgDir, "--format", "table-flipped", "--profile", "node16"]],
  ]) {
    try {
      execFileSync("npx", ["--no-install", ...args], { stdio: "pipe", cwd: root });
      console.log(`ok   ${tool.padEnd(8)} ${pkg.name}`);
    } catch (err) {
      failed++;
      console.error(`FAIL ${tool.padEnd(8)} ${pkg.name}\n${err.stdout ?? ""}${err.stderr ?? ""}`);
    }
  }
}
if (failed > 0) {
  console.error(`${failed} package check(s) failed`);
  process.exit(1);
}
