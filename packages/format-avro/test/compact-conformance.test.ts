import { avroCompactFormat } from "@posthorn/format-avro";
import { describeFormatConformance } from "@posthorn/testkit";

// timestamp-micros cannot hold a nanosecond time; the encoder refuses it (tested in compact.test.ts).
describeFormatConformance(avroCompactFormat(), {
  skip: (v) => (v.name === "time-nanos" ? "time finer than a microsecond" : undefined),
});
