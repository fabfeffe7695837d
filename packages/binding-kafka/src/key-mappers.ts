import {
  type CloudEvent,
  canonicalString,
  extensions as defaultRegistry,
  type ExtensionRegistry,
  isBytes,
} from "@posthorn/core";
import type { KeyMapper } from "./record.js";

/**
 * The opt-in key mapper of the Kafka binding (3.1): the `partitionkey` attribute of the
 * partitioning extension becomes the record key as it is, when present. The attribute still
 * travels with the event.
 *
 * @param event - the event being published
 * @returns the key (bytes as they are, other values as their canonical string), or `undefined`
 *   when the event has no `partitionkey`
 * @example
 * ```ts
 * const publisher = kafkaPublisher(producer, { topic: "orders", keyMapper: partitionKeyMapper });
 * ```
 */
export const partitionKeyMapper: KeyMapper = (event: CloudEvent) => {
  const value = event.partitionkey;
  if (value === undefined) return undefined;
  return isBytes(value) ? value : canonicalString(value as string | number | boolean);
};

/**
 * A key mapper from the extension registry: the first declared extension whose placement says
 * `{ kafka: "key" }` (out of the box `partitionkey`) and that the event carries becomes the key.
 *
 * @param registry - where declarations are read; defaults to core's `extensions`
 * @example
 * ```ts
 * declareExtension({ name: "tenant", type: "String", placement: { kafka: "key" } });
 * const publisher = kafkaPublisher(producer, { topic: "t", keyMapper: declaredKeyMapper() });
 * ```
 */
export function declaredKeyMapper(registry: ExtensionRegistry = defaultRegistry): KeyMapper {
  return (event: CloudEvent) => {
    // Read the registry on every call: declarations may be added after the mapper was made.
    for (const declaration of registry.list()) {
      if (declaration.placement?.kafka !== "key") continue;
      const value = event[declaration.name];
      if (value === undefined) continue;
      return isBytes(value) ? value : canonicalString(value as string | number | boolean);
    }
    return undefined;
  };
}
