/** Input validation shared by MCP tools and HTTP routes. */
import * as v from "valibot";
import { AppError } from "./errors.ts";

/** Deepest nesting of arrays and objects accepted in any input (HTTP body, MCP message): far above any real one. */
export const MAX_NESTING = 64;

/** True when `value` nests arrays and objects at most `max` levels deep; walked without recursion, so any depth is safe to ask about. */
export function nestedWithin(value: unknown, max = MAX_NESTING): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (node === null || typeof node !== "object") continue;
    if (depth >= max) return false;
    for (const child of Array.isArray(node) ? node : Object.values(node)) stack.push([child, depth + 1]);
  }
  return true;
}

/** A transformation by a function that throws an Error saying what is wrong: its message becomes the issue. */
export function transformOrIssue<T>(fn: (value: string) => T) {
  return v.rawTransform<string, T>(({ dataset, addIssue, NEVER }) => {
    try {
      return fn(dataset.value);
    } catch (err) {
      addIssue({ message: (err as Error).message });
      return NEVER;
    }
  });
}

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

/**
 * A trimmed, non-empty (unless `allowEmpty`) name of at most `max` characters that shows what it is: no
 * control characters, no invisible or bidirectional formatting characters (zero-width, bidi overrides, tags:
 * they make look-alike names), and well-formed Unicode (a lone surrogate is stored as U+FFFD, so several
 * ids would become one).
 */
export function nameSchema(max: number, allowEmpty = false) {
  const shown = [
    v.maxLength<string, number, string>(max, `must be at most ${max} characters`),
    // Written with \x escapes so the advertised JSON Schema pattern compiles in every regex dialect.
    v.regex<string, "must not contain control characters">(/^[^\x00-\x1f\x7f-\x9f]*$/, "must not contain control characters"),
    // Checks, not patterns: \p{...} is not in every dialect a client validates with.
    v.check((s: string) => !/[\p{Cf}\p{Zl}\p{Zp}]/u.test(s), "must not contain invisible or bidirectional formatting characters"),
    v.check((s: string) => !/[\uD800-\uDFFF]/u.test(s), "must be well-formed Unicode (no lone surrogate)"),
  ] as const;
  return allowEmpty ? v.pipe(v.string("must be a string"), v.trim(), ...shown) : v.pipe(v.string("must be a string"), v.trim(), v.nonEmpty("must not be empty"), ...shown);
}
