/** The console's page frame (navigation, the message of the last action) and the form every action is posted with. */
import type { Child } from "hono/jsx";
import type { Session } from "./session.ts";

/** The console's pages, in the order the navigation shows them. */
const PAGES = [
  ["/console", "Dashboard"],
  ["/console/services", "Services"],
  ["/console/matrix", "Roles × tools"],
  ["/console/roles", "Roles"],
  ["/console/users", "Users"],
  ["/console/changes", "Tool changes"],
  ["/console/keys", "User keys"],
  ["/console/audit", "Audit log"],
] as const;

/** A whole page; `session` null for the login page (no navigation). */
export function Layout(props: { title: string; path: string; session: Session | null; flash?: string | null; children: Child }) {
  const flash = props.flash ? /^(ok|error):([\s\S]*)$/.exec(props.flash) : null;
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{`${props.title} · MCP Registry`}</title>
        <link rel="icon" href="/console/static/icon.svg" />
        <link rel="stylesheet" href="/console/static/console.css" />
        <script src="/console/static/console.js" defer />
      </head>
      <body>
        <header>
          <strong>MCP Registry</strong>
          {props.session && (
            <>
              <nav>
                {PAGES.map(([href, name]) => (
                  <a href={href} aria-current={props.path === href ? "page" : undefined}>
                    {name}
                  </a>
                ))}
              </nav>
              <Form session={props.session} action="/console/logout" class="inline">
                <button type="submit" class="quiet">
                  Log out
                </button>
              </Form>
            </>
          )}
        </header>
        <main>
          <h1>{props.title}</h1>
          {flash && (
            <p class={flash[1] === "error" ? "flash error" : "flash"} role={flash[1] === "error" ? "alert" : "status"}>
              {flash[2]}
            </p>
          )}
          {props.children}
        </main>
      </body>
    </html>
  );
}

/**
 * A form that posts an action: it carries the session's CSRF token and the page to come back to. `busy`
 * is what its button says while the action runs (console.js).
 */
export function Form(props: { session: Session; action: string; back?: string; busy?: string; class?: string; children: Child }) {
  return (
    <form method="post" action={props.action} class={props.class} data-busy={props.busy}>
      <input type="hidden" name="csrf" value={props.session.csrf} />
      {props.back && <input type="hidden" name="back" value={props.back} />}
      {props.children}
    </form>
  );
}

/** A form that runs one registry tool (POST /console/do/<tool>) with the given fields, then shows `back`. */
export function ToolForm(props: { session: Session; tool: string; back: string; fields?: Record<string, string | number>; busy?: string; class?: string; children: Child }) {
  return (
    <Form session={props.session} action={`/console/do/${props.tool}`} back={props.back} busy={props.busy} class={props.class}>
      {Object.entries(props.fields ?? {}).map(([name, value]) => (
        <input type="hidden" name={name} value={String(value)} />
      ))}
      {props.children}
    </Form>
  );
}

/** A table with a header row: each heading a label, or [label, class] (e.g. "num" for a right-aligned count). */
export function Table(props: { head: (string | [string, string])[]; children: Child }) {
  return (
    <table>
      <thead>
        <tr>
          {props.head.map((h) => (typeof h === "string" ? <th>{h}</th> : <th class={h[1]}>{h[0]}</th>))}
        </tr>
      </thead>
      <tbody>{props.children}</tbody>
    </table>
  );
}

/** One labelled field of a form: its label, then the control. */
export function Field(props: { label: string; children: Child }) {
  return (
    <label>
      <span>{props.label}</span>
      {props.children}
    </label>
  );
}
