/**
 * The web console at /console: server-rendered pages (Hono JSX) for operators, logged in with an admin key.
 * Every page reads, and every form acts, through the registry's MCP tools (actions.ts), so the console can
 * do nothing the tools cannot and everything it does is audited the same way. No inline script or style:
 * the Content-Security-Policy allows only the console's own files.
 */
import type { Context } from "hono";
import { Hono } from "hono";
import type { Child } from "hono/jsx";
import { AppError } from "../../shared/errors.ts";
import { type AppEnv, onHttpError } from "../../shared/http.ts";
import type { McpServing } from "../../shared/mcp.ts";
import { type KeyRing, mayCall } from "../access/access.ts";
import { recordAudit } from "../audit/audit.ts";
import { isUserKey } from "../user_keys/user_keys.ts";
import { argumentsOf, backPath, consoleCaller, runTool, textOf } from "./actions.ts";
import { CSS, ICON, JS } from "./assets.ts";
import { Layout } from "./layout.tsx";
import { auditPage, changesPage, keyCreatedPage, keysPage, matrixPage, rolesPage, saveMatrix, usersPage } from "./pages.tsx";
import { dashboardPage, removeServicePage, servicePage, servicesPage } from "./service_pages.tsx";
import { closeSession, openSession, type Session, sessionOf, setFlash, validCsrf } from "./session.ts";

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** What a page is given: the request, the tool pipeline, the admin's session. */
export type PageArgs = { c: Context<AppEnv>; serving: McpServing; session: Session };
/** A page: its title and body, or a Response of its own (a redirect). */
export type Page = (args: PageArgs) => Promise<{ title: string; body: Child } | Response>;

// Every console answer: no caching, no framing, no sniffing, no referrer to other sites.
function secured(c: Context<AppEnv>): void {
  c.header("Content-Security-Policy", CSP);
  c.header("Cache-Control", "no-store");
  c.header("X-Content-Type-Options", "nosniff");
  c.header("Referrer-Policy", "same-origin");
  c.header("X-Frame-Options", "DENY");
}

function loginPage(c: Context<AppEnv>, problem?: string, status: 200 | 401 | 403 = 200) {
  return c.html(
    <Layout title="Log in" path="/console/login" session={null} flash={problem ? `error:${problem}` : null}>
      <form method="post" action="/console/login" class="login">
        <label>
          <span>Admin key</span>
          <input type="password" name="key" autocomplete="current-password" required autofocus />
        </label>
        <button type="submit">Log in</button>
        <p class="muted">An admin key of REGISTRY_ADMIN_KEYS. Agent and user keys cannot log in. The key is not kept: the session is.</p>
      </form>
    </Layout>,
    status,
  );
}

/** The console's routes, over the registry's tool pipeline and its keys. */
export function consoleRoutes(serving: McpServing, keys: KeyRing): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  // A refusal the console makes itself (a form without its token, an unknown tool) is a page, not JSON.
  app.onError((err, c) => {
    if (!(err instanceof AppError) || err.status >= 500) return onHttpError(err, c);
    return c.html(
      <Layout title="Not done" path={c.req.path} session={null} flash={`error:${err.message}`}>
        <p>
          <a href="/console">Back to the console</a>
        </p>
      </Layout>,
      err.status as 400,
    );
  });
  app.use("/console/*", async (c, next) => {
    secured(c);
    await next();
  });
  app.use("/console", async (c, next) => {
    secured(c);
    await next();
  });
  app.get("/console/static/console.css", (c) => c.body(CSS, 200, { "Content-Type": "text/css; charset=utf-8" }));
  app.get("/console/static/console.js", (c) => c.body(JS, 200, { "Content-Type": "text/javascript; charset=utf-8" }));
  app.get("/console/static/icon.svg", (c) => c.body(ICON, 200, { "Content-Type": "image/svg+xml" }));

  app.get("/console/login", async (c) => ((await sessionOf(c, keys)) ? c.redirect("/console", 303) : loginPage(c)));
  app.post("/console/login", async (c) => {
    const ctx = c.get("ctx");
    const form = await c.req.parseBody();
    const key = typeof form.key === "string" ? form.key.trim() : "";
    const caller = key && !isUserKey(`Bearer ${key}`) ? keys.resolve(`Bearer ${key}`) : null;
    if (!caller || caller.principal !== "admin") {
      const why = !key ? "Enter an admin key" : isUserKey(`Bearer ${key}`) || caller?.principal === "agent" ? "Only an admin key can log in" : "Invalid key";
      await recordAudit(ctx, { caller: caller ?? { principal: "anonymous", label: "anonymous" }, action: "console_login", target: "", outcome: "unauthorized", detail: why });
      // A key the registry knows but that is not an admin's is forbidden; anything else is not a key.
      return loginPage(c, why, caller || isUserKey(`Bearer ${key}`) ? 403 : 401);
    }
    await openSession(c, caller.label);
    await recordAudit(ctx, { caller: { ...caller, label: `${caller.label}/console` }, action: "console_login", target: "", outcome: "ok" });
    return c.redirect("/console", 303);
  });

  // Every other route needs a session; a form also needs its CSRF token.
  const withSession = (handle: (args: PageArgs, form: Record<string, string | File | (string | File)[]>) => Promise<Response>) => async (c: Context<AppEnv>) => {
    const session = await sessionOf(c, keys);
    if (!session) {
      if (c.req.method === "GET") return c.redirect("/console/login", 303);
      return loginPage(c, "Your session ended: log in again", 401);
    }
    let form: Record<string, string | File | (string | File)[]> = {};
    if (c.req.method === "POST") {
      form = await c.req.parseBody({ all: true });
      if (!validCsrf(session, form.csrf)) {
        await recordAudit(c.get("ctx"), { caller: consoleCaller(session), action: "console_form", target: c.req.path.slice(0, 200), outcome: "forbidden", detail: "missing or wrong CSRF token" });
        throw new AppError("forbidden", "This form is not from your console session (CSRF token missing or wrong): reload the page and try again");
      }
    }
    return handle({ c, serving, session }, form);
  };

  const page = (path: string, render: Page) =>
    app.get(
      path,
      withSession(async (args) => {
        const out = await render(args).catch((err) => {
          if (err instanceof AppError && err.status < 500) return { title: "Not available", body: <p role="alert">{err.message}</p>, status: err.status };
          throw err;
        });
        if (out instanceof Response) return out;
        const { session, c } = args;
        if (session.flash) await setFlash(c.get("ctx"), session, null);
        return c.html(
          <Layout title={out.title} path={c.req.path} session={session} flash={session.flash}>
            {out.body}
          </Layout>,
          ("status" in out ? out.status : 200) as 200,
        );
      }),
    );
  page("/console", dashboardPage);
  page("/console/services", servicesPage);
  page("/console/services/:name", servicePage);
  page("/console/services/:name/remove", removeServicePage);
  page("/console/matrix", matrixPage);
  page("/console/roles", rolesPage);
  page("/console/users", usersPage);
  page("/console/changes", changesPage);
  page("/console/keys", keysPage);
  page("/console/audit", auditPage);

  app.post(
    "/console/logout",
    withSession(async ({ c, session }) => {
      await closeSession(c, session);
      await recordAudit(c.get("ctx"), { caller: consoleCaller(session), action: "console_logout", target: "", outcome: "ok" });
      return c.redirect("/console/login", 303);
    }),
  );
  // One tool call, its answer the next page's message; a new user key is shown on a page of its own, once.
  app.post(
    "/console/do/:tool",
    withSession(async (args, form) => {
      const { c, session } = args;
      const name = c.req.param("tool")!;
      const tool = serving.listed("admin").find((t) => t.name === name && mayCall({ principal: "admin", label: "" }, `tool ${t.name}`));
      if (!tool) throw new AppError("not_found", `No tool "${name.slice(0, 64)}"`);
      const result = await runTool(c, serving, session, name, argumentsOf(form, tool));
      if (name === "create_user_key" && !result.isError) return c.html(<Layout title="User key created" path="/console/keys" session={session}>{keyCreatedPage(result)}</Layout>);
      await setFlash(c.get("ctx"), session, `${result.isError ? "error" : "ok"}:${textOf(result)}`);
      return c.redirect(backPath(form.back), 303);
    }),
  );
  app.post(
    "/console/matrix",
    withSession(async (args, form) => {
      const message = await saveMatrix(args, form);
      await setFlash(args.c.get("ctx"), args.session, message);
      return args.c.redirect(backPath(form.back), 303);
    }),
  );
  return app;
}
