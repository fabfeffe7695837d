import { protobuf } from "@posthorn/format-protobuf";
import { describeFormatConformance } from "@posthorn/testkit";

describeFormatConformance(protobuf);
