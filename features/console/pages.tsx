/** The console's pages for access and review: the role × tool matrix, roles, users, tool changes, user keys, the audit log. */
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { read, runTool, textOf } from "./actions.ts";
import type { Page, PageArgs } from "./console.tsx";
import { Field, Form, Table, ToolForm } from "./layout.tsx";

type Role = { name: string; default_system_prompt: string };
type Tool = { id: number; name: string; description: string; roles: string[]; held?: true };
type Change = { tool_id: number; service_name: string; tool_name: string; status: string; seen_at: string; changes: { field: string; before: unknown; after: unknown }[]; flags: string[] };
type Key = { user_id: string; label: string; created_at: string; last_used_at: string | null };
type Event = { id: number; at: string; actor: string; action: string; target: string; outcome: string; detail: string };

const when = (iso: string | null) => (iso ? iso.replace("T", " ").slice(0, 19) : "never");
const query = (fields: Record<string, string | number | undefined>) =>
  new URLSearchParams(Object.entries(fields).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== "")).toString();

/** The role × tool matrix of one service: a checkbox per pair; saving attaches and detaches what changed. */
export const matrixPage: Page = async ({ c, serving, session }) => {
  const [{ services }, { roles }] = await Promise.all([read<{ services: { service_name: string }[] }>(c, serving, session, "list_services"), read<{ roles: Role[] }>(c, serving, session, "list_roles")]);
  const service = c.req.query("service") ?? services[0]?.service_name;
  if (!service) return { title: "Roles × tools", body: <p class="muted">No service yet.</p> };
  const { tools } = await read<{ tools: Tool[] }>(c, serving, session, "get_tools", { service_name: service });
  const back = `/console/matrix?${query({ service })}`;
  return {
    title: "Roles × tools",
    body: (
      <>
        <form method="get" action="/console/matrix">
          <label>
            <span>Service</span>
            <select name="service">
              {services.map((s) => (
                <option selected={s.service_name === service}>{s.service_name}</option>
              ))}
            </select>{" "}
            <button type="submit" class="quiet">
              Show
            </button>
          </label>
        </form>
        {roles.length === 0 ? (
          <p class="muted">
            No role yet: create one on <a href="/console/roles">Roles</a>.
          </p>
        ) : (
          <Form session={session} action="/console/matrix" back={back}>
            <table class="matrix">
              <thead>
                <tr>
                  <th>Tool</th>
                  {roles.map((r) => (
                    <th class="tool">{r.name}</th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {tools.map((t) => (
                  <tr>
                    <th title={t.description}>
                      <input type="hidden" name="shown" value={String(t.id)} />
                      {t.name}
                      {t.held && <span class="flags"> (held)</span>}
                    </th>
                    {roles.map((r) => (
                      <td>
                        <input type="checkbox" name="attached" value={`${t.id}:${r.name}`} checked={t.roles.includes(r.name)} aria-label={`${r.name} may use ${t.name}`} />
                      </td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
            <p>
              <button type="submit">Save attachments</button>
            </p>
          </Form>
        )}
      </>
    ),
  };
};

const values = (v: unknown): string[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]).filter((x): x is string => typeof x === "string");

/** Applies a matrix form: each pair that changed is one attach_role_to_tool or detach_role_from_tool call; the message says what happened. */
export async function saveMatrix({ c, serving, session }: PageArgs, form: Record<string, unknown>): Promise<string> {
  const shown = new Set(values(form.shown).map(Number));
  const wanted = new Set(values(form.attached));
  const { roles } = await read<{ roles: Role[] }>(c, serving, session, "list_roles");
  const service = new URLSearchParams(String(form.back ?? "").split("?")[1] ?? "").get("service");
  if (!service) return "error:Nothing to save: the form names no service";
  const { tools } = await read<{ tools: Tool[] }>(c, serving, session, "get_tools", { service_name: service });
  const done: string[] = [];
  const failed: string[] = [];
  for (const t of tools.filter((t) => shown.has(t.id))) {
    for (const r of roles) {
      const want = wanted.has(`${t.id}:${r.name}`);
      if (want === t.roles.includes(r.name)) continue;
      const result = await runTool(c, serving, session, want ? "attach_role_to_tool" : "detach_role_from_tool", { tool_id: t.id, role_name: r.name });
      (result.isError ? failed : done).push(textOf(result));
    }
  }
  if (failed.length) return `error:${[...failed, ...done].join(" ")}`;
  return `ok:${done.length ? done.join(" ") : "No attachment changed."}`;
}

export const rolesPage: Page = async ({ c, serving, session }) => {
  const { roles } = await read<{ roles: Role[] }>(c, serving, session, "list_roles");
  return {
    title: "Roles",
    body: (
      <>
        {roles.map((r) => (
          <fieldset>
            <legend>{r.name}</legend>
            <ToolForm session={session} tool="set_role_system_prompt" back="/console/roles" fields={{ role_name: r.name, keep_empty: "default_system_prompt" }}>
              <label>
                System prompt
                <textarea name="default_system_prompt">{r.default_system_prompt}</textarea>
              </label>
              <button type="submit">Save prompt</button>
            </ToolForm>
            <p>
              <a href={`/console/matrix`}>Tools of this role…</a>
            </p>
            <ToolForm session={session} tool="remove_role" back="/console/roles" fields={{ role_name: r.name }}>
              <label>
                <input type="checkbox" required /> I want to remove role {r.name}: its users lose it and its tool attachments go
              </label>
              <button type="submit" class="danger">
                Remove role
              </button>
            </ToolForm>
          </fieldset>
        ))}
        {roles.length === 0 && <p class="muted">No role yet.</p>}
        <h2>Create a role</h2>
        <ToolForm session={session} tool="create_role" back="/console/roles">
          <fieldset>
            <Field label="Name">
              <input type="text" name="role_name" required maxlength={64} />
            </Field>
            <label>
              System prompt
              <textarea name="default_system_prompt" />
            </label>
            <button type="submit">Create role</button>
          </fieldset>
        </ToolForm>
      </>
    ),
  };
};

export const usersPage: Page = async ({ c, serving, session }) => {
  const [{ users }, { roles }] = await Promise.all([read<{ users: [string, string][] }>(c, serving, session, "list_users"), read<{ roles: Role[] }>(c, serving, session, "list_roles")]);
  const RoleSelect = (props: { selected?: string }) => (
    <select name="role_name" required>
      {roles.map((r) => (
        <option selected={r.name === props.selected}>{r.name}</option>
      ))}
    </select>
  );
  return {
    title: "Users",
    body: (
      <>
        <Table head={["User", "Role", "Change the role", ""]}>
          {users.map(([user, role]) => (
            <tr>
              <td>{user}</td>
              <td>{role || <span class="muted">none</span>}</td>
              <td>
                <ToolForm session={session} tool="assign_role_to_user" back="/console/users" fields={{ user_id: user }} class="inline">
                  <RoleSelect selected={role} />{" "}
                  <button type="submit" class="quiet">
                    Assign
                  </button>
                </ToolForm>
              </td>
              <td>
                {role && (
                  <ToolForm session={session} tool="remove_role_from_user" back="/console/users" fields={{ user_id: user }} class="inline">
                    <button type="submit" class="quiet">
                      Remove role
                    </button>
                  </ToolForm>
                )}
              </td>
            </tr>
          ))}
        </Table>
        {users.length === 0 && <p class="muted">No user yet.</p>}
        <h2>Give a user a role</h2>
        <ToolForm session={session} tool="assign_role_to_user" back="/console/users">
          <fieldset>
            <Field label="User id">
              <input type="text" name="user_id" required maxlength={256} />
            </Field>
            <Field label="Role">
              <RoleSelect />
            </Field>
            <button type="submit">Assign</button>
          </fieldset>
        </ToolForm>
      </>
    ),
  };
};

// One side of a change, as text a person compares: a string as it is, anything else as indented JSON.
const shown = (value: unknown) => (typeof value === "string" ? value : JSON.stringify(value ?? null, null, 2));

export const changesPage: Page = async ({ c, serving, session }) => {
  const { changes } = await read<{ changes: Change[] }>(c, serving, session, "list_tool_changes");
  return {
    title: "Tool changes",
    body: (
      <>
        {changes.length === 0 && <p class="muted">No tool change to review.</p>}
        {changes.map((ch) => (
          <fieldset>
            <legend>
              {ch.service_name} · {ch.tool_name} <span class="muted">(tool {ch.tool_id}, {ch.status}, seen {when(ch.seen_at)})</span>
            </legend>
            {ch.flags.length > 0 && <p class="flags">Flags: {ch.flags.join(", ")}</p>}
            {ch.changes.map((d) => (
              <>
                <h2>{d.field}</h2>
                <div class="diff">
                  <div>
                    <span class="muted">approved</span>
                    <pre>{shown(d.before)}</pre>
                  </div>
                  <div>
                    <span class="muted">now listed</span>
                    <pre>{shown(d.after)}</pre>
                  </div>
                </div>
              </>
            ))}
            {ch.status !== "approved" && (
              <p>
                <ToolForm session={session} tool="approve_tool_change" back="/console/changes" fields={{ tool_id: ch.tool_id }} class="inline">
                  <button type="submit">{ch.status === "accepted" ? "Acknowledge" : "Approve"}</button>
                </ToolForm>{" "}
                {ch.status === "pending" && (
                  <ToolForm session={session} tool="reject_tool_change" back="/console/changes" fields={{ tool_id: ch.tool_id }} class="inline">
                    <button type="submit" class="danger">
                      Reject
                    </button>
                  </ToolForm>
                )}
              </p>
            )}
          </fieldset>
        ))}
      </>
    ),
  };
};

export const keysPage: Page = async ({ c, serving, session }) => {
  const { keys } = await read<{ keys: Key[] }>(c, serving, session, "list_user_keys");
  return {
    title: "User keys",
    body: (
      <>
        <Table head={["User", "Label", "Created", "Last used", ""]}>
          {keys.map((k) => (
            <tr>
              <td>{k.user_id}</td>
              <td>{k.label}</td>
              <td>{when(k.created_at)}</td>
              <td>{when(k.last_used_at)}</td>
              <td>
                <ToolForm session={session} tool="revoke_user_key" back="/console/keys" fields={{ user_id: k.user_id, label: k.label }} class="inline">
                  <button type="submit" class="danger">
                    Revoke
                  </button>
                </ToolForm>
              </td>
            </tr>
          ))}
        </Table>
        {keys.length === 0 && <p class="muted">No user key yet.</p>}
        <h2>Issue a key</h2>
        <ToolForm session={session} tool="create_user_key" back="/console/keys">
          <fieldset>
            <Field label="User id">
              <input type="text" name="user_id" required maxlength={256} />
            </Field>
            <Field label="Label">
              <input type="text" name="label" placeholder="default" maxlength={64} />
            </Field>
            <button type="submit">Create key</button>
          </fieldset>
        </ToolForm>
      </>
    ),
  };
};

/** The page after create_user_key: the key, this once (it is not stored, and not put in any address). */
export function keyCreatedPage(result: CallToolResult) {
  const { user_id, label, key } = result.structuredContent as { user_id: string; label: string; key: string };
  return (
    <>
      <p>
        Key <strong>{label}</strong> for user <strong>{user_id}</strong>. Copy it now and give it to the user: it is shown only on this page.
      </p>
      <pre>{key}</pre>
      <p>
        <a href="/console/keys">Back to user keys</a>
      </p>
    </>
  );
}

export const auditPage: Page = async ({ c, serving, session }) => {
  const q = c.req.query();
  const filters = { actor: q.actor, action: q.action, target: q.target, since: q.since, until: q.until };
  const before = q.before_id ? Number(q.before_id) : undefined;
  const page = await read<{ events: Event[]; next_before_id: number | null }>(c, serving, session, "list_audit_events", {
    ...Object.fromEntries(Object.entries(filters).filter(([, v]) => v)),
    ...(before ? { before_id: before } : {}),
    limit: 50,
  });
  return {
    title: "Audit log",
    body: (
      <>
        <form method="get" action="/console/audit">
          <fieldset>
            <legend>Filter</legend>
            {(["actor", "action", "target", "since", "until"] as const).map((name) => (
              <label>
                <span>{name === "since" || name === "until" ? `${name} (ISO time, UTC)` : name}</span>
                <input type="search" name={name} value={filters[name] ?? ""} placeholder={name === "since" ? "2026-12-01T00:00:00Z" : ""} />
              </label>
            ))}
            <button type="submit">Filter</button> <a href="/console/audit">Clear</a>
          </fieldset>
        </form>
        <Table head={["At", "Actor", "Action", "Target", "Outcome", "Detail"]}>
          {page.events.map((e) => (
            <tr>
              <td>{when(e.at)}</td>
              <td>{e.actor}</td>
              <td>{e.action}</td>
              <td>{e.target}</td>
              <td class={e.outcome === "ok" ? "status-ok" : "status-unreachable"}>{e.outcome}</td>
              <td>{e.detail}</td>
            </tr>
          ))}
        </Table>
        {page.events.length === 0 && <p class="muted">No event matches.</p>}
        <p class="pager">
          {before && <a href={`/console/audit?${query(filters)}`}>Newest</a>}
          {page.next_before_id && <a href={`/console/audit?${query({ ...filters, before_id: page.next_before_id })}`}>Older →</a>}
        </p>
      </>
    ),
  };
};
