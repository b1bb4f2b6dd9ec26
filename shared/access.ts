/** Who is calling, and the one table of rules saying who may call what (MCP tools and HTTP routes). */
import { createHash, timingSafeEqual } from "node:crypto";
import type { Config } from "./config.ts";

export type Principal = "anonymous" | "agent" | "admin";
/** The caller of a request: its principal and a label safe to log (never the key). */
export type Caller = { principal: Principal; label: string };

const RANK: Record<Principal, number> = { anonymous: 0, agent: 1, admin: 2 };

/**
 * The least principal allowed for each MCP tool ("tool <name>") and HTTP route ("<METHOD> <path>").
 * Anything not listed needs admin.
 */
export const RULES: Record<string, Principal> = {
  "GET /health": "anonymous",
  "GET /ready": "anonymous",
  "tool list_services": "agent",
  "tool get_tools": "agent",
  "tool get_service": "agent",
  "tool authorize_user_to_service": "agent",
  "tool revoke_user_token": "agent",
  "GET /list_services": "agent",
  "GET /token": "agent",
  "POST /token": "agent",
  "POST /role_for_user": "agent",
  "POST /tools_for_role": "agent",
  "POST /system_prompt_for_role": "agent",
};

/** True when `caller` may use the tool or route named `rule` (see RULES). */
export function mayCall(caller: Caller, rule: string): boolean {
  return RANK[caller.principal] >= RANK[RULES[rule] ?? "admin"];
}

export type KeyRing = {
  /** The caller for an Authorization header value, or null for a key that matches nothing. */
  resolve(authorization: string | undefined): Caller | null;
  /** "keys", "development" (no keys, loopback) or "off" (REGISTRY_AUTH=off). */
  mode: "keys" | "development" | "off";
};

const digest = (s: string) => createHash("sha256").update(s).digest();

/** Builds the key ring from the configuration; throws when the setting is unsafe. */
export function createKeyRing(config: Config): KeyRing {
  const keys = [
    ...config.adminKeys.map((k) => ({ principal: "admin" as const, hash: digest(k) })),
    ...config.agentKeys.map((k) => ({ principal: "agent" as const, hash: digest(k) })),
  ].map((k) => ({ ...k, caller: { principal: k.principal, label: `${k.principal}:${k.hash.toString("hex").slice(0, 8)}` } }));
  if (config.auth === "off") return { mode: "off", resolve: () => ({ principal: "admin", label: "auth-off" }) };
  if (keys.length === 0) {
    if (!isLoopback(config.host)) {
      throw new Error(
        `Refusing to listen on ${config.host} without keys: set REGISTRY_ADMIN_KEYS and REGISTRY_AGENT_KEYS, ` +
          `or bind to 127.0.0.1 (MCP_HOST), or set REGISTRY_AUTH=off to accept anyone as admin`,
      );
    }
    return { mode: "development", resolve: () => ({ principal: "admin", label: "development" }) };
  }
  return {
    mode: "keys",
    resolve(authorization) {
      if (!authorization) return { principal: "anonymous", label: "anonymous" };
      const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
      if (!m) return null;
      const presented = digest(m[1]);
      // Compare against every key in constant time so timing tells nothing about which one matched.
      let found: Caller | null = null;
      for (const k of keys) if (timingSafeEqual(presented, k.hash) && !found) found = k.caller;
      return found;
    },
  };
}

/** True for the host names and addresses of the loopback interface. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127(\.\d{1,3}){3}$/.test(h);
}
