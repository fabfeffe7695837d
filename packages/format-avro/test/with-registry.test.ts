import { avroCompactFormat, avroFormat } from "@posthorn/format-avro";
import { describeFormatWithRegistry } from "@posthorn/testkit";

describeFormatWithRegistry(avroFormat);
describeFormatWithRegistry(avroCompactFormat);
