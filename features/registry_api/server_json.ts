/**
 * server.json (schema 2025-12-11) as import_servers reads it: the fields the registry uses, checked against
 * the documented shape (name pattern, description length, version rules, remotes), other fields let through.
 */
import * as v from "valibot";
import { isVersionRange } from "../services/discovery.ts";

// JSON Schema counts code points, not UTF-16 units.
const codePoints = (min: number, max: number, what: string) =>
  v.check((s: string) => {
    const n = Array.from(s).length;
    return n >= min && n <= max;
  }, `must be ${min} to ${max} characters ${what}`);

// Input: what a header or URL variable needs (a value, a default, whether it is a secret).
const Input = v.looseObject({
  description: v.optional(v.string("must be a string")),
  isRequired: v.optional(v.boolean("must be true or false")),
  isSecret: v.optional(v.boolean("must be true or false")),
  value: v.optional(v.string("must be a string")),
  default: v.optional(v.string("must be a string")),
  format: v.optional(v.picklist(["string", "number", "boolean", "filepath"], "must be string, number, boolean or filepath")),
  choices: v.optional(v.array(v.string("must be a string"))),
});

const Header = v.looseObject({ ...Input.entries, name: v.pipe(v.string("must be a string"), v.nonEmpty("must not be empty")) });

const Remote = v.looseObject({
  type: v.picklist(["streamable-http", "sse"], 'must be "streamable-http" or "sse"'),
  url: v.pipe(
    v.string("must be a string"),
    v.maxLength(2048, "must be at most 2048 characters"),
    v.regex(/^(https?:\/\/[^\s]+|\{[a-zA-Z_][a-zA-Z0-9_]*\}[^\s]*)$/, "must be an http(s) URL or start with a {variable}"),
  ),
  headers: v.optional(v.pipe(v.array(Header, "must be an array"), v.maxLength(50, "must have at most 50 headers"))),
  variables: v.optional(v.record(v.string(), Input, "must be an object of inputs")),
});

const Package = v.looseObject({
  registryType: v.string("must be a string"),
  identifier: v.string("must be a string"),
  transport: v.looseObject({ type: v.picklist(["stdio", "streamable-http", "sse"], "must be stdio, streamable-http or sse") }),
  version: v.optional(v.pipe(v.string("must be a string"), v.nonEmpty("must not be empty"), v.notValue("latest", 'must be a specific version, not "latest"'))),
});

/** One server.json document (the official registry's ServerDetail). */
export const ServerJson = v.looseObject({
  name: v.pipe(
    v.string("must be a string"),
    v.minLength(3, "must be 3 to 200 characters"),
    v.maxLength(200, "must be 3 to 200 characters"),
    v.regex(/^[a-zA-Z0-9.-]+\/[a-zA-Z0-9._-]+$/, "must be <reverse-DNS namespace>/<name>, e.g. io.github.user/weather"),
  ),
  description: v.pipe(v.string("must be a string"), codePoints(1, 100, "long")),
  version: v.pipe(
    v.string("must be a string"),
    v.nonEmpty("must not be empty"),
    v.maxLength(255, "must be at most 255 characters"),
    v.check((s) => !isVersionRange(s), 'must be a specific version, not "latest" or a range'),
  ),
  title: v.optional(v.pipe(v.string("must be a string"), codePoints(1, 100, "long"))),
  remotes: v.optional(v.pipe(v.array(Remote, "must be an array"), v.maxLength(50, "must have at most 50 remotes"))),
  packages: v.optional(v.pipe(v.array(Package, "must be an array"), v.maxLength(50, "must have at most 50 packages"))),
});
export type ServerJson = v.InferOutput<typeof ServerJson>;
type Remote = v.InferOutput<typeof Remote>;

/** The remote an import uses: the first streamable-http one, else the first sse one. */
export function chosenRemote(server: ServerJson): Remote | undefined {
  return server.remotes?.find((r) => r.type === "streamable-http") ?? server.remotes?.find((r) => r.type === "sse");
}

/** A remote's URL with its {variables} filled from their value or default; throws an Error ("needs a value for {x}") for one without. */
export function filledUrl(remote: Remote): string {
  return remote.url.replace(/\{([a-zA-Z_][a-zA-Z0-9_]*)\}/g, (_, name: string) => {
    const input = remote.variables?.[name];
    const value = input?.value ?? input?.default;
    if (value === undefined || value === "") throw new Error(`needs a value for {${name}}`);
    return value;
  });
}
