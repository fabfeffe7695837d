import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

// Every ```ts / ```typescript block in README.md, docs/**/*.md and packages/*/README.md is
// typechecked as its own ES module, against the packages' sources, with the root tsconfig.json's
// compiler options (strict, exactOptionalPropertyTypes, verbatimModuleSyntax, the @posthorn/*
// paths). A failure names the markdown file and line. ```js blocks are parsed for syntax only.
// docs/benchmarks.md is left out.
//
// Each snippet gets docs-snippets/prelude.ts appended (after its last line, so that line numbers
// stay those of the markdown): the reader's own `event`, `handle`, ... that examples use without
// showing. HTML comments on the lines just above a fence change how it is checked; keep them rare:
//   <!-- snippet: fragment -->            not checked at all
//   <!-- snippet: context NAME -->        docs-snippets/NAME.ts is appended too
//   <!-- snippet: known-errors TS2322 (why) -->
//       the snippet is right and a package's types are not: exactly these error codes must be
//       reported, so the marker has to go when the package is fixed.

const root = fileURLToPath(new URL("../../../", import.meta.url));
const fixtures = join(root, "packages/conformance/test/docs-snippets");

const TS_LANGS = new Set(["ts", "typescript"]);
const JS_LANGS = new Set(["js", "javascript", "mjs"]);
const MARKER = /^<!--\s*snippet:\s*(.*?)\s*-->$/;

interface Snippet {
  /** Markdown file, relative to the repository root. */
  doc: string;
  /** 1-based line of the opening fence. */
  fenceLine: number;
  lang: "ts" | "js";
  code: string;
  fragment: boolean;
  contexts: string[];
  /** Error codes a known-errors marker expects, e.g. 2322; undefined without one. */
  knownErrors: number[] | undefined;
  /** Markers that mean nothing to this test (a typo must not pass silently). */
  unknownMarkers: string[];
}

function markdownFiles(): string[] {
  const docs: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".md") && path !== "docs/benchmarks.md") docs.push(path);
    }
  };
  walk("docs");
  const readmes = readdirSync(join(root, "packages"), { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => `packages/${e.name}/README.md`)
    .filter((path) => existsSync(join(root, path)));
  return ["README.md", ...docs.sort(), ...readmes.sort()];
}

function extract(doc: string): Snippet[] {
  const lines = readFileSync(join(root, doc), "utf8").split("\n");
  const snippets: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([\w-]*)/.exec(lines[i] ?? "");
    if (!open) continue;
    const [, indent = "", fence = "", info = ""] = open;
    let end = i + 1;
    while (end < lines.length && !(lines[end] ?? "").trim().startsWith(fence)) end++;
    const lang = TS_LANGS.has(info) ? "ts" : JS_LANGS.has(info) ? "js" : undefined;
    if (lang) {
      const snippet: Snippet = {
        doc,
        fenceLine: i + 1,
        lang,
        code: lines
          .slice(i + 1, end)
          .map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l))
          .join("\n"),
        fragment: false,
        contexts: [],
        knownErrors: undefined,
        unknownMarkers: [],
      };
      for (let m = i - 1; m >= 0; m--) {
        const marker = MARKER.exec((lines[m] ?? "").trim())?.[1];
        if (marker === undefined) break;
        const [kind = "", ...args] = marker.split(/\s+/);
        if (kind === "fragment") snippet.fragment = true;
        else if (kind === "context" && args.length > 0) snippet.contexts.push(...args);
        else if (kind === "known-errors" && /TS\d+/.test(marker)) {
          snippet.knownErrors = [...marker.matchAll(/TS(\d+)/g)].map((c) => Number(c[1]));
        } else snippet.unknownMarkers.push(`${doc}:${m + 1}: ${marker}`);
      }
      snippets.push(snippet);
    }
    i = end;
  }
  return snippets;
}

/** Names that top-level statements declare (imports, variables, functions, classes, types). */
function declaredNames(statements: readonly ts.Statement[]): Set<string> {
  const names = new Set<string>();
  const bind = (name: ts.BindingName): void => {
    if (ts.isIdentifier(name)) names.add(name.text);
    else for (const e of name.elements) if (!ts.isOmittedExpression(e)) bind(e.name);
  };
  for (const s of statements) {
    if (ts.isImportDeclaration(s) && s.importClause) {
      const { name, namedBindings } = s.importClause;
      if (name) names.add(name.text);
      if (namedBindings && ts.isNamespaceImport(namedBindings)) names.add(namedBindings.name.text);
      else if (namedBindings) for (const e of namedBindings.elements) names.add(e.name.text);
    } else if (ts.isVariableStatement(s)) {
      for (const d of s.declarationList.declarations) bind(d.name);
    } else if (
      (ts.isFunctionDeclaration(s) ||
        ts.isClassDeclaration(s) ||
        ts.isInterfaceDeclaration(s) ||
        ts.isTypeAliasDeclaration(s) ||
        ts.isEnumDeclaration(s)) &&
      s.name
    ) {
      names.add(s.name.text);
    }
  }
  return names;
}

/** The statements of the prelude and the snippet's contexts that the snippet does not declare. */
function appendix(s: Snippet): string {
  const own = declaredNames(
    ts.createSourceFile("snippet.ts", s.code, ts.ScriptTarget.ES2022).statements,
  );
  return ["prelude", ...s.contexts]
    .map((name) => {
      const text = readFileSync(join(fixtures, `${name}.ts`), "utf8");
      const sf = ts.createSourceFile(`${name}.ts`, text, ts.ScriptTarget.ES2022, true);
      return sf.statements
        .filter((st) => ![...declaredNames([st])].some((n) => own.has(n)))
        .map((st) => st.getText(sf))
        .join("\n");
    })
    .join("\n");
}

function compilerOptions(): ts.CompilerOptions {
  const parsed = ts.getParsedCommandLineOfConfigFile(join(root, "tsconfig.json"), undefined, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n"));
    },
  });
  if (!parsed) throw new Error("tsconfig.json could not be read");
  // Every snippet is an ES module (top-level await, its own scope) even without an import.
  return { ...parsed.options, noEmit: true, moduleDetection: ts.ModuleDetectionKind.Force };
}

interface Finding {
  snippet: Snippet | undefined;
  code: number;
  /** `file:line:column: TSxxxx: message`, the line being the markdown's. */
  text: string;
}

/** Typechecks all TypeScript snippets in one program. */
function typecheck(snippets: Snippet[]): Finding[] {
  // The snippets live, in memory only, beside the fixtures: bare imports resolve through the
  // repository's node_modules, and packages/conformance/package.json makes them ES modules.
  const files = new Map<string, Snippet>();
  const texts = new Map<string, string>();
  for (const s of snippets) {
    const name = join(fixtures, "virtual", `${s.doc.replace(/[/.]/g, "_")}_${s.fenceLine}.ts`);
    files.set(name, s);
    texts.set(name, `${s.code}\n${appendix(s)}\n`);
  }
  const options = compilerOptions();
  const host = ts.createCompilerHost(options, true);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (fileName, languageVersion, ...rest) => {
    const text = texts.get(fileName);
    if (text !== undefined) return ts.createSourceFile(fileName, text, languageVersion, true);
    return getSourceFile.call(host, fileName, languageVersion, ...rest);
  };
  host.fileExists = (fileName) => texts.has(fileName) || fileExists.call(host, fileName);
  host.readFile = (fileName) => texts.get(fileName) ?? readFile.call(host, fileName);

  const program = ts.createProgram({ rootNames: [...texts.keys()], options, host });
  const diagnostics = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()];
  for (const name of texts.keys()) {
    const sf = program.getSourceFile(name);
    if (!sf) throw new Error(`${name} is not in the program`);
    diagnostics.push(...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf));
  }
  return diagnostics.map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, "\n  ");
    if (!d.file || d.start === undefined) {
      return { snippet: undefined, code: d.code, text: `TS${d.code}: ${message}` };
    }
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
    const s = files.get(d.file.fileName);
    const where = s
      ? `${s.doc}:${s.fenceLine + 1 + line}:${character + 1}`
      : `${relative(root, d.file.fileName)}:${line + 1}:${character + 1}`;
    return { snippet: s, code: d.code, text: `${where}: TS${d.code}: ${message}` };
  });
}

/** Parses a JavaScript snippet and returns its syntax errors. */
function parseJs(s: Snippet): string[] {
  const out = ts.transpileModule(s.code, {
    fileName: "snippet.mjs",
    reportDiagnostics: true,
    compilerOptions: { allowJs: true, target: ts.ScriptTarget.ES2022 },
  });
  return (out.diagnostics ?? []).map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, "\n  ");
    const at = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : 0;
    return `${s.doc}:${s.fenceLine + 1 + (at ? at.line : 0)}: TS${d.code}: ${message}`;
  });
}

const all = markdownFiles().flatMap(extract);
const checked = all.filter((s) => !s.fragment);
const tsSnippets = checked.filter((s) => s.lang === "ts");
const jsSnippets = checked.filter((s) => s.lang === "js");

// A page that uses every marker, typechecked with the documentation, so that the markers stay
// proven to work while the documentation needs none of them.
const MARKERS = "packages/conformance/test/docs-snippets/markers.md";
const markerFixture = extract(MARKERS);

describe("code examples in README.md, docs/ and the package READMEs", () => {
  it("finds the snippets it is meant to check, and skips only the marked fragments", () => {
    expect(all.flatMap((s) => s.unknownMarkers)).toEqual([]);
    // Update these when a snippet is added, removed or marked: a drop means snippets went unchecked.
    expect(tsSnippets.length).toBe(40);
    // Every package README's examples are among them (otel's README has none).
    expect(
      [...new Set(tsSnippets.map((s) => s.doc))].filter((d) => d.startsWith("packages/")),
    ).toHaveLength(12);
    expect(jsSnippets.length).toBe(0);
    expect(all.filter((s) => s.fragment).length).toBe(0);
    expect(all.filter((s) => s.contexts.length > 0).map((s) => s.contexts)).toEqual([
      ["routing"],
      ["tracing"],
    ]);
    // No page's snippet is known to fail: each marker of this kind stood for a package typing bug.
    expect(all.filter((s) => s.knownErrors !== undefined).length).toBe(0);
  });

  it("reads the markers (on a fixture page that uses each one)", () => {
    expect(markerFixture.flatMap((s) => s.unknownMarkers)).toEqual([]);
    expect(
      markerFixture.map((s) => ({
        line: s.fenceLine,
        fragment: s.fragment,
        contexts: s.contexts,
        knownErrors: s.knownErrors,
      })),
    ).toEqual([
      { line: 7, fragment: false, contexts: [], knownErrors: [2322] },
      { line: 12, fragment: true, contexts: [], knownErrors: undefined },
      { line: 17, fragment: false, contexts: ["routing"], knownErrors: undefined },
    ]);
  });

  // One program for all snippets, built once, when the first test below asks for it.
  let findings: Finding[] | undefined;
  const check = (): Finding[] => {
    findings ??= typecheck([...tsSnippets, ...markerFixture.filter((s) => !s.fragment)]);
    return findings;
  };

  it("typechecks every TypeScript snippet against the packages' sources", () => {
    const unexpected = check().filter((f) => !f.snippet?.knownErrors?.includes(f.code));
    expect(unexpected.map((f) => f.text)).toEqual([]);
  });

  it("reports a known error at its markdown line, and none for a fragment or a snippet given its context", () => {
    expect(check().flatMap((f) => (f.snippet?.doc === MARKERS ? [f.text] : []))).toEqual([
      `${MARKERS}:8:7: TS2322: Type 'string' is not assignable to type 'number'.`,
    ]);
  });

  it("still sees each known error that a marker records (remove the marker once it is fixed)", () => {
    const marked = [...tsSnippets, ...markerFixture].filter((s) => s.knownErrors !== undefined);
    expect(marked.length).toBeGreaterThan(0);
    const codes = (list: number[]) => [...new Set(list)].sort();
    const seen = marked.map((s) => ({
      at: `${s.doc}:${s.fenceLine}`,
      codes: codes(check().flatMap((f) => (f.snippet === s ? [f.code] : []))),
    }));
    const expected = marked.map((s) => ({
      at: `${s.doc}:${s.fenceLine}`,
      codes: codes(s.knownErrors ?? []),
    }));
    expect(seen).toEqual(expected);
  });

  it("parses every JavaScript snippet", () => {
    expect(jsSnippets.flatMap(parseJs)).toEqual([]);
  });
});
