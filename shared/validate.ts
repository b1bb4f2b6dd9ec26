/** Input validation shared by MCP tools and HTTP routes. */
import * as v from "valibot";
import { AppError } from "./errors.ts";

/** Parses `value` with `schema` or throws AppError("invalid_input") naming each bad field. */
export function validate<S extends v.GenericSchema>(schema: S, value: unknown, action: string): v.InferOutput<S> {
  const result = v.safeParse(schema, value);
  if (result.success) return result.output;
  const problems = result.issues.slice(0, 5).map((issue) => {
    const path = issue.path?.map((p) => String(p.key)).join(".");
    // valibot reports a missing key of an object as an "Invalid key" of the object; say it plainly.
    const message = issue.kind === "schema" && issue.type === "object" && issue.received === "undefined" ? "is required" : issue.message;
    return path ? `${path}: ${message}` : message;
  });
  throw new AppError("invalid_input", `Cannot ${action}: ${problems.join("; ")}`);
}

/** A trimmed, non-empty name of at most `max` characters without control characters. */
export function nameSchema(max: number) {
  return v.pipe(
    v.string("must be a string"),
    v.trim(),
    v.nonEmpty("must not be empty"),
    v.maxLength(max, `must be at most ${max} characters`),
    // Written with \x escapes so the advertised JSON Schema pattern compiles in every regex dialect.
    v.regex(/^[^\x00-\x1f\x7f-\x9f]*$/, "must not contain control characters"),
  );
}
