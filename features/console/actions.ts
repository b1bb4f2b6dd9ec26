/**
 * What the console does, it does through the registry's MCP tools (rules, validation, audit), never
 * around them: a form's fields become a tool's arguments, typed by the tool's own input schema, and the
 * tool's answer becomes the message of the next page.
 */
import type { CallToolResult, Tool as ListedTool } from "@modelcontextprotocol/sdk/types.js";
import type { Context } from "hono";
import type { Caller } from "../../shared/context.ts";
import { AppError } from "../../shared/errors.ts";
import type { AppEnv } from "../../shared/http.ts";
import type { McpServing } from "../../shared/mcp.ts";
import type { Session } from "./session.ts";

/** The admin acting through a console session; the audit trail tells the console from the key's other uses. */
export const consoleCaller = (session: Session): Caller => ({ principal: "admin", label: `${session.label}/console` });

/** The page to come back to: a console path of the form, else the dashboard (never another site, never a dot segment). */
export function backPath(value: unknown): string {
  const path = /^\/console(\/[\w~%-][\w.~%-]*)*\/?(\?[\w.~%&=+-]*)?$/;
  return typeof value === "string" && path.test(value) && !/%2e/i.test(value) && value.length <= 2048 ? value : "/console";
}

type Properties = Record<string, { type?: string | string[] }>;

// One form value as the schema's type wants it; anything that does not fit is passed on for the tool to refuse.
function typed(value: string, type: string | string[] | undefined): unknown {
  const types = Array.isArray(type) ? type : [type];
  if (types.includes("boolean") && /^(true|on|false)$/.test(value)) return value !== "false";
  if ((types.includes("integer") || types.includes("number")) && /^-?\d+(\.\d+)?$/.test(value)) return Number(value);
  if (types.includes("object") && !types.includes("string")) {
    try {
      return JSON.parse(value);
    } catch {
      return value;
    }
  }
  return value;
}

/**
 * A tool's arguments from a form: every field but csrf, back and keep_empty, typed by the tool's input
 * schema. An empty field is left out (the tool's default), unless keep_empty names it ("" means something:
 * update_service's description "" reads it from the service again).
 */
export function argumentsOf(form: Record<string, string | File | (string | File)[]>, tool: ListedTool): Record<string, unknown> {
  const properties = (tool.inputSchema.properties ?? {}) as Properties;
  const keep = new Set(String(Array.isArray(form.keep_empty) ? form.keep_empty[0] : (form.keep_empty ?? "")).split(","));
  const args: Record<string, unknown> = {};
  for (const [name, sent] of Object.entries(form)) {
    // A checkbox comes after its hidden "false": the last value of a name wins.
    const raw = Array.isArray(sent) ? sent[sent.length - 1] : sent;
    if (name === "csrf" || name === "back" || name === "keep_empty" || typeof raw !== "string") continue;
    if (raw === "" && !keep.has(name)) continue;
    args[name] = typed(raw, properties[name]?.type);
  }
  return args;
}

/** Runs one tool for the session's admin: its result, or a refusal for a tool the console does not know. */
export async function runTool(c: Context<AppEnv>, serving: McpServing, session: Session, name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  if (!serving.listed("admin").some((t) => t.name === name)) throw new AppError("not_found", `No tool "${name.slice(0, 64)}"`);
  return serving.call(c.get("ctx"), consoleCaller(session), name, args);
}

/** A tool result's text; for a page that needs its data, its structured content (a refusal throws, for the page to show). */
export function textOf(result: CallToolResult): string {
  return result.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");
}

/** What a read tool answered, or an AppError with its words. */
export async function read<T>(c: Context<AppEnv>, serving: McpServing, session: Session, name: string, args: Record<string, unknown> = {}): Promise<T> {
  const result = await runTool(c, serving, session, name, args);
  // The tools say "…: no such service" (or role, user) for what is not there.
  if (result.isError) throw new AppError(/: no such \w+/.test(textOf(result)) ? "not_found" : "invalid_input", textOf(result));
  return result.structuredContent as T;
}
