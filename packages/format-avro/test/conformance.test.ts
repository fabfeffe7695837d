import { avro } from "@posthorn/format-avro";
import { describeFormatConformance } from "@posthorn/testkit";

describeFormatConformance(avro);
