import { jsonFormat } from "@posthorn/format-json";
import { describeFormatWithRegistry } from "@posthorn/testkit";

describeFormatWithRegistry(jsonFormat);
