import { json } from "@posthorn/format-json";
import { describeFormatConformance } from "@posthorn/testkit";

describeFormatConformance(json);
