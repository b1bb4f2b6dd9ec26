/**
 * The connect page: when a gateway call lacks the user's credential, the call's error carries a one-time
 * link (10 minutes, bound to that user and service, 256 random bits; only its digest is stored). The page
 * is a plain HTML form, no script, under a strict Content-Security-Policy; the token pasted there is stored
 * encrypted as authorize_user_to_service stores it, and the link is spent.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { and, desc, eq, gt, isNull, lt, notInArray, sql } from "drizzle-orm";
import { type Context, Hono } from "hono";
import { html } from "hono/html";
import * as v from "valibot";
import type { Ctx } from "../../shared/context.ts";
import type { AppEnv } from "../../shared/http.ts";
import { recordAudit } from "../audit/audit.ts";
import { sealToken, Token } from "../credentials/credentials.ts";

/** How long a link works. */
const LINK_TTL_MS = 10 * 60_000;
// Unspent links kept per user and service besides the newest (an agent may retry before the user opens one).
const KEPT_LINKS = 4;

const STYLE =
  "body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem}input{width:100%;font:inherit;padding:.4rem}button{font:inherit;margin-top:1rem;padding:.4rem 1.2rem}";
const CSP = [
  "default-src 'none'",
  `style-src 'sha256-${createHash("sha256").update(STYLE).digest("base64")}'`,
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join("; ");

const digestOf = (code: string) => createHash("sha256").update(code).digest("hex");

/** A new one-time link for a user (row id) to store their credential for a service; older unspent ones beyond a few are dropped. */
export async function createConnectLink(ctx: Ctx, userRowId: number, serviceId: number): Promise<string> {
  const { connectLinks } = ctx.tables;
  const code = randomBytes(32).toString("base64url");
  const now = new Date();
  const kept = ctx.db
    .select({ digest: connectLinks.digest })
    .from(connectLinks)
    .where(and(eq(connectLinks.userId, userRowId), eq(connectLinks.serviceId, serviceId)))
    .orderBy(desc(connectLinks.createdAt))
    .limit(KEPT_LINKS);
  await ctx.atomic((q) => [
    q.delete(connectLinks).where(lt(connectLinks.expiresAt, now.toISOString())),
    q.delete(connectLinks).where(and(eq(connectLinks.userId, userRowId), eq(connectLinks.serviceId, serviceId), notInArray(connectLinks.digest, kept))),
    q.insert(connectLinks).values({ digest: digestOf(code), userId: userRowId, serviceId, expiresAt: new Date(now.getTime() + LINK_TTL_MS).toISOString() }),
  ]);
  return `${ctx.publicUrl}/connect/${code}`;
}

type Link = { userRowId: number; serviceId: number; userId: string; service: string };

// The link a code stands for while it can be used (known, unspent, unexpired), or null.
async function usableLink(ctx: Ctx, code: string): Promise<Link | null> {
  const { connectLinks, users, services } = ctx.tables;
  const [row] = await ctx.db
    .select({ userRowId: connectLinks.userId, serviceId: connectLinks.serviceId, userId: users.userId, service: services.name })
    .from(connectLinks)
    .innerJoin(users, eq(users.id, connectLinks.userId))
    .innerJoin(services, eq(services.id, connectLinks.serviceId))
    .where(and(eq(connectLinks.digest, digestOf(code)), isNull(connectLinks.spentBy), gt(connectLinks.expiresAt, new Date().toISOString())))
    .limit(1);
  return row ?? null;
}

/**
 * Spends the link and stores the token in one transaction: the token is written only by the request that
 * spent the link (marked with a value only it knows), so two submissions of one link store one token.
 */
async function spendLink(ctx: Ctx, code: string, link: Link, token: string): Promise<boolean> {
  const { connectLinks, userTokens } = ctx.tables;
  const ciphertext = await sealToken(ctx, link.serviceId, link.userId, token);
  const spender = randomUUID();
  const now = new Date().toISOString();
  const digest = digestOf(code);
  const [spent] = (await ctx.atomic((q) => [
    q
      .update(connectLinks)
      .set({ spentBy: spender })
      .where(and(eq(connectLinks.digest, digest), isNull(connectLinks.spentBy), gt(connectLinks.expiresAt, now)))
      .returning({ digest: connectLinks.digest }),
    q
      .insert(userTokens)
      .select(
        q
          .select({
            userId: connectLinks.userId,
            serviceId: connectLinks.serviceId,
            ciphertext: sql<string>`cast(${ciphertext} as text)`.as("ciphertext"),
            updatedAt: sql<string>`cast(${now} as text)`.as("updated_at"),
          })
          .from(connectLinks)
          .where(and(eq(connectLinks.digest, digest), eq(connectLinks.spentBy, spender))),
      )
      .onConflictDoUpdate({ target: [userTokens.userId, userTokens.serviceId], set: { ciphertext, updatedAt: now } }),
  ])) as [unknown[]];
  return spent.length > 0;
}

function page(c: Context<AppEnv>, status: 200 | 400 | 404, title: string, body: unknown): Response | Promise<Response> {
  c.header("Content-Security-Policy", CSP);
  // The code is in the URL: no other site may learn it (same-origin, not no-referrer: under no-referrer a
  // browser posts the form with "Origin: null", which the registry refuses as a foreign page), and no cache may keep the page.
  c.header("Referrer-Policy", "same-origin");
  c.header("Cache-Control", "no-store");
  c.header("X-Frame-Options", "DENY");
  c.header("X-Content-Type-Options", "nosniff");
  return c.html(
    html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${title} · MCP Registry</title><style>${STYLE}</style></head>
<body><h1>${title}</h1>${body}</body></html>`,
    status,
  );
}

const GONE = html`<p>This link cannot be used: it was already used, it expired (links work for 10 minutes), or it is mistyped.</p>
<p>Call the tool again from your MCP client: its answer carries a new link.</p>`;

function form(link: Link, problem?: string) {
  return html`<p>The service <strong>${link.service}</strong> needs your credential before the gateway can call it for <strong>${link.userId}</strong>.</p>
${problem ? html`<p role="alert"><strong>${problem}</strong></p>` : ""}
<form method="post" autocomplete="off">
<label for="token">Token for ${link.service}</label>
<input id="token" name="token" type="password" required autofocus>
<button type="submit">Save</button>
</form>
<p>It is stored encrypted and sent only to ${link.service}, only for your calls. This link works once.</p>`;
}

async function showForm(c: Context<AppEnv>): Promise<Response> {
  const link = await usableLink(c.get("ctx"), c.req.param("code") ?? "");
  return link ? page(c, 200, "Connect a service", form(link)) : page(c, 404, "Link not valid", GONE);
}

async function submitForm(c: Context<AppEnv>): Promise<Response> {
  const ctx = c.get("ctx");
  const code = c.req.param("code") ?? "";
  const link = await usableLink(ctx, code);
  if (!link) return page(c, 404, "Link not valid", GONE);
  const body = await c.req.parseBody().catch(() => ({}) as Record<string, unknown>);
  const parsed = v.safeParse(Token, body.token);
  if (!parsed.success) return page(c, 400, "Connect a service", form(link, `The token ${parsed.issues[0].message}.`));
  const stored = await spendLink(ctx, code, link, parsed.output);
  const target = `service_name=${link.service.slice(0, 200)} user_id=${link.userId.slice(0, 200)}`;
  await recordAudit(ctx, { caller: { principal: "anonymous", label: "connect-link" }, action: "store_token_via_link", target, outcome: stored ? "ok" : "not_found" });
  if (!stored) return page(c, 404, "Link not valid", GONE);
  return page(c, 200, "Saved", html`<p>Your credential for <strong>${link.service}</strong> is stored. Go back to your MCP client and try the call again.</p>`);
}

/** GET and POST /connect/:code (any other method: 405). */
export const connectRoutes = new Hono<AppEnv>()
  .get("/connect/:code", showForm)
  .post("/connect/:code", submitForm)
  .all("/connect/:code", (c) => c.json({ error: { code: "method_not_allowed", message: "Use GET or POST" } }, 405, { Allow: "GET, POST" }));
