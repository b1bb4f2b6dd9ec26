/**
 * Console sessions: an admin logs in with a key and gets a random session id in a cookie (HttpOnly,
 * SameSite=Strict, Secure over https). The database keeps the id's digest, the key's label (the session
 * ends when that key is no longer configured), the CSRF token of its forms and a message for the next page.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { and, eq, lt } from "drizzle-orm";
import type { Context } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import type { Ctx } from "../../shared/context.ts";
import type { AppEnv } from "../../shared/http.ts";
import type { KeyRing } from "../access/access.ts";

const COOKIE = "mcpr_console";
/** Idle time is pushed forward at most once a minute per session: a page view is then a read only. */
const TOUCH_MS = 60_000;

export type Session = { digest: string; label: string; csrf: string; flash: string | null };

const digestOf = (id: string) => createHash("sha256").update(id).digest("hex");
const later = (ctx: Ctx) => new Date(Date.now() + ctx.config.consoleIdleMs).toISOString();

// Secure when the registry is reached over https (its public URL, or this request).
const secure = (c: Context<AppEnv>) => c.get("ctx").publicUrl.startsWith("https:") || new URL(c.req.url).protocol === "https:";

/** Starts a session for the key `label`, sets its cookie; sessions that ended are deleted on the way. */
export async function openSession(c: Context<AppEnv>, label: string): Promise<void> {
  const ctx = c.get("ctx");
  const { consoleSessions } = ctx.tables;
  const id = randomBytes(32).toString("base64url");
  await ctx.db.delete(consoleSessions).where(lt(consoleSessions.expiresAt, new Date().toISOString()));
  await ctx.db.insert(consoleSessions).values({ digest: digestOf(id), label, csrf: randomBytes(32).toString("base64url"), expiresAt: later(ctx) });
  setCookie(c, COOKIE, id, { path: "/console", httpOnly: true, sameSite: "Strict", secure: secure(c) });
}

/** The request's session, or null: no cookie, unknown, ended (idle), or its key is no longer configured. */
export async function sessionOf(c: Context<AppEnv>, keys: KeyRing): Promise<Session | null> {
  const ctx = c.get("ctx");
  const { consoleSessions } = ctx.tables;
  const id = getCookie(c, COOKIE);
  if (!id || !/^[A-Za-z0-9_-]{43}$/.test(id)) return null;
  const [row] = await ctx.db
    .select()
    .from(consoleSessions)
    .where(eq(consoleSessions.digest, digestOf(id)))
    .limit(1);
  if (!row || row.expiresAt <= new Date().toISOString() || !keys.has(row.label)) return null;
  if (Date.parse(row.expiresAt) - Date.now() < ctx.config.consoleIdleMs - TOUCH_MS) {
    await ctx.db
      .update(consoleSessions)
      .set({ expiresAt: later(ctx) })
      .where(eq(consoleSessions.digest, row.digest));
  }
  return { digest: row.digest, label: row.label, csrf: row.csrf, flash: row.flash };
}

/** Ends the session and clears its cookie. */
export async function closeSession(c: Context<AppEnv>, session: Session): Promise<void> {
  const ctx = c.get("ctx");
  await ctx.db.delete(ctx.tables.consoleSessions).where(eq(ctx.tables.consoleSessions.digest, session.digest));
  deleteCookie(c, COOKIE, { path: "/console", secure: secure(c) });
}

/** Leaves a message for the session's next page (null clears it, once shown). */
export async function setFlash(ctx: Ctx, session: Session, flash: string | null): Promise<void> {
  const { consoleSessions } = ctx.tables;
  const shown = flash === null && session.flash !== null ? eq(consoleSessions.flash, session.flash) : undefined;
  await ctx.db
    .update(consoleSessions)
    .set({ flash })
    .where(and(eq(consoleSessions.digest, session.digest), shown));
}

/** True when a form's token is the session's (compared in constant time). */
export function validCsrf(session: Session, token: unknown): boolean {
  if (typeof token !== "string") return false;
  const [given, expected] = [Buffer.from(token), Buffer.from(session.csrf)];
  // Byte lengths, not string lengths: "é" is one character and two bytes.
  return given.length === expected.length && timingSafeEqual(given, expected);
}
