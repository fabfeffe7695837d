import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

// The public API of every published package is documented (STYLE.md, Comments): what each
// entry point exports is walked with the compiler, and a finding names what lacks its TSDoc as
// `package: symbol.member`. An entry point is `src/index.ts` and each subpath export
// (`./express` is `src/express.ts`), as tsup builds them. Checked:
// - every exported symbol has a doc comment;
// - a function (declaration, overload, or a const holding an arrow or function expression), a
//   class's constructor and its public methods have a doc comment and a `@param` with text for
//   each parameter, and no `@param` that names no parameter;
// - every member of an exported interface or object type (those it inherits from a source
//   interface too, and those of an object type written inline in a member's type) and every
//   public property and accessor of an exported class has a doc comment.
// Structural client shapes (`KafkaConsumerLike`, `JsMsgLike`) are not exempt.

const root = fileURLToPath(new URL("../../../", import.meta.url));

interface Entry {
  pkg: string;
  file: string;
}

/** The entry points of every package that is not private, from its package.json exports. */
function entryPoints(): Entry[] {
  const entries: Entry[] = [];
  for (const dir of readdirSync(join(root, "packages")).sort()) {
    const manifest = JSON.parse(readFileSync(join(root, "packages", dir, "package.json"), "utf8"));
    if (manifest.private) continue;
    for (const key of Object.keys(manifest.exports ?? { ".": null })) {
      if (key === "./package.json") continue;
      const name = key === "." ? "index" : key.slice(2);
      entries.push({ pkg: manifest.name, file: join(root, "packages", dir, "src", `${name}.ts`) });
    }
  }
  return entries;
}

function program(files: string[]): ts.Program {
  const parsed = ts.getParsedCommandLineOfConfigFile(join(root, "tsconfig.json"), undefined, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n"));
    },
  });
  if (!parsed) throw new Error("tsconfig.json could not be read");
  return ts.createProgram({ rootNames: files, options: { ...parsed.options, noEmit: true } });
}

/** The text of a JSDoc comment or tag, links included; "" when there is none. */
const text = (comment: string | ts.NodeArray<ts.JSDocComment> | undefined): string =>
  (typeof comment === "string" ? comment : ts.getTextOfJSDocComment(comment)) ?? "";

/** The doc comments that belong to a declaration (a variable's are on its statement). */
function docs(node: ts.Node): ts.JSDoc[] {
  return ts.getJSDocCommentsAndTags(node).filter((d): d is ts.JSDoc => ts.isJSDoc(d));
}

/** Whether a declaration has a doc comment with some text or at least one tag. */
function hasDoc(node: ts.Node): boolean {
  return docs(node).some((d) => text(d.comment).trim() !== "" || (d.tags?.length ?? 0) > 0);
}

type SignatureLike = ts.SignatureDeclaration & {
  parameters: ts.NodeArray<ts.ParameterDeclaration>;
};

/** What a signature's doc comment leaves out: parameters without `@param`, `@param`s of nothing. */
function paramFindings(sig: SignatureLike, docNode: ts.Node): string[] {
  const tags = docs(docNode)
    .flatMap((d) => d.tags ?? [])
    .filter(ts.isJSDocParameterTag);
  const named = new Map(tags.map((t) => [t.name.getText(), t]));
  const out: string[] = [];
  sig.parameters.forEach((p, i) => {
    // A destructured parameter has no name of its own: the tag at its position stands for it.
    const name = ts.isIdentifier(p.name) ? p.name.text : undefined;
    if (name === "this") return;
    const tag = name !== undefined ? named.get(name) : tags[i];
    if (!tag) out.push(`@param ${name ?? `#${i + 1}`}`);
    else if (
      text(tag.comment)
        .replace(/^\s*-\s*/, "")
        .trim() === ""
    ) {
      out.push(`@param ${tag.name.getText()} has no text`);
    }
  });
  const names = new Set(sig.parameters.map((p) => (ts.isIdentifier(p.name) ? p.name.text : "")));
  const destructured = sig.parameters.some((p) => !ts.isIdentifier(p.name));
  for (const t of tags) {
    if (!names.has(t.name.getText()) && !destructured) {
      out.push(`@param ${t.name.getText()} names no parameter`);
    }
  }
  return out;
}

/** The signatures of a function: its overloads, or the implementation when it has none. */
function visibleSignatures(decls: readonly ts.Declaration[]): ts.SignatureDeclaration[] {
  const sigs = decls.filter(
    (d): d is ts.FunctionDeclaration | ts.MethodDeclaration =>
      ts.isFunctionDeclaration(d) || ts.isMethodDeclaration(d),
  );
  const overloads = sigs.filter((d) => d.body === undefined);
  return overloads.length > 0 && sigs.length > overloads.length ? overloads : sigs;
}

const isPublic = (m: ts.ClassElement): boolean => {
  if (m.name && ts.isPrivateIdentifier(m.name)) return false;
  const flags = ts.getCombinedModifierFlags(m as ts.Declaration);
  return (flags & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) === 0;
};

const memberName = (m: ts.Node): string => {
  if (ts.isConstructorDeclaration(m)) return "constructor";
  if (ts.isCallSignatureDeclaration(m)) return "(call)";
  if (ts.isConstructSignatureDeclaration(m)) return "(new)";
  if (ts.isIndexSignatureDeclaration(m)) return "[index]";
  const name = (m as ts.NamedDeclaration).name;
  return name ? name.getText() : "?";
};

/** What one package's entry points export, and what of it lacks documentation. */
interface PackageReport {
  /** Exported symbols walked, across the package's entry points. */
  exports: number;
  /** `package: symbol.member (what is missing; file:line)`. */
  findings: string[];
}

/** Finds what the exports of the entry points leave undocumented, per package. */
function undocumented(entries: Entry[]): Map<string, PackageReport> {
  const prog = program(entries.map((e) => e.file));
  const checker = prog.getTypeChecker();
  // Our own sources, not a client library's or TypeScript's declarations.
  const inSources = (node: ts.Node): boolean => {
    const sf = node.getSourceFile();
    return !sf.isDeclarationFile && !prog.isSourceFileFromExternalLibrary(sf);
  };
  const reports = new Map<string, PackageReport>();
  // A declaration that two entry points reach (core's type re-exported by a binding, an
  // interface inherited by two) is reported once, under the first.
  const seen = new Set<ts.Node>();

  for (const { pkg, file } of entries) {
    const pkgReport = reports.get(pkg) ?? { exports: 0, findings: [] };
    reports.set(pkg, pkgReport);
    const list = pkgReport.findings;
    const report = (what: string, node: ts.Node, missing: string): void => {
      const sf = node.getSourceFile();
      const line = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
      list.push(`${pkg}: ${what} (${missing}; ${relative(root, sf.fileName)}:${line})`);
      seen.add(node);
    };

    /** Members of an object type written in a member's type, e.g. `retry?: { attempts?: number }`. */
    const inlineMembers = (owner: string, node: ts.Node): void => {
      const visit = (n: ts.Node): void => {
        // An index signature there (`{ [key: string]: unknown }`) has no name to document.
        if (ts.isTypeLiteralNode(n))
          members(
            owner,
            n.members.filter((m) => !ts.isIndexSignatureDeclaration(m)),
          );
        else ts.forEachChild(n, visit);
      };
      ts.forEachChild(node, visit);
    };

    const members = (owner: string, nodes: readonly ts.Node[]): void => {
      for (const m of nodes) {
        if (seen.has(m) || !inSources(m)) continue;
        seen.add(m);
        const what = `${owner}.${memberName(m)}`;
        if (ts.isClassElement(m) && !ts.isIndexSignatureDeclaration(m)) {
          if (!isPublic(m) || ts.isClassStaticBlockDeclaration(m) || ts.isSemicolonClassElement(m))
            continue;
          if (ts.isConstructorDeclaration(m) && m.parameters.length === 0) continue;
          // A setter shares its getter's doc comment.
          if (
            ts.isSetAccessor(m) &&
            nodes.some((o) => ts.isGetAccessor(o) && memberName(o) === memberName(m))
          )
            continue;
          if (ts.isMethodDeclaration(m) || ts.isConstructorDeclaration(m)) {
            // An implementation behind overloads is not visible.
            if (m.body && nodes.some((o) => o !== m && memberName(o) === memberName(m))) continue;
            if (!hasDoc(m)) report(what, m, "no doc comment");
            else for (const f of paramFindings(m, m)) report(what, m, f);
            continue;
          }
        }
        if (!hasDoc(m)) report(what, m, "no doc comment");
        inlineMembers(what, m);
      }
    };

    /** An interface's own members and those of the source interfaces it extends. */
    const interfaceMembers = (owner: string, decl: ts.InterfaceDeclaration): void => {
      members(owner, decl.members);
      for (const clause of decl.heritageClauses ?? []) {
        for (const base of clause.types) {
          const symbol = checker.getSymbolAtLocation(base.expression);
          const target =
            symbol && symbol.flags & ts.SymbolFlags.Alias
              ? checker.getAliasedSymbol(symbol)
              : symbol;
          for (const d of target?.declarations ?? []) {
            if (ts.isInterfaceDeclaration(d) && inSources(d)) interfaceMembers(owner, d);
          }
        }
      }
    };

    const sf = prog.getSourceFile(file);
    if (!sf) throw new Error(`${file} is not in the program`);
    const moduleSymbol = checker.getSymbolAtLocation(sf);
    if (!moduleSymbol) throw new Error(`${file} is not a module`);
    for (const exported of checker.getExportsOfModule(moduleSymbol)) {
      pkgReport.exports++;
      const symbol =
        exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      const name = exported.name;
      const decls = (symbol.declarations ?? []).filter(inSources);
      const fresh = decls.filter((d) => !seen.has(d));
      if (fresh.length === 0) continue;
      for (const d of fresh) seen.add(d);

      if (!decls.some(hasDoc)) report(name, decls[0] as ts.Node, "no doc comment");
      for (const sig of visibleSignatures(fresh)) {
        for (const f of paramFindings(sig, sig)) report(name, sig, f);
      }
      for (const d of fresh) {
        if (ts.isVariableDeclaration(d) && d.initializer) {
          const init = d.initializer;
          if (ts.isArrowFunction(init) || ts.isFunctionExpression(init)) {
            for (const f of paramFindings(init, d)) report(name, d, f);
          }
        } else if (ts.isInterfaceDeclaration(d)) {
          interfaceMembers(name, d);
        } else if (ts.isTypeAliasDeclaration(d)) {
          if (ts.isTypeLiteralNode(d.type)) members(name, d.type.members);
          else inlineMembers(name, d);
        } else if (ts.isClassDeclaration(d)) {
          members(name, d.members);
        }
      }
    }
  }
  return reports;
}

const FIXTURE = "packages/conformance/test/tsdoc/fixture.ts";

describe("TSDoc of the published packages' public API", () => {
  const entries = entryPoints();
  // One program for the packages and the fixture, whose findings are kept apart by their name.
  const reports = undocumented([...entries, { pkg: "fixture", file: join(root, FIXTURE) }]);
  const fixture = reports.get("fixture")?.findings ?? [];
  reports.delete("fixture");

  it("reports each kind of gap, and only those, in a fixture module", () => {
    const at = (line: number): string => `${FIXTURE}:${line}`;
    expect([...fixture].sort()).toEqual(
      [
        `fixture: noDoc (no doc comment; ${at(13)})`,
        `fixture: someParams (@param b; ${at(20)})`,
        `fixture: someParams (@param c has no text; ${at(20)})`,
        `fixture: staleParam (@param old names no parameter; ${at(28)})`,
        `fixture: overloaded (@param value; ${at(46)})`,
        `fixture: arrow (@param n; ${at(39)})`,
        `fixture: Shape.bare (no doc comment; ${at(59)})`,
        `fixture: Shape.nested.inner (no doc comment; ${at(61)})`,
        `fixture: Shape.inherited (no doc comment; ${at(52)})`,
        `fixture: Literal.field (no doc comment; ${at(65)})`,
        `fixture: Thing.field (no doc comment; ${at(71)})`,
        `fixture: Thing.plain (no doc comment; ${at(84)})`,
      ].sort(),
    );
  });

  it("walks the entry points of every published package, each exporting something", () => {
    // Update this list when a package or a subpath export is added: it is what the test covers.
    expect(entries.map((e) => relative(join(root, "packages"), e.file))).toEqual([
      "binding-amqp/src/index.ts",
      "binding-http/src/index.ts",
      "binding-http/src/express.ts",
      "binding-http/src/fastify.ts",
      "binding-kafka/src/index.ts",
      "binding-mqtt/src/index.ts",
      "binding-mqtt/src/embedded.ts",
      "binding-nats/src/index.ts",
      "binding-websocket/src/index.ts",
      "cli/src/index.ts",
      "core/src/index.ts",
      "format-avro/src/index.ts",
      "format-json/src/index.ts",
      "format-protobuf/src/index.ts",
      "otel/src/index.ts",
      "testkit/src/index.ts",
      "testkit/src/vectors.ts",
      "testkit/src/brokers.ts",
      "testkit/src/kafka.ts",
    ]);
    expect([...reports].filter(([, r]) => r.exports === 0).map(([pkg]) => pkg)).toEqual([]);
    expect([...reports.keys()].sort()).toEqual([
      "@posthorn/binding-amqp",
      "@posthorn/binding-http",
      "@posthorn/binding-kafka",
      "@posthorn/binding-mqtt",
      "@posthorn/binding-nats",
      "@posthorn/binding-websocket",
      "@posthorn/core",
      "@posthorn/format-avro",
      "@posthorn/format-json",
      "@posthorn/format-protobuf",
      "@posthorn/otel",
      "@posthorn/testkit",
      "posthorn",
    ]);
  });

  for (const [pkg, report] of reports) {
    it(`documents every export of ${pkg}`, () => {
      expect(report.findings).toEqual([]);
    });
  }
});
