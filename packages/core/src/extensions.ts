import type { AttributeType } from "./types.js";

/**
 * Whether `name` is a valid attribute name: one or more lower-case ASCII letters and digits
 * (spec.md, "Attribute Naming Convention"). A loop, no regular expression: it runs for every
 * attribute of every event encoded or decoded.
 *
 * @param name - the name to check
 */
export function isAttributeName(name: string): boolean {
  const n = name.length;
  if (n === 0) return false;
  for (let i = 0; i < n; i++) {
    const c = name.charCodeAt(i);
    if (!((c >= 97 && c <= 122) || (c >= 48 && c <= 57))) return false;
  }
  return true;
}

const ATTRIBUTE_TYPES: ReadonlySet<string> = new Set<AttributeType>([
  "Boolean",
  "Integer",
  "String",
  "Binary",
  "URI",
  "URI-reference",
  "Timestamp",
]);

/**
 * The context attributes of CloudEvents 1.0 (spec.md, "Context Attributes") and their types.
 */
export const CONTEXT_ATTRIBUTE_TYPES: Readonly<Record<string, AttributeType>> = Object.freeze({
  specversion: "String",
  id: "String",
  source: "URI-reference",
  type: "String",
  datacontenttype: "String",
  dataschema: "URI",
  subject: "String",
  time: "Timestamp",
});

/**
 * Whether `name` is one of the spec's own context attributes (not an extension).
 *
 * @param name - an attribute name, exactly (the check is case-sensitive)
 */
export function isContextAttribute(name: string): boolean {
  return Object.hasOwn(CONTEXT_ATTRIBUTE_TYPES, name);
}

/**
 * An extension attribute declared once so that every binding restores its type. Transports that
 * carry only strings (HTTP and Kafka headers, MQTT user properties, NATS headers) otherwise return
 * extension values as Strings.
 */
export interface ExtensionDeclaration {
  /** The attribute name: lower-case letters and digits. */
  readonly name: string;
  /** Its CloudEvents type. */
  readonly type: AttributeType;
  /** Which spec extension or project it belongs to, for documentation. */
  readonly extension?: string;
  /**
   * Binding-specific placement, keyed by binding name, e.g. `{ kafka: "key" }` to also write the
   * value as the Kafka record key. Each binding documents the placements it understands.
   */
  readonly placement?: Readonly<Record<string, string>>;
}

/**
 * The extensions of the CloudEvents spec's `extensions/` folder whose attribute types are fixed
 * there; declared out of the box.
 */
export const SPEC_EXTENSIONS: readonly ExtensionDeclaration[] = Object.freeze([
  { name: "partitionkey", type: "String", extension: "partitioning", placement: { kafka: "key" } },
  { name: "traceparent", type: "String", extension: "distributed-tracing" },
  { name: "tracestate", type: "String", extension: "distributed-tracing" },
  { name: "sequence", type: "String", extension: "sequence" },
  { name: "dataref", type: "URI-reference", extension: "dataref" },
  { name: "correlationid", type: "String", extension: "correlation" },
  { name: "causationid", type: "String", extension: "correlation" },
  { name: "recordedtime", type: "Timestamp", extension: "recordedtime" },
  { name: "expirytime", type: "Timestamp", extension: "expirytime" },
  { name: "severitytext", type: "String", extension: "severity" },
  { name: "severitynumber", type: "Integer", extension: "severity" },
  { name: "sampledrate", type: "Integer", extension: "sampledrate" },
  { name: "authtype", type: "String", extension: "authcontext" },
  { name: "authid", type: "String", extension: "authcontext" },
  { name: "authclaims", type: "String", extension: "authcontext" },
  { name: "deprecated", type: "Boolean", extension: "deprecation" },
  { name: "deprecationfrom", type: "Timestamp", extension: "deprecation" },
  { name: "deprecationsunset", type: "Timestamp", extension: "deprecation" },
  { name: "deprecationmigration", type: "URI", extension: "deprecation" },
] satisfies ExtensionDeclaration[]);

/**
 * A set of extension declarations. Bindings take one as an option; {@link extensions} is the
 * default every binding uses when none is given.
 */
export class ExtensionRegistry {
  readonly #byName = new Map<string, ExtensionDeclaration>();

  /** @param declarations - the extensions this registry starts with */
  constructor(declarations: Iterable<ExtensionDeclaration> = []) {
    for (const d of declarations) this.declare(d);
  }

  /**
   * Declares (or redeclares) an extension.
   *
   * @param declaration - the name, type and placements; a later declaration of a name replaces
   *   the earlier one
   * @returns this registry, for chaining
   * @throws TypeError when the name is not lower-case letters and digits, or names a context
   *   attribute or `data` (the event's data in every format), or the type is not one of the
   *   CloudEvents types (`Boolean`, `Integer`, `String`, `Binary`, `URI`, `URI-reference`,
   *   `Timestamp`, spelled so)
   */
  declare(declaration: ExtensionDeclaration): this {
    if (typeof declaration !== "object" || declaration === null) {
      throw new TypeError("a declaration is an object: { name, type }");
    }
    const name = declaration.name;
    if (
      typeof name !== "string" ||
      !isAttributeName(name) ||
      isContextAttribute(name) ||
      name === "data"
    ) {
      throw new TypeError(
        `cannot declare extension ${JSON.stringify(declaration.name)}: a name is lower-case letters and digits, and not a context attribute or data`,
      );
    }
    // A type outside the seven (say "integer") matched no value: every value of the attribute
    // was refused, even the numbers it was declared for.
    if (!ATTRIBUTE_TYPES.has(declaration.type)) {
      throw new TypeError(
        `cannot declare extension ${name} with type ${JSON.stringify(declaration.type)}: the type is one of ${[...ATTRIBUTE_TYPES].join(", ")}`,
      );
    }
    this.#byName.set(declaration.name, Object.freeze({ ...declaration }));
    return this;
  }

  /**
   * The declared type of an attribute: a context attribute's own type, else a declared extension's.
   *
   * @param name - the attribute name
   * @returns the type, or `undefined` for an undeclared extension
   */
  typeOf(name: string): AttributeType | undefined {
    if (Object.hasOwn(CONTEXT_ATTRIBUTE_TYPES, name)) return CONTEXT_ATTRIBUTE_TYPES[name];
    return this.#byName.get(name)?.type;
  }

  /**
   * The declaration of an extension, if declared.
   *
   * @param name - the extension's name
   */
  get(name: string): ExtensionDeclaration | undefined {
    return this.#byName.get(name);
  }

  /** Every declared extension. */
  list(): ExtensionDeclaration[] {
    return [...this.#byName.values()];
  }

  /** A copy of this registry, to extend without touching the original. */
  clone(): ExtensionRegistry {
    return new ExtensionRegistry(this.#byName.values());
  }
}

/** The default registry: the spec's extensions, plus whatever the application declares. */
export const extensions: ExtensionRegistry = new ExtensionRegistry(SPEC_EXTENSIONS);

/**
 * Declares an extension in the default registry, so that every binding restores its type.
 *
 * @param declaration - the name, type and placements; replaces an earlier declaration of the name
 * @throws TypeError when the name is not lower-case letters and digits, or names a context
 *   attribute or `data`, or the type is not one of the seven CloudEvents types
 * @example
 * ```ts
 * declareExtension({ name: "priority", type: "Integer" });
 * ```
 */
export function declareExtension(declaration: ExtensionDeclaration): void {
  extensions.declare(declaration);
}
