import { avro } from "@posthorn/format-avro";
import { describeFormatProperties } from "@posthorn/testkit";

describeFormatProperties(avro);
