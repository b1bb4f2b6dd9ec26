/**
 * The gateway's tool names: `<service_name>__<tool_name>`, valid MCP tool names (1 to 128 of A-Z a-z 0-9
 * _ - .) and unique within one listing. docs/gateway.md describes the rule for the people who read them.
 */
import { createHash } from "node:crypto";

const VALID = /^[A-Za-z0-9_.-]{1,128}$/;
const HASH_CHARS = 8;

/** A tool as the gateway names it: which service, which tool. */
export type Named = { service: string; tool: string };

/**
 * The plain name `service__tool` when it is a valid tool name, else the sanitized form: every character
 * outside the set becomes "_", the two parts are cut to fit, and "_" and 8 hex digits of the SHA-256 of
 * "service\ntool" follow, so different pairs keep different names.
 */
function gatewayName({ service, tool }: Named): string {
  const plain = `${service}__${tool}`;
  if (VALID.test(plain)) return plain;
  return hashedName({ service, tool }, HASH_CHARS);
}

function hashedName({ service, tool }: Named, hashChars: number): string {
  const clean = (s: string) => s.replace(/[^A-Za-z0-9_.-]/g, "_");
  const hash = createHash("sha256").update(`${service}\n${tool}`).digest("hex").slice(0, hashChars);
  // Room for both parts, "__" between them and "_<hash>" after: the service keeps at most 48 characters.
  const servicePart = clean(service).slice(0, 48);
  const toolPart = clean(tool).slice(0, 128 - servicePart.length - 3 - hashChars);
  return `${servicePart}__${toolPart}_${hash}`;
}

/**
 * The names of `tools` in one listing, unique: a name another tool of the listing already has (two pairs
 * joining to one text, as "a__b"+"c" and "a"+"b__c") is given in its sanitized form instead, with a longer
 * hash while it still collides. The listing's order (by service, then tool) decides which keeps the plain name.
 */
export function uniqueNames<T extends Named>(tools: T[]): Map<string, T> {
  const byName = new Map<string, T>();
  for (const t of tools) {
    let name = gatewayName(t);
    for (let hashChars = HASH_CHARS; byName.has(name) && hashChars <= 64; hashChars += 8) name = hashedName(t, hashChars);
    // 64 hex digits of SHA-256 colliding too means the very same pair twice: the listing holds it once.
    if (!byName.has(name)) byName.set(name, t);
  }
  return byName;
}
