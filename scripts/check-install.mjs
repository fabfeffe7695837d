#!/usr/bin/env node
// Installs the published packages from their npm tarballs into fresh projects outside the
// monorepo, one binding per project, after `npm run build`, as a user would. Also one project
// each for @posthorn/otel and @posthorn/testkit, and one for the `posthorn` command. For every
// scenario:
//
// - the installed tree holds the Posthorn packages asked for, the peers the user chose and what
//   those peers depend on, what a Posthorn package lists in its `dependencies` (only the CLI has
//   any), and nothing else that a Posthorn package could bring: no other binding's client, no
//   format library that was not asked for, no other @posthorn package, no development tool;
// - a small program, run as ESM (.mjs) and as CommonJS (.cjs), uses the package: a binding's
//   mapping functions encode an event and decode it back, checked with core's `equivalent`;
// - the same program as TypeScript (.mts and .cts) typechecks against the shipped declarations
//   (`--skipLibCheck false`) under `node16` and under `preserve` + `bundler` resolution;
// - for the CLI, the installed bin runs: `posthorn --help` lists the commands and `posthorn demo`
//   (embedded brokers only, nats-server started by the demo) reports every path equivalent.
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
 * One project per scenario. `pkg` is the package the scenario is about, imported by the program
 * as `binding` (or as `as` names it). `peers` are what the user installs next to the Posthorn
 * packages: the transport client picked among the binding's peer dependencies, and the required
 * peers of the formats (both checked against the manifests). `runtime` names peers the program
 * itself imports (as the binding's README shows), with a default import in ESM; `imports` the
 * same as namespace imports. `browser` bindings are also typechecked as a bundled browser app
 * would be: DOM types and no Node types. `lib` adds to the TypeScript libraries. `esmOnly` names
 * entry points that cannot be required, with the error they throw: the CommonJS program checks
 * that they fail with exactly that, and the rest loads. `bin` runs the package's command.
 */
// The heaviest come first (the CLI, then testkit with vitest): three run at a time, and a long
// one started last would run on alone.
const SCENARIOS = [
  // Every transport's client comes with the command (its `dependencies`); the user adds nothing.
  { name: "cli", pkg: "posthorn", as: "cli", formats: [], peers: [], bin: "posthorn" },
  {
    // The root holds the vitest suites (and imports vitest and fast-check); the subpaths, which
    // the CLI uses, need neither. Vitest is ESM only: its CommonJS entry throws on require(), so
    // the root's CommonJS build cannot load whatever testkit does.
    name: "testkit",
    pkg: "@posthorn/testkit",
    as: "testkit",
    formats: [],
    peers: ["vitest", "fast-check"],
    esmOnly: {
      "@posthorn/testkit": "Vitest cannot be imported in a CommonJS module using require()",
    },
  },
  {
    name: "mqtt",
    pkg: "@posthorn/binding-mqtt",
    formats: ["json"],
    peers: ["mqtt"],
    // mqtt's own declarations (through worker-timers) name DOM types such as Worker.
    lib: ["dom"],
  },
  { name: "kafka", pkg: "@posthorn/binding-kafka", formats: ["json"], peers: ["kafkajs"] },
  { name: "http", pkg: "@posthorn/binding-http", formats: ["json"], peers: [], browser: true },
  {
    name: "nats",
    pkg: "@posthorn/binding-nats",
    formats: ["json"],
    peers: ["@nats-io/transport-node"],
  },
  {
    name: "amqp",
    pkg: "@posthorn/binding-amqp",
    formats: ["json"],
    peers: ["rhea"],
    runtime: { rhea: "rhea" },
  },
  {
    name: "websocket",
    pkg: "@posthorn/binding-websocket",
    formats: ["json"],
    peers: ["ws"],
    browser: true,
  },
  {
    name: "nats-v2+avro+protobuf",
    pkg: "@posthorn/binding-nats",
    formats: ["json", "avro", "protobuf"],
    peers: ["nats", "avsc"],
  },
  {
    name: "otel",
    pkg: "@posthorn/otel",
    as: "otel",
    formats: [],
    peers: ["@opentelemetry/api"],
    imports: { api: "@opentelemetry/api" },
  },
];

// The mapping round trips, one body per binding (and one for otel, testkit and the CLI's library),
// shared by the .mjs, .cjs, .mts and .cts files: plain JavaScript that also typechecks under
// --strict. In scope: core, binding (or the scenario's `as`), the format modules, `formats` (their
// formats, when there are any), `event`, `other`, `check(label, ok)`, the `runtime` and `imports`
// modules and the SUBPATHS modules, less the `esmOnly` ones (ESM_BODIES may use those).
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
check("AMQP binary", core.equivalent(binding.fromAmqpMessage(rhea.message.decode(rhea.message.encode(binary)), { formats }), event));
check("AMQP binary has cloudEvents: properties", binary.application_properties?.["cloudEvents:type"] === event.type);
check("AMQP binary, pre-encoded", core.equivalent(binding.fromAmqpMessage(rhea.message.decode(binding.encodeAmqpMessage(event)), { formats }), event));
for (const format of formats) {
  const message = binding.toAmqpMessage(event, { mode: "structured", format, codec: rhea });
  check("AMQP structured " + format.name, core.equivalent(binding.fromAmqpMessage(rhea.message.decode(rhea.message.encode(message)), { formats }), event));
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
  "@posthorn/otel": `
const spanContext = { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags: api.TraceFlags.SAMPLED };
const traced = otel.injectTraceContext(event, api.trace.setSpanContext(api.ROOT_CONTEXT, spanContext));
check("traceparent injected from the context's span", traced.traceparent === "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
const extracted = api.trace.getSpanContext(otel.extractTraceContext(traced, api.ROOT_CONTEXT));
check("span context extracted from the event", extracted !== undefined && extracted.traceId === spanContext.traceId && extracted.spanId === spanContext.spanId && extracted.isRemote === true);
check("event otherwise unchanged", core.equivalent(traced.cloneWith({ traceparent: undefined }), event));
check("no span, no traceparent", otel.injectTraceContext(event, api.ROOT_CONTEXT).traceparent === undefined);
check("all-zero trace id refused", otel.parseTraceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01") === undefined);
`,
  "@posthorn/testkit": `
// instanceof across the packages: the vectors are built by the same (deduplicated) core.
check("valid vectors are CloudEvents of the installed core", vectors.validVectors.length > 0 && vectors.validVectors.every((v) => v.event instanceof core.CloudEvent && core.equivalent(v.event, v.event)));
check("invalid vectors", vectors.invalidVectors.length > 0 && vectors.invalidVectors.every((v) => typeof v.name === "string"));
const kafkaHost = brokers.hostPort("127.0.0.1:19092,127.0.0.2:19093", 9092);
check("brokers.hostPort reads the first host", kafkaHost.host === "127.0.0.1" && kafkaHost.port === 19092);
check("Kafka test broker entry point", typeof kafka.startKafkaBroker === "function");
`,
  posthorn: `
const url = cli.parseEndpointUrl("kafka://user:s3cret@127.0.0.1:9092,127.0.0.2/orders?mode=structured&format=avro");
check("parseEndpointUrl reads hosts, path, mode and format", url.hosts.length === 2 && url.hosts[1]?.host === "127.0.0.2" && url.path === "orders" && url.mode === "structured" && url.format === "avro");
check("parseEndpointUrl hides the password", !url.display.includes("s3cret"));
const transports = cli.listTransports();
check("every transport available", ["http", "ws", "amqp", "mqtt", "kafka", "nats"].every((t) => transports.some((x) => x.transport === t && x.available)));
const built = cli.buildEvent({ type: event.type, source: event.source, subject: "order-42", data: '{"orderId":42}', extensions: ["tenant=acme"] });
check("buildEvent reads JSON data and extensions", built instanceof core.CloudEvent && built.subject === "order-42" && built.tenant === "acme" && JSON.stringify(built.data) === '{"orderId":42}');
`,
};

/** Lines only the ESM programs (.mjs, .mts) run: they use `esmOnly` entry points. */
// Lines only the ESM program runs (not typechecked: the consumers are checked without Node's
// types too). In Node the HTTP publisher sends with node:http (the package's "node" export
// condition): one real request to a receiver on a local server.
const RUN_BODIES = {
  "@posthorn/binding-http": `
const { createServer } = await import("node:http");
const receiver = binding.httpReceiver({ formats });
const server = createServer(binding.createNodeHandler(receiver));
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const publisher = binding.httpPublisher({ url: "http://127.0.0.1:" + server.address().port + "/", retry: false, timeoutMs: 5000 });
const received = (async () => {
  for await (const delivery of receiver) {
    await delivery.accept();
    return delivery.event;
  }
})();
await publisher.publish(event);
check("httpPublisher delivers to httpReceiver over node:http", core.equivalent(await received, event));
await publisher.close();
await receiver.close();
server.closeAllConnections();
server.close();
`,
};

const ESM_BODIES = {
  "@posthorn/testkit": `
check("root exports the vitest suites", typeof testkit.describeBindingConformance === "function" && typeof testkit.describeFormatConformance === "function" && typeof testkit.describeMappingProperties === "function");
`,
};

/** Packages whose `.` export has a `node` condition (dist/index.node.*), which Node resolves. */
const NODE_ENTRY = new Set(["@posthorn/binding-http"]);

/** Extra entry points of a binding the program loads, to show they need no optional peer. */
const SUBPATHS = {
  "@posthorn/testkit": {
    vectors: "@posthorn/testkit/vectors",
    brokers: "@posthorn/testkit/brokers",
    kafka: "@posthorn/testkit/kafka",
  },
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

/**
 * Runs a command; resolves with its exit code and output, never rejects on a non-zero exit. With
 * `timeoutMs`, the command runs in a process group of its own and the whole group (whatever it
 * started, a nats-server among them) is killed when the time is up; `timedOut` then says so.
 */
function run(command, args, { timeoutMs, ...options } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      ...options,
      stdio: ["ignore", "pipe", "pipe"],
      detached: timeoutMs !== undefined,
    });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            try {
              process.kill(-child.pid, "SIGKILL");
            } catch {
              // The group is gone already.
            }
          }, timeoutMs);
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
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
  const esmOnly = scenario.esmOnly ?? {};
  const modules = [
    ["core", "@posthorn/core"],
    [scenario.as ?? "binding", scenario.pkg],
    ...scenario.formats.map((f) => [FORMATS[f].variable, FORMATS[f].pkg]),
    ...Object.entries(SUBPATHS[scenario.pkg] ?? {}),
    ...Object.entries(scenario.imports ?? {}),
  ];
  const required = modules.filter(([, p]) => esmOnly[p] === undefined);
  const defaults = Object.entries(scenario.runtime ?? {});
  const body = [
    ...(scenario.formats.length > 0
      ? [`const formats = [${scenario.formats.map((f) => FORMATS[f].value).join(", ")}];`]
      : []),
    `const event = core.CloudEvent.create({ type: "com.example.order.created", source: "/orders", subject: "order-42", datacontenttype: "application/json", data: { orderId: 42, note: "h\\u00e9llo" }, tenant: "acme" });`,
    `const other = core.CloudEvent.create({ type: "com.example.order.created", source: "/orders", datacontenttype: "application/json", data: { orderId: 43 } });`,
    `check("equivalent tells two events apart", !core.equivalent(event, other) && core.equivalent(event, event));`,
    BODIES[scenario.pkg].trim(),
  ].join("\n");
  const esmBody = [body, ...(ESM_BODIES[scenario.pkg] ? [ESM_BODIES[scenario.pkg].trim()] : [])];
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
  // (An `esmOnly` one only resolves there: the CommonJS program checks how it refuses to load.)
  const resolveChecks = (resolver, as, ext) =>
    posthornNames
      .map((name) => {
        const what = as === "CommonJS" && esmOnly[name] !== undefined ? "resolves" : "loads";
        // A package with a `node` export condition resolves to its Node build here.
        const entry = NODE_ENTRY.has(name) ? "index\\.node" : "index";
        return `check("${name} ${what} as ${as}", /[\\\\/]dist[\\\\/]${entry}\\.${ext}$/.test(${resolver}("${name}")));`;
      })
      .join("\n");
  // An entry point that cannot be required must fail with its known error, not another one.
  const refusals = Object.entries(esmOnly).map(
    ([p, message]) =>
      `try { require("${p}"); check("${p} refuses require()", false); } catch (err) { check("${p} refuses require(): ${message}", String(err instanceof Error ? err.message : err).includes(${JSON.stringify(message)})); }`,
  );
  const importLines = modules.map(([v, p]) => `import * as ${v} from "${p}";`);
  const defaultImports = defaults.map(([v, p]) => `import ${v} from "${p}";`);
  const requireLines = [...required, ...defaults].map(([v, p]) => `const ${v} = require("${p}");`);
  const importRequireLines = [...required, ...defaults].map(
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
      ...esmBody,
      ...(RUN_BODIES[scenario.pkg] ? [RUN_BODIES[scenario.pkg].trim()] : []),
      exit,
    ].join("\n"),
    "check.cjs": [
      ...requireLines,
      jsCheck,
      resolveChecks("require.resolve", "CommonJS", "cjs"),
      ...refusals,
      body,
      exit,
    ].join("\n"),
    "consumer.mts": [...importLines, ...defaultImports, tsCheck, ...esmBody].join("\n"),
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

/** Development tools: none may be installed unless the user chose it or what they chose needs it. */
const DEV_TOOLS = new Set([
  "vitest",
  "vite",
  "fast-check",
  "typescript",
  "tsx",
  "tsup",
  "esbuild",
  "turbo",
  "@biomejs/biome",
]);

/** The commands `posthorn --help` must list (the README's package table and docs/cli.md). */
const CLI_COMMANDS = ["send", "receive", "bridge", "conformance", "demo"];
/** The transports of `posthorn demo` with embedded brokers (docs/cli.md): all of them, NATS too. */
const DEMO_TRANSPORTS = ["http", "ws", "amqp", "mqtt 3.1.1", "kafka", "nats", "nats jetstream"];
const DEMO_MODES = ["binary", "structured", "batch"];
const DEMO_FORMATS = ["json", "avro", "protobuf"];

/** The package an installed file belongs to (the name after its last node_modules folder). */
function ownerOf(file) {
  const at = file.lastIndexOf("/node_modules/") + "/node_modules/".length;
  if (at < "/node_modules/".length) return undefined;
  const [first = "", second = ""] = file.slice(at).split("/");
  const name = first.startsWith("@") ? `${first}/${second}` : first;
  return { name, manifest: join(file.slice(0, at), name, "package.json") };
}

/**
 * When a program or the bin failed to load a module: which installed file asked for what, and
 * why it is not there (a package its manifest does not list, a file its tarball does not hold,
 * a subpath its exports do not name). Empty when the output shows no such failure.
 */
function diagnose({ stdout, stderr }, dir) {
  // The demo prints a failed row's error on stdout, Node its loader errors on stderr.
  const output = `${stdout}\n${stderr}`;
  const found = [];
  const relative = (file) => file.replace(/^file:\/\//, "").replace(`${dir}/`, "");
  const explain = (specifier, importer) => {
    const from = relative(importer);
    const { name: owner, manifest } = ownerOf(importer) ?? {};
    if (specifier.startsWith(".") || specifier.startsWith("/") || specifier.startsWith("file:")) {
      found.push(
        `${from} imports ${relative(specifier)}, which the ${owner ?? "installed"} tarball does not hold (its "files" list or its build)`,
      );
      return;
    }
    const parts = specifier.split("/");
    const name = specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
    if (owner === undefined) {
      found.push(`${from} imports ${specifier}, which is not installed`);
      return;
    }
    const pkg = existsSync(manifest) ? readJson(manifest) : {};
    const monorepo = readJson(join(root, "package.json"));
    let why;
    if (pkg.dependencies?.[name] !== undefined) why = `${owner} lists it in dependencies`;
    else if (pkg.peerDependenciesMeta?.[name]?.optional) {
      why = `${owner} has it as an optional peer, which npm does not install`;
    } else if (pkg.peerDependencies?.[name] !== undefined) why = `${owner} has it as a peer`;
    else {
      why = `${owner} does not list it in dependencies${monorepo.devDependencies?.[name] ? " (the monorepo has it in devDependencies only)" : ""}`;
    }
    found.push(`${from} imports ${specifier}: ${why}`);
  };
  for (const m of output.matchAll(
    /Cannot find (?:package|module) '([^']+)' imported from (\S+)/g,
  )) {
    explain(m[1], m[2]);
  }
  for (const m of output.matchAll(/Cannot find module '([^']+)'\s*\nRequire stack:\s*\n- (\S+)/g)) {
    explain(m[1], m[2]);
  }
  for (const m of output.matchAll(
    /Package subpath '([^']+)' is not defined by "exports" in (\S+) imported from (\S+)/g,
  )) {
    found.push(
      `${relative(m[3])} imports the subpath ${m[1]} of ${ownerOf(m[2])?.name ?? m[2]}, which its "exports" do not name`,
    );
  }
  return found.length > 0 ? `: ${[...new Set(found)].join("; ")}` : "";
}

/**
 * Runs the installed command: `--help` through npx lists every command, each command's own
 * `--help` loads, and `demo` on embedded brokers reports every path equivalent.
 */
async function checkBin(scenario, dir, { lines, fail, timings }) {
  const bin = scenario.bin;
  const link = join(dir, "node_modules", ".bin", bin);
  if (!existsSync(link)) {
    fail(`node_modules/.bin/${bin} is missing: ${scenario.pkg}'s "bin" did not install`);
    return;
  }
  // The demo starts embedded brokers only where no broker address is configured.
  const env = { ...npmEnv, NO_COLOR: "1" };
  for (const key of ["AMQP_URL", "MQTT_URL", "NATS_URL", "KAFKA_BROKERS"]) delete env[key];
  const report = (what, r) => `${what}${diagnose(r, dir)}\n${r.stdout}${r.stderr}`;

  let at = Date.now();
  // npx --no: the installed bin, never one fetched from the registry.
  const help = await run("npx", ["--no", "--", bin, "--help"], {
    cwd: dir,
    env,
    timeoutMs: 30_000,
  });
  const listed = CLI_COMMANDS.filter((c) => new RegExp(`^\\s+${c}\\b`, "m").test(help.stdout));
  const unlisted = CLI_COMMANDS.filter((c) => !listed.includes(c));
  lines.push(`npx ${bin} --help: exit ${help.code}, lists ${listed.join(" ") || "no command"}`);
  if (help.code !== 0 || !help.stdout.includes(`Usage: ${bin}`) || unlisted.length > 0) {
    fail(
      report(
        `npx ${bin} --help exited ${help.code}${unlisted.length > 0 ? `, not listing ${unlisted.join(" ")}` : ""}`,
        help,
      ),
    );
  }
  // Each command's help, through the bin's own shebang: every command module loads.
  const helps = await Promise.all(
    CLI_COMMANDS.map((c) => run(link, [c, "--help"], { cwd: dir, env, timeoutMs: 30_000 })),
  );
  const helped = CLI_COMMANDS.filter(
    (c, i) => helps[i].code === 0 && helps[i].stdout.includes(`Usage: ${bin} ${c}`),
  );
  lines.push(`${bin} <command> --help: ${helped.length}/${CLI_COMMANDS.length} commands`);
  CLI_COMMANDS.forEach((c, i) => {
    if (!helped.includes(c)) fail(report(`${bin} ${c} --help exited ${helps[i].code}`, helps[i]));
  });
  timings.push(`help ${seconds(Date.now() - at)}`);

  at = Date.now();
  const demo = await run(link, ["demo"], { cwd: dir, env, timeoutMs: 90_000 });
  timings.push(`demo ${seconds(Date.now() - at)}`);
  const out = demo.stdout.replace(/\x1b\[[0-9;]*m/g, "");
  const summary = /^(\d+) of (\d+) paths equivalent in [\d.]+ s$/m.exec(out);
  const text = out.split("\n");
  const rule = text.findIndex((l) => /^-+( +-+)+ *$/.test(l));
  const rows = [];
  for (let i = rule + 1; rule >= 0 && i < text.length && text[i].trim() !== ""; i++) {
    const [transport, mode, format, , , equivalent] = text[i].trim().split(/ {2,}/);
    rows.push({ transport, mode, format, equivalent });
  }
  const problems = [];
  if (demo.timedOut) problems.push("did not finish in 90 s");
  if (demo.code !== 0) problems.push(`exited ${demo.code}`);
  if (!summary) problems.push('printed no "N of N paths equivalent" line');
  else {
    if (summary[1] !== summary[2]) problems.push(`${summary[1]} of ${summary[2]} paths equivalent`);
    if (Number(summary[2]) !== rows.length) {
      problems.push(`the summary counts ${summary[2]} paths, the table has ${rows.length} rows`);
    }
  }
  const notYes = rows.filter((r) => r.equivalent !== "yes");
  if (notYes.length > 0) {
    problems.push(
      `not equivalent: ${notYes.map((r) => `${r.transport} ${r.mode}/${r.format}`).join(", ")}`,
    );
  }
  const missing = [
    ...DEMO_TRANSPORTS.filter((t) => !rows.some((r) => r.transport === t)),
    ...DEMO_MODES.filter((m) => !rows.some((r) => r.mode === m)).map((m) => `mode ${m}`),
    ...DEMO_FORMATS.filter((f) => !rows.some((r) => r.format === f)).map((f) => `format ${f}`),
  ];
  if (missing.length > 0) problems.push(`no row for ${missing.join(", ")}`);
  for (const l of text.filter((x) => x.includes("left out"))) problems.push(l.trim());
  const perTransport = DEMO_TRANSPORTS.map(
    (t) => `${t} ${rows.filter((r) => r.transport === t).length}`,
  ).join(", ");
  lines.push(
    `${bin} demo: exit ${demo.code}, "${summary ? summary[0] : "no summary"}" (${perTransport})`,
  );
  if (problems.length > 0) fail(report(`${bin} demo: ${problems.join("; ")}`, demo));
}

/**
 * The Posthorn packages a scenario installs: its package, its formats, core, and what they
 * declare in turn (dependencies and required peers); with a line per package that brings others.
 */
function posthornPackages(scenario, packages) {
  const posthorn = new Set(["@posthorn/core", scenario.pkg]);
  for (const f of scenario.formats) posthorn.add(FORMATS[f].pkg);
  const lines = [];
  for (let grew = true; grew; ) {
    grew = false;
    for (const name of [...posthorn]) {
      const pkg = packages.get(name).pkg;
      const brought = [...Object.keys(pkg.dependencies ?? {}), ...requiredPeers(pkg)].filter(
        (dep) => isPosthorn(dep) && !posthorn.has(dep),
      );
      for (const dep of brought) posthorn.add(dep);
      if (brought.length > 0) {
        lines.push(
          `also installs ${brought.join(" ")}: ${name} declares ${brought.length > 1 ? "them" : "it"}`,
        );
        grew = true;
      }
    }
  }
  return { posthorn, lines };
}

async function runScenario(scenario, ctx) {
  const started = Date.now();
  const failures = [];
  const fail = (what) => failures.push(what);
  const timings = [];
  const { posthorn, lines } = posthornPackages(scenario, ctx.packages);
  // What the Posthorn packages list as `dependencies` of their own (the CLI's transport clients).
  const provided = new Set();
  for (const name of posthorn) {
    for (const dep of Object.keys(ctx.packages.get(name).pkg.dependencies ?? {})) {
      if (!isPosthorn(dep)) provided.add(dep);
    }
  }
  // The peers the user installs, each one a peer dependency some installed package declares;
  // a required peer the scenario does not expect, and no Posthorn package depends on, is one npm
  // would install on its own.
  const peers = new Set(scenario.peers);
  const declared = new Set();
  for (const name of posthorn) {
    const pkg = ctx.packages.get(name).pkg;
    for (const peer of Object.keys(pkg.peerDependencies ?? {})) declared.add(peer);
    for (const peer of requiredPeers(pkg)) {
      if (!isPosthorn(peer) && !peers.has(peer) && !provided.has(peer)) {
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
    const posthornKeys = [...byName(posthorn)];
    // What a Posthorn package lists in its own `dependencies`, and what that brings.
    const declaredKeys = new Set();
    for (const key of posthornKeys) {
      const { name, edges } = graph.nodes.get(key);
      const deps = ctx.packages.get(name).pkg.dependencies ?? {};
      for (const next of edges) {
        const dep = graph.nodes.get(next).name;
        if (!isPosthorn(dep) && deps[dep] !== undefined) declaredKeys.add(next);
      }
    }
    const ofDeclared = reach(graph, [...declaredKeys]);
    // What the Posthorn packages bring besides: everything reached from them without passing
    // through a package the user installed on purpose or one they declare as a dependency.
    const ofPosthorn = reach(graph, posthornKeys, new Set([...chosenKeys, ...declaredKeys]));
    const everything = reach(graph, graph.top);
    for (const [key, node] of graph.nodes) {
      if (isPosthorn(node.name) && !posthorn.has(node.name)) {
        fail(`unexpected Posthorn package ${key}`);
      }
      const accounted = ofChoices.has(key) || ofDeclared.has(key) || ofPosthorn.has(key);
      if (ctx.watched.has(node.name) && !accounted) {
        fail(`${key} is installed: ${pathTo(everything, key)}`);
      }
      // A development tool comes only with what the user chose (vitest brings esbuild).
      if (DEV_TOOLS.has(node.name) && !ofChoices.has(key)) {
        fail(`${key}, a development tool, is installed: ${pathTo(everything, key)}`);
      }
    }
    for (const key of ofPosthorn.keys()) {
      const name = graph.nodes.get(key).name;
      if (!isPosthorn(name)) fail(`Posthorn brings ${key}: ${pathTo(ofPosthorn, key)}`);
    }
    if (declaredKeys.size > 0) {
      lines.push(
        `${ofDeclared.size} of them through ${declaredKeys.size} packages Posthorn lists in its dependencies`,
      );
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
        fail(`node ${file} exited ${r.code}${diagnose(r, dir)}\n${r.stdout}${r.stderr}`);
      }
    }
    for (const [p, message] of Object.entries(scenario.esmOnly ?? {})) {
      lines.push(`CJS: require("${p}") throws "${message}" (checked); its subpaths load`);
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
    timings.push(`programs ${seconds(Date.now() - installed)}`);
    if (scenario.bin !== undefined) await checkBin(scenario, dir, { lines, fail, timings });
  }
  return {
    name: scenario.name,
    ok: failures.length === 0,
    summary: [
      `${[...posthorn].map((n) => n.replace("@posthorn/", "")).join(" ")}${peers.size > 0 ? ` + ${[...peers].join(" ")}` : ""}`,
      `${count} packages installed (${typesOnly} of them only for @types/node)`,
      ...lines,
      `install ${seconds(installed - started)}, ${timings.map((t) => `${t}, `).join("")}total ${seconds(Date.now() - started)}`,
    ],
    failures,
    ms: Date.now() - started,
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
  for (const s of scenarios) {
    if (!packages.has(s.pkg))
      throw new Error(`${s.pkg} is not a published package of the monorepo`);
  }
  // Every published package is packed, whichever scenarios run: the "files" check covers each.
  const needed = new Set(packages.keys());
  for (const name of needed) {
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
    const packed = Date.now();
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
    const took = scenarios
      .map((s) => results.find((r) => r.name === s.name))
      .map((r) => `${r.name} ${r.ms === undefined ? "-" : seconds(r.ms)}`);
    console.log(
      `\ntimings: pack ${seconds(packed - started)}; ${took.join(", ")} (${CONCURRENCY} at a time)`,
    );
    console.log(
      `install check: ${results.length - failed} of ${results.length} scenarios passed in ${seconds(Date.now() - started)}`,
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
