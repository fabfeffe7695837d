import { protobufFormat } from "@posthorn/format-protobuf";
import { describeFormatWithRegistry } from "@posthorn/testkit";

describeFormatWithRegistry(protobufFormat);
