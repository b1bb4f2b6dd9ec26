/**
 * A tool's definition as pinning compares it: name, title, description, inputSchema, outputSchema and
 * annotations, its canonical JSON (object keys sorted: PostgreSQL's jsonb does not keep a server's key
 * order) and the SHA-256 digest of that; and the flags a reviewer sees on a changed one.
 */
import { createHash } from "node:crypto";
import type { Tables } from "../../shared/db/db.ts";

export type Definition = {
  name: string;
  title: string | null;
  description: string;
  inputSchema: unknown;
  outputSchema: unknown;
  annotations: unknown;
};

/** The columns of a tool's definition, to select it from the tools table. */
export function definitionColumns(tools: Tables["tools"]) {
  return {
    name: tools.name,
    title: tools.title,
    description: tools.description,
    inputSchema: tools.inputSchema,
    outputSchema: tools.outputSchema,
    annotations: tools.annotations,
  };
}

/** The fields a change is shown by, in order. */
const FIELDS = ["title", "description", "inputSchema", "outputSchema", "annotations"] as const;

/** JSON with object keys sorted, so one definition has one text whatever the order it was sent or stored in. */
function canonical(value: unknown): string {
  return JSON.stringify(value ?? null, (_key, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

/** The definition of a tool row or a discovered tool (nothing else of it). */
export function definitionOf(t: Definition): Definition {
  return {
    name: t.name,
    title: t.title ?? null,
    description: t.description,
    inputSchema: t.inputSchema ?? null,
    outputSchema: t.outputSchema ?? null,
    annotations: t.annotations ?? null,
  };
}

/** The SHA-256 (hex) of a definition's canonical JSON. */
export function digestOf(t: Definition): string {
  return createHash("sha256")
    .update(canonical(definitionOf(t)))
    .digest("hex");
}

/** The fields that differ between two definitions, each with its value before and after. */
export function changedFields(before: Definition, after: Definition): { field: string; before: unknown; after: unknown }[] {
  return FIELDS.filter((f) => canonical(before[f]) !== canonical(after[f])).map((f) => ({ field: f, before: before[f] ?? null, after: after[f] ?? null }));
}

// Invisible or direction-changing characters: the Unicode tag block, zero-width characters, bidi controls, the BOM.
const INVISIBLE = /[\u{E0000}-\u{E007F}\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF\u00AD]/u;
// Text aimed at the model rather than describing the tool.
const INSTRUCTION_LIKE = [
  /\bignore (all |any |the )?(previous|prior|above|earlier|other) (instructions|messages|rules)/i,
  /\b(you|the assistant|the model|the agent) (must|should|have to|need to) (always |never |first )?(call|use|send|read|tell|include|ask|reveal|forward)/i,
  /\b(always|never|first) (call|use|send|read|tell|mention|reveal|include|forward)\b/i,
  /\bdo not (tell|mention|inform|reveal|show)\b/i,
  /\bbefore (using|calling) (this|any|the) tool\b/i,
  /<\/?(important|system|instructions?|secret)>/i,
];
// The registry's own endpoints: a tool description has no business naming them.
const ENDPOINTS = /\/(token|tools_for_role|role_for_user|system_prompt_for_role|list_services|register_user|list_users|gateway\/mcp|mcp|connect)\b/i;
// Growth that deserves a look: more than twice as long and at least 200 characters more.
const GROWTH_FACTOR = 2;
const GROWTH_CHARS = 200;

/** What the flags mean, for the answer of list_tool_changes and the docs. */
export const FLAG_MEANINGS = {
  invisible_characters: "a description holds invisible or bidirectional control characters (Unicode tags, zero-width, bidi)",
  instruction_like: "a description reads like instructions to the model",
  names_registry_or_tools: "a description names the registry's endpoints, its tools or other tools",
  description_grew: "the description grew to more than twice its length (and by 200 characters or more)",
} as const;
export type Flag = keyof typeof FLAG_MEANINGS;

// Every description a definition carries: its own, its title, and those inside its schemas.
function descriptions(t: Definition): string[] {
  const out = [t.description, t.title ?? ""];
  const walk = (node: unknown, depth: number) => {
    if (!node || typeof node !== "object" || depth > 64) return;
    for (const [k, v] of Object.entries(node)) {
      if ((k === "description" || k === "title") && typeof v === "string") out.push(v);
      else walk(v, depth + 1);
    }
  };
  walk(t.inputSchema, 0);
  walk(t.outputSchema, 0);
  return out;
}

/**
 * The flags of a new definition (`before`: the approved one, null for a new tool). `toolNames`: names of
 * other tools a description should not name (the registry's own, the service's other tools). Flags never
 * decide anything: they point a reviewer at what to read.
 */
export function flagsOf(before: Definition | null, after: Definition, toolNames: Iterable<string>): Flag[] {
  const texts = descriptions(after);
  const joined = texts.join("\n");
  const flags: Flag[] = [];
  if (INVISIBLE.test(joined)) flags.push("invisible_characters");
  if (INSTRUCTION_LIKE.some((re) => re.test(joined))) flags.push("instruction_like");
  const words = new Set(joined.split(/[^A-Za-z0-9_.-]+/));
  const namesOther = [...toolNames].some((n) => n !== after.name && n.length >= 4 && words.has(n));
  if (ENDPOINTS.test(joined) || namesOther) flags.push("names_registry_or_tools");
  if (before && after.description.length > before.description.length * GROWTH_FACTOR && after.description.length - before.description.length >= GROWTH_CHARS)
    flags.push("description_grew");
  return flags;
}
