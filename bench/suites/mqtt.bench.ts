import { fromMqttMessage, mqttPublisher, toMqttMessage } from "@posthorn/binding-mqtt";
import { json } from "@posthorn/format-json";
import { brokerUrl, hostPort, portOpen, vector } from "@posthorn/testkit";
import { MQTT, CloudEvent as SdkCloudEvent, type MQTTMessage as SdkMqttMessage } from "cloudevents";
import mqtt from "mqtt";
import { type BenchSuite, compare, compareThroughput, type Row } from "../lib.ts";

// MQTT binding against the `cloudevents` package's MQTT binding on the same typical event.
// Its binding returns the body as an object, so its side also serializes (encode) or parses
// (decode) the payload JSON: both sides go between an event and payload bytes/text.
// Throughput: Posthorn's publisher (mapping included) against mqtt.js publishing the same
// pre-encoded payloads and properties, QoS 1, to the Mosquitto at MQTT_URL.
const utf8 = new TextDecoder("utf-8", { fatal: true });

export const suite: BenchSuite = {
  name: "MQTT binding vs the cloudevents package, and publish throughput vs raw mqtt.js",
  async run(ctx) {
    const event = vector("typical").event;
    const plain = event.toJSON();
    const sdkEvent = new SdkCloudEvent(plain);
    const rows: Row[] = [];
    const binary = toMqttMessage(event, { mode: "binary" });
    const payloadText = new TextDecoder().decode(binary.payload);
    const sdkBinary = MQTT.binary(sdkEvent);
    const sdkWireHeaders = sdkBinary.headers;
    const sdkBinaryDecode = () => {
      const body = JSON.parse(payloadText);
      return MQTT.toEvent({
        PUBLISH: { "Content Type": "application/json" },
        body,
        payload: body,
        headers: sdkWireHeaders,
        "User Properties": sdkWireHeaders,
      } as SdkMqttMessage) as SdkCloudEvent;
    };
    rows.push(
      await compare({
        group: "codec: MQTT binding",
        name: "encode binary (MQTT 5)",
        ours: { fn: () => toMqttMessage(event, { mode: "binary" }) },
        baseline: {
          label: "cloudevents MQTT.binary + JSON.stringify",
          fn: () => {
            const m = MQTT.binary(new SdkCloudEvent(plain));
            return JSON.stringify(m.body);
          },
        },
        ctx,
      }),
    );
    rows.push(
      await compare({
        group: "codec: MQTT binding",
        name: "decode binary (MQTT 5)",
        ours: { fn: () => fromMqttMessage(binary, { formats: [json] }) },
        baseline: { label: "cloudevents MQTT.toEvent + JSON.parse", fn: sdkBinaryDecode },
        goal: 5,
        note: "the baseline builds its event with strict=false: no validation",
        ctx,
      }),
    );
    rows.push(
      await compare({
        group: "codec: MQTT binding",
        name: "decode binary (MQTT 5), ceiling: UTF-8 and JSON.parse of the payload alone",
        ours: {
          label: "TextDecoder + JSON.parse only",
          fn: () => JSON.parse(utf8.decode(binary.payload)),
        },
        baseline: { label: "cloudevents MQTT.toEvent + JSON.parse", fn: sdkBinaryDecode },
        note: "no event is built and no property is read: no decoder can be faster",
        ctx,
      }),
    );
    rows.push(
      await compare({
        group: "codec: MQTT binding",
        name: "decode binary (MQTT 5), baseline also validating",
        ours: { fn: () => fromMqttMessage(binary, { formats: [json] }) },
        baseline: {
          label: "cloudevents MQTT.toEvent + JSON.parse + validate()",
          fn: () => sdkBinaryDecode().validate(),
        },
        ctx,
      }),
    );
    const structured = toMqttMessage(event, { mode: "structured", format: json });
    const structuredText = new TextDecoder().decode(structured.payload);
    const sdkStructuredDecode = () => {
      const body = JSON.parse(structuredText);
      return MQTT.toEvent({
        PUBLISH: { "Content Type": "application/cloudevents+json; charset=utf-8" },
        body,
        payload: body,
        headers: {},
        "User Properties": {},
      } as SdkMqttMessage) as SdkCloudEvent;
    };
    rows.push(
      await compare({
        group: "codec: MQTT binding",
        name: "encode structured JSON",
        ours: { fn: () => toMqttMessage(event, { mode: "structured", format: json }) },
        baseline: {
          label: "cloudevents MQTT.structured + JSON.stringify",
          fn: () => JSON.stringify(MQTT.structured(new SdkCloudEvent(plain)).body),
        },
        ctx,
      }),
    );
    rows.push(
      await compare({
        group: "codec: MQTT binding",
        name: "decode structured JSON",
        ours: { fn: () => fromMqttMessage(structured, { formats: [json] }) },
        baseline: { label: "cloudevents MQTT.toEvent + JSON.parse", fn: sdkStructuredDecode },
        goal: 5,
        note: "the baseline builds its event with strict=false: no validation",
        ctx,
      }),
    );
    // The ceiling: a decoder that only read the payload's JSON. Both sides parse the same JSON
    // text here, so the decode goal cannot be above this ratio.
    rows.push(
      await compare({
        group: "codec: MQTT binding",
        name: "decode structured JSON, ceiling: UTF-8 and JSON.parse of the payload alone",
        ours: {
          label: "TextDecoder + JSON.parse only",
          fn: () => JSON.parse(utf8.decode(structured.payload)),
        },
        baseline: { label: "cloudevents MQTT.toEvent + JSON.parse", fn: sdkStructuredDecode },
        note: "no event is built: no decoder can be faster",
        ctx,
      }),
    );
    rows.push(
      await compare({
        group: "codec: MQTT binding",
        name: "decode structured JSON, baseline also validating",
        ours: { fn: () => fromMqttMessage(structured, { formats: [json] }) },
        baseline: {
          label: "cloudevents MQTT.toEvent + JSON.parse + validate()",
          fn: () => sdkStructuredDecode().validate(),
        },
        ctx,
      }),
    );

    const url = brokerUrl("mqtt") as string;
    const { host, port } = hostPort(url, 1883);
    if (!(await portOpen(host, port))) {
      console.warn(`no MQTT broker at ${url}: skipping the throughput rows`);
      return rows;
    }
    const client = await mqtt.connectAsync(url, { protocolVersion: 5 });
    try {
      const topic = `posthorn-bench/${process.pid}`;
      const publisher = mqttPublisher(client, { topic, qos: 1 });
      const payload = Buffer.from(binary.payload);
      const properties = {
        contentType: binary.contentType as string,
        userProperties: binary.userProperties as Record<string, string>,
      };
      const window = 1000;
      const inWindows = async (count: number, one: () => Promise<unknown>) => {
        for (let sent = 0; sent < count; sent += window) {
          const batch: Promise<unknown>[] = [];
          for (let i = 0; i < Math.min(window, count - sent); i++) batch.push(one());
          await Promise.all(batch);
        }
      };
      rows.push(
        await compareThroughput({
          group: "throughput: MQTT",
          name: "publish QoS 1 to Mosquitto, binary, typical event",
          count: ctx.quick ? 3000 : 20000,
          rounds: ctx.quick ? 3 : 5,
          warmup: 2000,
          ours: { run: (count) => inWindows(count, () => publisher.publish(event)) },
          baseline: {
            label: "raw mqtt.js, pre-encoded",
            run: (count) =>
              inWindows(count, () => client.publishAsync(topic, payload, { qos: 1, properties })),
          },
          goal: 0.9,
        }),
      );
      await publisher.close();
    } finally {
      await client.endAsync();
    }
    return rows;
  },
};
