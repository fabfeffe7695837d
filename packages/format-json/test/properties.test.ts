import { json } from "@posthorn/format-json";
import { describeFormatProperties } from "@posthorn/testkit";

describeFormatProperties(json);
