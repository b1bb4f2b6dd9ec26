/** The registry's vocabulary: the names and ids every surface takes, with their limits, defined once. */
import * as v from "valibot";
import { nameSchema } from "./validate.ts";

/** A service's name: 1 to 128 characters that show what they are (see nameSchema). */
export const ServiceName = nameSchema(128);
/** A user's id, as agents name the person they act for: 1 to 256 characters. */
export const UserId = nameSchema(256);
/** A role's name: 1 to 64 characters. */
export const RoleName = nameSchema(64);
/** A role's name where "" (no role) is allowed, as agents send a user's role back. */
export const RoleNameOrNone = nameSchema(64, true);

const TOOL_ID_MESSAGE = "must be a positive integer";
// Ids are 32-bit integers on PostgreSQL; a larger number can name no tool on any engine.
const MAX_ID = 2147483647;
/** A tool id: a positive integer; a string of digits from old clients is converted explicitly. */
export const ToolId = v.union(
  [
    v.pipe(v.number(TOOL_ID_MESSAGE), v.integer(TOOL_ID_MESSAGE), v.minValue(1, TOOL_ID_MESSAGE), v.maxValue(MAX_ID, `must be at most ${MAX_ID}`)),
    v.pipe(v.string(TOOL_ID_MESSAGE), v.regex(/^\d{1,10}$/, TOOL_ID_MESSAGE), v.transform(Number), v.minValue(1, TOOL_ID_MESSAGE), v.maxValue(MAX_ID, `must be at most ${MAX_ID}`)),
  ],
  TOOL_ID_MESSAGE,
);
