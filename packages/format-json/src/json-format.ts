import {
  asDeclaredType,
  asDecodeError,
  type BatchEventFormat,
  CloudEvent,
  type CloudEventLike,
  extensions as defaultRegistry,
  type ExtensionRegistry,
  type JsonLimits,
  jsonText,
  malformed,
  parseJson,
  utf8Decode,
  utf8Encode,
} from "@posthorn/core";

/** Media type of one event in the JSON format (json-format.md section 4). */
export const JSON_CONTENT_TYPE = "application/cloudevents+json";
/** Media type of a batch in the JSON format (json-format.md section 4). */
export const JSON_BATCH_CONTENT_TYPE = "application/cloudevents-batch+json";

// The attributes of a CloudEvent always serialize; only `data` can fail (a BigInt, a cycle, a
// throwing toJSON), and that is an invalid event, as binary mode's encodeData says.
function stringify(value: CloudEvent | CloudEvent[]): string {
  return jsonText(value) as string;
}

/** Options for {@link jsonFormat}. */
export interface JsonFormatOptions extends JsonLimits {
  /**
   * Where extension types are declared. On decoding, a declared extension gets its declared type
   * (a string is read as it, a JSON value of another type is an `InvalidEvent`), as in the
   * bindings' binary modes. Defaults to core's `extensions` registry.
   */
  registry?: ExtensionRegistry;
}

/**
 * The CloudEvents JSON event format, single events and batches.
 *
 * Encoding follows json-format.md 3.1: Boolean and Integer attributes as JSON booleans and
 * numbers, everything else as strings; binary data as `data_base64`, JSON data (a JSON or `+json`
 * content type, or none) as a JSON value, other text as a JSON string.
 *
 * Decoding (3.1.2) treats unknown members as extensions, keeps a JSON string under a JSON content
 * type as the string it is, and refuses non-string `data` under a non-JSON content type. Invalid
 * JSON, invalid UTF-8 and nesting deeper than `maxDepth` are `MalformedInput`; members that break
 * the CloudEvents rules are `InvalidEvent`. Extensions declared in the registry get their declared
 * type: `"5"` for a declared Integer is read as 5, `"high"` is an `InvalidEvent`.
 *
 * @param options - the extension registry and the nesting limit for decoding (`maxDepth`,
 *   default 128)
 * @example
 * ```ts
 * const bytes = json.encode(event);
 * const back = json.decode(bytes);
 * ```
 */
export function jsonFormat(options: JsonFormatOptions = {}): BatchEventFormat {
  const limits: JsonLimits = { maxDepth: options.maxDepth ?? 128 };
  const registry = options.registry ?? defaultRegistry;

  const decodeValue = (value: unknown): CloudEvent => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw malformed("a JSON-format event must be a JSON object");
    }
    const init = value as Record<string, unknown>;
    for (const name in init) {
      const declared = registry.get(name)?.type;
      if (declared !== undefined) init[name] = asDeclaredType(name, init[name], declared, "JSON");
    }
    // The CloudEvent constructor checks every member: names, types, data against datacontenttype.
    return new CloudEvent(init as never);
  };

  const parse = (bytes: Uint8Array, what: string): unknown =>
    parseJson(utf8Decode(bytes, what), what, limits);

  return {
    name: "json",
    contentType: JSON_CONTENT_TYPE,
    batchContentType: JSON_BATCH_CONTENT_TYPE,
    text: true,
    encode(event: CloudEventLike): Uint8Array {
      return utf8Encode(stringify(CloudEvent.from(event)));
    },
    decode(bytes: Uint8Array): CloudEvent {
      try {
        return decodeValue(parse(bytes, "JSON event"));
      } catch (err) {
        throw asDecodeError(err, "JSON event");
      }
    },
    encodeBatch(events: readonly CloudEventLike[]): Uint8Array {
      return utf8Encode(stringify(events.map((e) => CloudEvent.from(e))));
    },
    decodeBatch(bytes: Uint8Array): CloudEvent[] {
      try {
        const value = parse(bytes, "JSON batch");
        if (!Array.isArray(value)) throw malformed("a JSON batch must be a JSON array");
        return value.map(decodeValue);
      } catch (err) {
        throw asDecodeError(err, "JSON batch");
      }
    },
  };
}

/** The JSON event format with default limits. */
export const json: BatchEventFormat = jsonFormat();
