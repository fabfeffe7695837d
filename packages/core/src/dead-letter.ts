/**
 * The header (Kafka) or MQTT 5 user property in which a binding's `reject(reason)` carries the
 * reason on the copy it writes to a dead-letter topic. Bindings whose broker dead-letters by
 * itself carry the reason in the protocol's own field instead (AMQP: the rejection's
 * description; JetStream: the `+TERM` reason).
 */
export const DEAD_LETTER_REASON = "posthorn-dead-letter-reason";

/**
 * The header (Kafka) or MQTT 5 user property in which a binding's `reject()` carries the topic
 * the message was received on, on the copy it writes to a dead-letter topic.
 */
export const DEAD_LETTER_ORIGINAL_TOPIC = "posthorn-original-topic";
