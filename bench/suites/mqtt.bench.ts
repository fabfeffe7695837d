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
    const structured = toMqttMessage(event, { mode: "structured", format: json });
    const sdkWireHeaders = MQTT.binary(sdkEvent).headers;
    // What an application using the cloudevents package does on receipt: parse the payload JSON,
    // then hand it to MQTT.toEvent with the properties as it models them.
    const sdkDecoder = (payload: Uint8Array, contentType: string, headers: object) => {
      const text = new TextDecoder().decode(payload);
      return () => {
        const body = JSON.parse(text);
        return MQTT.toEvent({
          PUBLISH: { "Content Type": contentType },
          body,
          payload: body,
          headers,
          "User Properties": headers,
        } as SdkMqttMessage) as SdkCloudEvent;
      };
    };
    const modes = [
      {
        label: "binary (MQTT 5)",
        message: binary,
        encode: () => toMqttMessage(event, { mode: "binary" }),
        sdkEncodeLabel: "cloudevents MQTT.binary + JSON.stringify",
        sdkEncode: () => JSON.stringify(MQTT.binary(new SdkCloudEvent(plain)).body),
        sdkDecode: sdkDecoder(binary.payload, "application/json", sdkWireHeaders),
        ceilingNote: "no event is built and no property is read: no decoder can be faster",
      },
      {
        label: "structured JSON",
        message: structured,
        encode: () => toMqttMessage(event, { mode: "structured", format: json }),
        sdkEncodeLabel: "cloudevents MQTT.structured + JSON.stringify",
        sdkEncode: () => JSON.stringify(MQTT.structured(new SdkCloudEvent(plain)).body),
        sdkDecode: sdkDecoder(
          structured.payload,
          "application/cloudevents+json; charset=utf-8",
          {},
        ),
        ceilingNote: "no event is built: no decoder can be faster",
      },
    ];
    for (const m of modes) {
      const group = "codec: MQTT binding";
      const decode = () => fromMqttMessage(m.message, { formats: [json] });
      const sdkLabel = "cloudevents MQTT.toEvent + JSON.parse";
      rows.push(
        await compare({
          group,
          name: `encode ${m.label}`,
          ours: { fn: m.encode },
          baseline: { label: m.sdkEncodeLabel, fn: m.sdkEncode },
          ctx,
        }),
      );
      rows.push(
        await compare({
          group,
          name: `decode ${m.label}`,
          ours: { fn: decode },
          baseline: { label: sdkLabel, fn: m.sdkDecode },
          goal: 5,
          note: "the baseline builds its event with strict=false: no validation",
          ctx,
        }),
      );
      // The ceiling: a decoder that did nothing but read the payload's JSON, against the same
      // baseline. The decode goal cannot be above this ratio.
      rows.push(
        await compare({
          group,
          name: `decode ${m.label}, ceiling: UTF-8 and JSON.parse of the payload alone`,
          ours: {
            label: "TextDecoder + JSON.parse only",
            fn: () => JSON.parse(utf8.decode(m.message.payload)),
          },
          baseline: { label: sdkLabel, fn: m.sdkDecode },
          note: m.ceilingNote,
          ctx,
        }),
      );
      rows.push(
        await compare({
          group,
          name: `decode ${m.label}, baseline also validating`,
          ours: { fn: decode },
          baseline: {
            label: `${sdkLabel} + validate()`,
            fn: () => m.sdkDecode().validate(),
          },
          ctx,
        }),
      );
    }

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
