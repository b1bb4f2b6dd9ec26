/** Input validation shared by MCP tools and HTTP routes. */
import * as v from "valibot";
import { AppError } from "./errors.ts";

/** Parses `value` with `schema` or throws AppError("invalid_input") naming each bad field. */
export function validate<S extends v.GenericSchema>(schema: S, value: unknown, action: string): v.InferOutput<S> {
  const result = v.safeParse(schema, value);
  if (result.success) return result.output;
  const problems = result.issues.slice(0, 5).map((issue) => {
    const path = issue.path?.map((p) => String(p.key)).join(".");
    return path ? `${path}: ${issue.message}` : issue.message;
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
    v.regex(/^[^\p{Cc}]*$/u, "must not contain control characters"),
  );
}
