import { protobuf } from "@posthorn/format-protobuf";
import { describeFormatProperties } from "@posthorn/testkit";

describeFormatProperties(protobuf);
