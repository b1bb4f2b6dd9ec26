/** Service endpoints: one spelling per URL, so the one-service-per-endpoint rule cannot be slipped past. */
import * as v from "valibot";
import { transformOrIssue } from "../../shared/validate.ts";

/**
 * The endpoint as stored and handed to agents: the WHATWG form of an http(s) URL (scheme and host in lower
 * case, `127.1` and `0x7f000001` as `127.0.0.1`, the default port dropped, an empty path as "/"), without a
 * host name's trailing dot. Throws an Error saying why for anything else: not http(s), a user name or
 * password (a credential in a URL ends up in logs and agents' configurations), a #fragment.
 */
export function normalizeEndpoint(raw: string): string {
  if (!URL.canParse(raw)) throw new Error("must be an http(s) URL");
  const url = new URL(raw);
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error("must be an http(s) URL");
  if (url.username || url.password) throw new Error("must not contain a user name or password: give the credential as discovery_token");
  if (url.hash || raw.includes("#")) throw new Error("must not contain a #fragment");
  if (url.hostname.endsWith(".")) url.hostname = url.hostname.replace(/\.+$/, "");
  return url.href;
}

/** The spellings an endpoint is compared under: itself and the same URL with or without a trailing slash. */
export function endpointSpellings(endpoint: string): string[] {
  const url = new URL(endpoint);
  if (url.search || url.pathname === "/") return [endpoint];
  url.pathname = url.pathname.endsWith("/") ? url.pathname.replace(/\/+$/, "") : `${url.pathname}/`;
  return [endpoint, url.href];
}

/** An endpoint as callers give it: trimmed, at most 2048 characters, stored in its normalized form. */
export const Endpoint = v.pipe(
  v.string("must be a string"),
  v.trim(),
  v.nonEmpty("must not be empty"),
  v.maxLength(2048, "must be at most 2048 characters"),
  transformOrIssue(normalizeEndpoint),
);
