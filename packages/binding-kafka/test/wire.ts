import type { KafkaRecord, OutgoingKafkaRecord } from "@posthorn/binding-kafka";

/**
 * What a record looks like after a trip through kafkajs: header values as Buffers, the value and
 * the key as Buffers (or null), as `consumer.run` hands them over.
 */
export function asReceived(record: OutgoingKafkaRecord): KafkaRecord {
  const headers: Record<string, Buffer> = {};
  for (const [name, value] of Object.entries(record.headers)) headers[name] = Buffer.from(value);
  return {
    key: record.key === null ? null : Buffer.from(record.key as string),
    value: record.value === null ? null : Buffer.from(record.value),
    headers,
    timestamp: String(Date.now()),
  };
}
