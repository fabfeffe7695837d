#!/usr/bin/env node
// Installs the published packages from their npm tarballs into fresh projects outside the
// monorepo, one binding per project, after `npm run build`, as a user would. For every scenario:
//
// - the installed tree holds the Posthorn packages asked for, the peers the user chose and what
//   those peers depend on, and nothing else that a Posthorn package could bring: no other
//   binding's client, no format library that was not asked for, no other @posthorn package;
// - a small program, run as ESM (.mjs) and as CommonJS (.cjs), encodes an event with the
//   binding's mapping functions, decodes it back and checks it with core's `equivalent`;
// - the same program as TypeScript (.mts and .cts) typechecks against the shipped declarations
//   (`--skipLibCheck false`) under `node16` and under `preserve` + `bundler` resolution.
//
// Every packed tarball must also hold each entry of its package's `files` list: one that matches
// nothing fails the check (a README.md listed there and missing leaves the npm page empty).
//
// Usage: node scripts/check-install.mjs [--keep] [scenario ...]
// Scenario names as printed (default: all); --keep leaves the projects in the temporary folder
// and prints where. Exits non-zero when any scenario fails or a tarball lacks a `files` entry.
// Peers are pinned to the versions installed in the monorepo, so a run needs the npm registry
// only for what npm's cache lacks.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
const CONCURRENCY = 3;

/** The format packages, by the short name a scenario uses, with the export the program reads. */
const FORMATS = {
  json: { pkg: "@posthorn/format-json", variable: "fjson", value: "fjson.json" },
  avro: { pkg: "@posthorn/format-avro", variable: "favro", value: "favro.avro" },
  protobuf: {
    pkg: "@posthorn/format-protobuf",
    variable: "fprotobuf",
    value: "fprotobuf.protobuf",
  },
};

/**
 * One project per scenario. `peers` are what the user installs next to the Posthorn packages:
 * the transport client picked among the binding's peer dependencies, and the required peers of
 * the formats (both checked against the manifests). `runtime` names peers the program itself
 * imports (as the binding's README shows), with a default import in ESM. `browser` bindings are
 * also typechecked as a bundled browser app would be: DOM types and no Node types. `lib` adds to
 * the TypeScript libraries.
 */
const SCENARIOS = [
  {
    name: "mqtt",
    binding: "@posthorn/binding-mqtt",
    formats: ["json"],
    peers: ["mqtt"],
    // mqtt's own declarations (through worker-timers) name DOM types such as Worker.
    lib: ["dom"],
  },
  { name: "kafka", binding: "@posthorn/binding-kafka", formats: ["json"], peers: ["kafkajs"] },
  { name: "http", binding: "@posthorn/binding-http", formats: ["json"], peers: [], browser: true },
  {
    name: "nats",
    binding: "@posthorn/binding-nats",
    formats: ["json"],
    peers: ["@nats-io/transport-node"],
  },
  {
    name: "amqp",
    binding: "@posthorn/binding-amqp",
    formats: ["json"],
    peers: ["rhea"],
    runtime: { rhea: "rhea" },
  },
  {
    name: "websocket",
    binding: "@posthorn/binding-websocket",
    formats: ["json"],
    peers: ["ws"],
    browser: true,
  },
  {
    name: "nats-v2+avro+protobuf",
    binding: "@posthorn/binding-nats",
    formats: ["json", "avro", "protobuf"],
    peers: ["nats", "avsc"],
  },
];

// The mapping round trips, one body per binding, shared by the .mjs, .cjs, .mts and .cts files:
// plain JavaScript that also typechecks under --strict. In scope: core, binding, the format
// modules, `formats` (their formats), `event`, `other`, `check(label, ok)`, the `runtime` imports
// and the SUBPATHS modules.
const BODIES = {
  "@posthorn/binding-mqtt": `
check("MQTT 5 binary", core.equivalent(binding.fromMqttMessage(binding.toMqttMessage(event, { mode: "binary" }), { formats }), event));
for (const format of formats) {
  const message = binding.toMqttMessage(event, { mode: "structured", format });
  check("MQTT 5 structured " + format.name, core.equivalent(binding.fromMqttMessage(message, { formats }), event));
}
const v311 = binding.toMqttMessage(event, { protocolVersion: 4, format: fjson.json });
check("MQTT 3.1.1 structured json", core.equivalent(binding.fromMqttMessage(v311, { formats, protocolVersion: 4 }), event));
check("MQTT 5 binary has user properties", binding.toMqttMessage(event, { mode: "binary" }).userProperties?.["type"] === event.type);
check("embedded-broker entry point loads without aedes", typeof embedded.startEmbeddedMqttBroker === "function");
`,
  "@posthorn/binding-kafka": `
const binary = binding.toKafkaRecord(event, { mode: "binary", key: "order-42" });
check("Kafka binary", core.equivalent(binding.fromKafkaRecord(binary, { formats }), event));
check("Kafka binary has ce_ headers", binary.headers["ce_type"] === event.type);
for (const format of formats) {
  const record = binding.toKafkaRecord(event, { mode: "structured", format, key: "order-42" });
  check("Kafka structured " + format.name, core.equivalent(binding.fromKafkaRecord(record, { formats }), event));
}
`,
  "@posthorn/binding-http": `
const binary = binding.toHttpMessage(event, { mode: "binary" });
const fromBinary = binding.fromHttpMessage({ headers: binary.headers, body: binary.body }, { formats });
check("HTTP binary", !Array.isArray(fromBinary) && core.equivalent(fromBinary, event));
check("HTTP binary has ce- headers", binary.headers["ce-type"] === event.type);
for (const format of formats) {
  const message = binding.toHttpMessage(event, { mode: "structured", format });
  const decoded = binding.fromHttpMessage(message, { formats });
  check("HTTP structured " + format.name, !Array.isArray(decoded) && core.equivalent(decoded, event));
}
const batch = binding.toHttpMessage([event, other], { mode: "batch", format: fjson.json });
const decodedBatch = binding.fromHttpMessage(batch, { formats });
check("HTTP batch json", Array.isArray(decodedBatch) && decodedBatch.length === 2 && core.equivalent(decodedBatch[0], event) && core.equivalent(decodedBatch[1], other));
check("Express entry point loads without express", typeof express.expressHandler === "function");
check("Fastify entry point loads without fastify", typeof fastify.fastifyCloudEvents === "function");
`,
  "@posthorn/binding-nats": `
const binary = binding.toNatsMessage(event, { mode: "binary" });
check("NATS binary", core.equivalent(binding.fromNatsMessage(binary, { formats }), event));
check("NATS binary has ce- headers", binary.headers.get("ce-type") === event.type);
for (const format of formats) {
  const message = binding.toNatsMessage(event, { mode: "structured", format });
  check("NATS structured " + format.name, core.equivalent(binding.fromNatsMessage(message, { formats }), event));
}
`,
  "@posthorn/binding-amqp": `
// Through rhea's own encoder and decoder, as a message crosses the wire.
const binary = binding.toAmqpMessage(event, { mode: "binary", codec: rhea });
check("AMQP binary", core.equivalent(binding.decodeAmqpMessage(rhea.message.decode(rhea.message.encode(binary)), { formats }), event));
check("AMQP binary has cloudEvents: properties", binary.application_properties?.["cloudEvents:type"] === event.type);
check("AMQP binary, pre-encoded", core.equivalent(binding.decodeAmqpMessage(rhea.message.decode(binding.encodeAmqpMessage(event)), { formats }), event));
for (const format of formats) {
  const message = binding.toAmqpMessage(event, { mode: "structured", format, codec: rhea });
  check("AMQP structured " + format.name, core.equivalent(binding.decodeAmqpMessage(rhea.message.decode(rhea.message.encode(message)), { formats }), event));
}
`,
  "@posthorn/binding-websocket": `
// The WebSockets binding has structured mode only (one formatted event per WebSocket message).
for (const format of formats) {
  const frame = binding.toWebSocketFrame(event, format);
  const received = frame.text ? binding.frameText(frame) : frame.data;
  check("WebSocket structured " + format.name, core.equivalent(binding.fromWebSocketFrame(received, format), event));
  check("WebSocket subprotocol " + format.name, binding.formatOfSubprotocol(formats, binding.subprotocolOf(format)) === format);
}
`,
};

/** Extra entry points of a binding the program loads, to show they need no optional peer. */
const SUBPATHS = {
  "@posthorn/binding-http": {
    express: "@posthorn/binding-http/express",
    fastify: "@posthorn/binding-http/fastify",
  },
  "@posthorn/binding-mqtt": { embedded: "@posthorn/binding-mqtt/embedded" },
};

function readJson(path) {
  return JSON.parse(readFileSync(path, "utf8"));
}

/** The published packages of the monorepo, by name: directory and manifest. */
function publishedPackages() {
  const out = new Map();
  for (const dir of readdirSync(join(root, "packages")).sort()) {
    const manifest = join(root, "packages", dir, "package.json");
    if (!existsSync(manifest)) continue;
    const pkg = readJson(manifest);
    if (!pkg.private) out.set(pkg.name, { dir: join(root, "packages", dir), pkg });
  }
  return out;
}

const isPosthorn = (name) => name === "posthorn" || name.startsWith("@posthorn/");

/** Peer dependencies npm installs on its own: the ones not marked optional. */
function requiredPeers(pkg) {
  const optional = pkg.peerDependenciesMeta ?? {};
  return Object.keys(pkg.peerDependencies ?? {}).filter((name) => !optional[name]?.optional);
}

/** The version of a package installed in the monorepo, to pin a scenario's peers to. */
function monorepoVersion(name) {
  const manifest = join(root, "node_modules", name, "package.json");
  if (!existsSync(manifest)) throw new Error(`${name} is not installed in the monorepo`);
  return readJson(manifest).version;
}

/** Runs a command; resolves with its exit code and output, never rejects on a non-zero exit. */
function run(command, args, options) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

// npm run passes its own configuration down as npm_* variables (the monorepo's prefix and
// workspaces among them); the nested installs must see only the user's own settings.
const KEPT_NPM_CONFIG = new Set(["cache", "registry", "userconfig", "globalconfig", "cafile"]);
const npmEnv = Object.fromEntries(
  Object.entries(process.env).filter(([key]) => {
    const lower = key.toLowerCase();
    if (lower.startsWith("npm_config_")) return KEPT_NPM_CONFIG.has(lower.slice(11));
    return !lower.startsWith("npm_") && key !== "INIT_CWD";
  }),
);
npmEnv.npm_config_update_notifier = "false";

const seconds = (ms) => `${(ms / 1000).toFixed(1)}s`;
const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;

/** The dependency graph `npm ls --all --json` describes, peer edges included. */
function graphOf(tree) {
  const nodes = new Map();
  const visit = (name, info) => {
    // An optional peer that is not installed is listed without a version.
    if (info.version === undefined || info.missing) return undefined;
    const key = `${name}@${info.version}`;
    if (!nodes.has(key)) nodes.set(key, { name, version: info.version, edges: new Set() });
    const node = nodes.get(key);
    if (info.resolved !== undefined) node.resolved = info.resolved;
    for (const [child, childInfo] of Object.entries(info.dependencies ?? {})) {
      const childKey = visit(child, childInfo);
      if (childKey !== undefined) node.edges.add(childKey);
    }
    return key;
  };
  const top = [];
  for (const [name, info] of Object.entries(tree.dependencies ?? {})) {
    const key = visit(name, info);
    if (key !== undefined) top.push(key);
  }
  return { nodes, top };
}

/** Keys reachable from `start`, not entering `stop` keys; with the edge each was first reached by. */
function reach(graph, start, stop = new Set()) {
  const via = new Map(start.map((key) => [key, undefined]));
  const queue = [...start];
  while (queue.length > 0) {
    const key = queue.shift();
    for (const next of graph.nodes.get(key).edges) {
      if (via.has(next) || stop.has(next)) continue;
      via.set(next, key);
      queue.push(next);
    }
  }
  return via;
}

function pathTo(via, key) {
  const path = [];
  for (let at = key; at !== undefined; at = via.get(at)) path.unshift(at);
  return path.join(" > ");
}

/** The four programs of a scenario: .mjs and .cjs to run, .mts and .cts to typecheck. */
function programs(scenario, posthornNames) {
  const modules = [
    ["core", "@posthorn/core"],
    ["binding", scenario.binding],
    ...scenario.formats.map((f) => [FORMATS[f].variable, FORMATS[f].pkg]),
    ...Object.entries(SUBPATHS[scenario.binding] ?? {}),
  ];
  const defaults = Object.entries(scenario.runtime ?? {});
  const body = [
    `const formats = [${scenario.formats.map((f) => FORMATS[f].value).join(", ")}];`,
    `const event = core.CloudEvent.create({ type: "com.example.order.created", source: "/orders", subject: "order-42", datacontenttype: "application/json", data: { orderId: 42, note: "h\\u00e9llo" }, tenant: "acme" });`,
    `const other = core.CloudEvent.create({ type: "com.example.order.created", source: "/orders", datacontenttype: "application/json", data: { orderId: 43 } });`,
    `check("equivalent tells two events apart", !core.equivalent(event, other) && core.equivalent(event, event));`,
    BODIES[scenario.binding].trim(),
  ].join("\n");
  const jsCheck = [
    "let failures = 0;",
    "function check(label, ok) {",
    '  console.log((ok ? "ok   " : "FAIL ") + label);',
    "  if (!ok) failures++;",
    "}",
  ].join("\n");
  const tsCheck = [
    "function check(label: string, ok: boolean): void {",
    "  if (!ok) throw new Error(label);",
    "}",
  ].join("\n");
  const exit = "if (failures > 0) process.exitCode = 1;";
  // Each package resolves to its ESM build from import and to its CommonJS build from require.
  const resolveChecks = (resolver, as, ext) =>
    posthornNames
      .map(
        (name) =>
          `check("${name} loads as ${as}", /[\\\\/]dist[\\\\/]index\\.${ext}$/.test(${resolver}("${name}")));`,
      )
      .join("\n");
  const importLines = modules.map(([v, p]) => `import * as ${v} from "${p}";`);
  const defaultImports = defaults.map(([v, p]) => `import ${v} from "${p}";`);
  const requireLines = [...modules, ...defaults].map(([v, p]) => `const ${v} = require("${p}");`);
  const importRequireLines = [...modules, ...defaults].map(
    ([v, p]) => `import ${v} = require("${p}");`,
  );
  return {
    "check.mjs": [
      'import { fileURLToPath } from "node:url";',
      ...importLines,
      ...defaultImports,
      jsCheck,
      "const resolve = (specifier) => fileURLToPath(import.meta.resolve(specifier));",
      resolveChecks("resolve", "ESM", "js"),
      body,
      exit,
    ].join("\n"),
    "check.cjs": [
      ...requireLines,
      jsCheck,
      resolveChecks("require.resolve", "CommonJS", "cjs"),
      body,
      exit,
    ].join("\n"),
    "consumer.mts": [...importLines, ...defaultImports, tsCheck, body].join("\n"),
    "consumer.cts": [...importRequireLines, tsCheck, body].join("\n"),
  };
}

// A Node 20 project (no DOM), and a bundled app that may run in a browser.
const TSC_MODES = {
  node16: { args: ["--module", "node16", "--moduleResolution", "node16"], lib: ["es2023"] },
  bundler: {
    args: ["--module", "preserve", "--moduleResolution", "bundler"],
    lib: ["es2023", "dom"],
  },
};

async function runScenario(scenario, ctx) {
  const started = Date.now();
  const lines = [];
  const failures = [];
  const fail = (what) => failures.push(what);
  // The Posthorn packages: the binding, the formats, core, and what they declare in turn.
  const posthorn = new Set(["@posthorn/core", scenario.binding]);
  for (const f of scenario.formats) posthorn.add(FORMATS[f].pkg);
  for (let grew = true; grew; ) {
    grew = false;
    for (const name of [...posthorn]) {
      const pkg = ctx.packages.get(name).pkg;
      for (const dep of [...Object.keys(pkg.dependencies ?? {}), ...requiredPeers(pkg)]) {
        if (isPosthorn(dep) && !posthorn.has(dep)) {
          lines.push(`also installs ${dep}: ${name} declares it`);
          posthorn.add(dep);
          grew = true;
        }
      }
    }
  }
  // The peers the user installs, each one a peer dependency some installed package declares;
  // a required peer the scenario does not expect is one npm would install on its own.
  const peers = new Set(scenario.peers);
  const declared = new Set();
  for (const name of posthorn) {
    const pkg = ctx.packages.get(name).pkg;
    for (const peer of Object.keys(pkg.peerDependencies ?? {})) declared.add(peer);
    for (const peer of requiredPeers(pkg)) {
      if (!isPosthorn(peer) && !peers.has(peer)) {
        fail(`${name} requires the peer ${peer}, which a ${scenario.name} user should not need`);
      }
    }
  }
  for (const peer of peers) {
    if (!declared.has(peer)) fail(`${peer} is a peer dependency of none of ${[...posthorn]}`);
  }
  // @types/node is the user's own (a Node project in TypeScript), pinned like the peers.
  const userChosen = new Set([...peers, "@types/node"]);

  const dir = join(ctx.tmp, scenario.name.replace(/[^a-z0-9.-]/gi, "_"));
  mkdirSync(dir);
  await writeFile(
    join(dir, "package.json"),
    `${JSON.stringify({ name: "posthorn-install-check", private: true, version: "0.0.0" }, null, 2)}\n`,
  );
  const specs = [
    ...[...posthorn].map((name) => ctx.tarballs.get(name).path),
    ...[...userChosen].map((name) => `${name}@${monorepoVersion(name)}`),
  ];
  const install = await run(
    "npm",
    [
      "install",
      "--no-audit",
      "--no-fund",
      "--prefer-offline",
      "--save-exact",
      "--loglevel=error",
      ...specs,
    ],
    { cwd: dir, env: npmEnv },
  );
  const installed = Date.now();
  let count = 0;
  let typesOnly = 0;
  if (install.code !== 0) {
    fail(`npm install exited ${install.code}\n${install.stdout}${install.stderr}`);
  } else {
    const ls = await run("npm", ["ls", "--all", "--json"], { cwd: dir, env: npmEnv });
    const tree = JSON.parse(ls.stdout);
    for (const problem of tree.problems ?? []) fail(`npm ls: ${problem}`);
    const graph = graphOf(tree);
    count = graph.nodes.size;
    const withoutTypes = reach(
      graph,
      graph.top.filter((key) => graph.nodes.get(key).name !== "@types/node"),
    );
    typesOnly = count - withoutTypes.size;
    const byName = (names) =>
      new Set(graph.top.filter((key) => names.has(graph.nodes.get(key).name)));
    const chosenKeys = byName(userChosen);
    // What the user's own choices bring (a client's dependencies: mqtt brings ws, for one).
    const ofChoices = reach(graph, [...chosenKeys]);
    // What the Posthorn packages bring by themselves: everything reached from them without
    // passing through a package the user installed on purpose.
    const posthornKeys = [...byName(posthorn)];
    const ofPosthorn = reach(graph, posthornKeys, chosenKeys);
    for (const [key, node] of graph.nodes) {
      if (isPosthorn(node.name) && !posthorn.has(node.name)) {
        fail(`unexpected Posthorn package ${key}`);
      }
      if (ctx.watched.has(node.name) && !ofChoices.has(key) && !ofPosthorn.has(key)) {
        fail(`${key} is installed: ${pathTo(reach(graph, graph.top), key)}`);
      }
    }
    for (const key of ofPosthorn.keys()) {
      const name = graph.nodes.get(key).name;
      if (!isPosthorn(name)) fail(`Posthorn brings ${key}: ${pathTo(ofPosthorn, key)}`);
    }
    for (const name of posthorn) {
      const nodes = [...graph.nodes.values()].filter((node) => node.name === name);
      if (nodes.length === 0) fail(`${name} is not in the installed tree`);
      // From the tarball packed here, never from the registry.
      const tarball = `file:${ctx.tarballs.get(name).path}`;
      for (const node of nodes) {
        if (node.resolved !== tarball) fail(`${name} came from ${node.resolved}, not ${tarball}`);
      }
    }

    for (const [file, text] of Object.entries(programs(scenario, [...posthorn].sort()))) {
      await writeFile(join(dir, file), `${text}\n`);
    }
    for (const file of ["check.mjs", "check.cjs"]) {
      const r = await run(process.execPath, [file], { cwd: dir });
      const checks = r.stdout.split("\n").filter((l) => /^(ok|FAIL)/.test(l));
      const passed = checks.filter((l) => l.startsWith("ok")).length;
      lines.push(`${file.endsWith(".mjs") ? "ESM" : "CJS"} ${passed}/${checks.length} checks`);
      if (r.code !== 0 || passed !== checks.length || checks.length === 0) {
        fail(`node ${file} exited ${r.code}\n${r.stdout}${r.stderr}`);
      }
    }
    // An empty folder as the only type root: no @types package is visible without an import.
    mkdirSync(join(dir, "no-types"));
    for (const [mode, { args, lib }] of Object.entries(TSC_MODES)) {
      const browser = scenario.browser === true && mode === "bundler";
      const r = await run(
        process.execPath,
        [
          tsc,
          ...args,
          "--lib",
          [...new Set([...lib, ...(scenario.lib ?? [])])].join(","),
          ...(browser ? ["--typeRoots", "no-types"] : []),
          "--target",
          "es2022",
          "--strict",
          "--noEmit",
          "--skipLibCheck",
          "false",
          "consumer.mts",
          "consumer.cts",
        ],
        { cwd: dir },
      );
      const label = browser ? `${mode}, no Node types` : mode;
      lines.push(`tsc ${label} ${r.code === 0 ? "ok" : "FAIL"}`);
      if (r.code !== 0) fail(`tsc (${label}) exited ${r.code}\n${r.stdout}${r.stderr}`);
    }
  }
  return {
    name: scenario.name,
    ok: failures.length === 0,
    summary: [
      `${[...posthorn].map((n) => n.replace("@posthorn/", "")).join(" ")}${peers.size > 0 ? ` + ${[...peers].join(" ")}` : ""}`,
      `${count} packages installed (${typesOnly} of them only for @types/node)`,
      ...lines,
      `install ${seconds(installed - started)}, total ${seconds(Date.now() - started)}`,
    ],
    failures,
  };
}

async function main() {
  const started = Date.now();
  const keep = process.argv.includes("--keep");
  const only = process.argv.slice(2).filter((arg) => arg !== "--keep");
  const scenarios = SCENARIOS.filter((s) => only.length === 0 || only.includes(s.name));
  if (scenarios.length === 0) {
    console.error(
      `no scenario named ${only.join(", ")}; known: ${SCENARIOS.map((s) => s.name).join(", ")}`,
    );
    process.exit(2);
  }
  const packages = publishedPackages();
  // Every third-party package a Posthorn package names: none may turn up unless a scenario
  // chose it (or what it chose depends on it). Plus frameworks and clients the tests use.
  const watched = new Set(["express", "fastify", "amqplib", "@confluentinc/kafka-javascript"]);
  for (const { pkg } of packages.values()) {
    for (const name of [
      ...Object.keys(pkg.dependencies ?? {}),
      ...Object.keys(pkg.peerDependencies ?? {}),
    ]) {
      if (!isPosthorn(name)) watched.add(name);
    }
  }
  const needed = new Set(["@posthorn/core"]);
  for (const s of scenarios) {
    needed.add(s.binding);
    for (const f of s.formats) needed.add(FORMATS[f].pkg);
  }
  for (const name of packages.keys()) {
    if (name.startsWith("@posthorn/binding-") || name.startsWith("@posthorn/format-")) {
      needed.add(name);
    }
  }
  for (const name of needed) {
    if (!packages.has(name)) throw new Error(`${name} is not a published package of the monorepo`);
    if (!existsSync(join(packages.get(name).dir, "dist"))) {
      console.error(`${name}: no dist/ (run npm run build first)`);
      process.exit(1);
    }
  }

  const tmp = mkdtempSync(join(tmpdir(), "posthorn-install-"));
  let failed = 0;
  let missingFiles = 0;
  try {
    const packDir = join(tmp, "tarballs");
    mkdirSync(packDir);
    const names = [...needed].sort();
    const pack = await run(
      "npm",
      ["pack", "--json", "--pack-destination", packDir, ...names.flatMap((n) => ["-w", n])],
      { cwd: root, env: npmEnv },
    );
    if (pack.code !== 0) throw new Error(`npm pack exited ${pack.code}\n${pack.stderr}`);
    const tarballs = new Map();
    const missing = [];
    console.log("tarballs:");
    for (const t of JSON.parse(pack.stdout)) {
      tarballs.set(t.name, { path: join(packDir, t.filename) });
      console.log(
        `  ${t.name.padEnd(28)} ${kib(t.size).padStart(10)} packed ${kib(t.unpackedSize).padStart(10)} unpacked ${String(t.entryCount).padStart(3)} files`,
      );
      // A `files` entry that matches nothing: something meant to ship (a README) does not.
      for (const entry of packages.get(t.name).pkg.files ?? []) {
        const pattern = entry.replace(/^\.\//, "").replace(/\/$/, "");
        if (!t.files.some((f) => f.path === pattern || f.path.startsWith(`${pattern}/`))) {
          missing.push(`${t.name}: "files" lists ${entry}, and the tarball has no such file`);
        }
      }
    }
    for (const m of missing) console.log(`FAIL ${m}`);
    missingFiles = missing.length;
    const ctx = { packages, tarballs, tmp, watched };
    const results = [];
    const queue = [...scenarios];
    await Promise.all(
      Array.from({ length: Math.min(CONCURRENCY, queue.length) }, async () => {
        while (queue.length > 0) {
          const scenario = queue.shift();
          let result;
          try {
            result = await runScenario(scenario, ctx);
          } catch (err) {
            result = { name: scenario.name, ok: false, summary: [], failures: [String(err.stack)] };
          }
          results.push(result);
          console.log(`\n${result.ok ? "ok  " : "FAIL"} ${result.name}`);
          for (const line of result.summary) console.log(`     ${line}`);
          for (const f of result.failures)
            console.log(`     FAIL ${f.replace(/\n/g, "\n       ")}`);
        }
      }),
    );
    failed = results.filter((r) => !r.ok).length;
    console.log(
      `\ninstall check: ${results.length - failed} of ${results.length} scenarios passed in ${seconds(Date.now() - started)}`,
    );
    if (missingFiles > 0) {
      console.log(
        `install check: ${missingFiles} "files" entries missing from the tarballs (above)`,
      );
    }
  } finally {
    if (keep) console.log(`kept ${tmp}`);
    else rmSync(tmp, { recursive: true, force: true });
  }
  if (failed > 0 || missingFiles > 0) process.exit(1);
}

await main();
