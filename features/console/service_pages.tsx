/** The console's dashboard and its service pages: health at a glance, add, refresh, update, remove, and one service's tools. */
import { gatewayActivity } from "../audit/audit.ts";
import { read } from "./actions.ts";
import type { Page } from "./console.tsx";
import { Field, Table, ToolForm } from "./layout.tsx";

// A list_services entry with include_health, and get_service's answer.
type ServiceRow = {
  service_name: string;
  endpoint: string;
  description: string;
  status: "ok" | "unreachable";
  last_discovered_at: string | null;
  last_error: string | null;
  consecutive_failures: number;
  tools: number;
};
type ServiceDetails = ServiceRow & { transport: string; requires_authorization: boolean; method_authorization: string; has_discovery_token: boolean };
type ToolRow = { id: number; name: string; title?: string | null; description: string; roles: string[]; held?: true; flags?: string[]; input_schema?: unknown; output_schema?: unknown; annotations?: unknown };

const when = (iso: string | null) => (iso ? iso.replace("T", " ").slice(0, 19) : "never");
const servicePath = (name: string) => `/console/services/${encodeURIComponent(name)}`;

/** The last hours of gateway calls as bars (calls) with their errors over them, drawn on the server. */
function ActivityChart(props: { hours: { hour: string; calls: number; errors: number }[] }) {
  const width = 720;
  const height = 150;
  const top = Math.max(1, ...props.hours.map((h) => h.calls));
  const bar = width / props.hours.length;
  const y = (n: number) => height - 20 - (n / top) * (height - 35);
  return (
    <svg class="chart" viewBox={`0 0 ${width} ${height}`} width="100%" role="img" aria-label="Gateway calls and errors per hour">
      <text x="4" y="12">{`${top} calls`}</text>
      {props.hours.map((h, i) => (
        <g>
          <title>{`${h.hour}:00 UTC: ${h.calls} calls, ${h.errors} errors`}</title>
          <rect class="calls" x={i * bar + 2} y={y(h.calls)} width={bar - 4} height={height - 20 - y(h.calls)} />
          <rect class="errors" x={i * bar + 2} y={y(h.errors)} width={bar - 4} height={height - 20 - y(h.errors)} />
          {i % 3 === 0 && (
            <text x={i * bar + 2} y={height - 5}>
              {`${h.hour.slice(11)}h`}
            </text>
          )}
        </g>
      ))}
    </svg>
  );
}

export const dashboardPage: Page = async ({ c, serving, session }) => {
  const [services, roles, users, changes, keys, hours] = await Promise.all([
    read<{ services: ServiceRow[] }>(c, serving, session, "list_services", { include_health: true }),
    read<{ roles: unknown[] }>(c, serving, session, "list_roles"),
    read<{ users: unknown[] }>(c, serving, session, "list_users"),
    read<{ changes: { status: string }[] }>(c, serving, session, "list_tool_changes"),
    read<{ keys: unknown[] }>(c, serving, session, "list_user_keys"),
    gatewayActivity(c.get("ctx"), 24),
  ]);
  const unreachable = services.services.filter((s) => s.status === "unreachable");
  const cards: [string, number, string][] = [
    ["services", services.services.length, "/console/services"],
    ["unreachable", unreachable.length, "/console/services"],
    ["roles", roles.roles.length, "/console/roles"],
    ["users", users.users.length, "/console/users"],
    ["pending tool changes", changes.changes.filter((ch) => ch.status === "pending").length, "/console/changes"],
    ["user keys", keys.keys.length, "/console/keys"],
    ["gateway calls (24 h)", hours.reduce((n, h) => n + h.calls, 0), "/console/audit?action=gateway_call"],
    ["gateway errors (24 h)", hours.reduce((n, h) => n + h.errors, 0), "/console/audit?action=gateway_call"],
  ];
  return {
    title: "Dashboard",
    body: (
      <>
        <div class="cards">
          {cards.map(([label, n, href]) => (
            <div class="card">
              <a href={href}>
                <b>{n}</b>
                {label}
              </a>
            </div>
          ))}
        </div>
        <h2>Gateway calls per hour (last 24 hours, UTC)</h2>
        <ActivityChart hours={hours} />
        {unreachable.length > 0 && (
          <>
            <h2>Unreachable services</h2>
            <ul>
              {unreachable.map((s) => (
                <li>
                  <a href={servicePath(s.service_name)}>{s.service_name}</a>: {s.last_error ?? "no answer"} <span class="muted">({s.consecutive_failures} failures)</span>
                </li>
              ))}
            </ul>
          </>
        )}
      </>
    ),
  };
};

// The fields of add_service and update_service's authorization settings.
function AuthorizationFields(props: { requires?: boolean; method?: string }) {
  return (
    <>
      <label>
        <span>Requires authorization</span>
        <input type="hidden" name="requires_authorization" value="false" />
        <input type="checkbox" name="requires_authorization" value="true" checked={props.requires} />
      </label>
      <label>
        <span>Method</span>
        <select name="method_authorization">
          {["Bearer", "Basic"].map((m) => (
            <option selected={props.method === m}>{m}</option>
          ))}
        </select>
      </label>
      <Field label="Discovery token">
        <input type="password" name="discovery_token" autocomplete="off" placeholder="only if the service refuses to list its tools anonymously" />
      </Field>
    </>
  );
}

export const servicesPage: Page = async ({ c, serving, session }) => {
  // One call: with include_health, list_services brings each service's health and number of tools.
  const { services } = await read<{ services: ServiceRow[] }>(c, serving, session, "list_services", { include_health: true });
  return {
    title: "Services",
    body: (
      <>
        <Table head={["Service", "Endpoint", "Health", "Last discovery", "Last error", ["Tools", "num"], ""]}>
          {services.map((s) => (
            <tr>
              <td>
                <a href={servicePath(s.service_name)}>{s.service_name}</a>
              </td>
              <td>{s.endpoint}</td>
              <td class={`status-${s.status}`}>{s.status}</td>
              <td>{when(s.last_discovered_at)}</td>
              <td>{s.last_error ?? ""}</td>
              <td class="num">{s.tools}</td>
              <td>
                <ToolForm session={session} tool="refresh_service" back="/console/services" fields={{ service_name: s.service_name }} busy="Refreshing…" class="inline">
                  <button type="submit" class="quiet">
                    Refresh
                  </button>
                </ToolForm>
              </td>
            </tr>
          ))}
        </Table>
        {services.length === 0 && <p class="muted">No service yet: add one below.</p>}
        <h2>Add a service</h2>
        <ToolForm session={session} tool="add_service" back="/console/services" busy="Discovering…">
          <fieldset>
            <legend>New service</legend>
            <Field label="Name">
              <input type="text" name="service_name" required maxlength={128} />
            </Field>
            <Field label="Endpoint">
              <input type="url" name="endpoint" required placeholder="https://mcp.example.com/mcp" />
            </Field>
            <Field label="Description">
              <input type="text" name="description" placeholder="read from the service when left empty" />
            </Field>
            <AuthorizationFields />
            <button type="submit">Add and discover</button>
          </fieldset>
        </ToolForm>
      </>
    ),
  };
};

export const servicePage: Page = async ({ c, serving, session }) => {
  const name = c.req.param("name")!;
  const back = servicePath(name);
  const s = await read<ServiceDetails>(c, serving, session, "get_service", { service_name: name });
  const { tools } = await read<{ tools: ToolRow[] }>(c, serving, session, "get_tools", { service_name: name, include_schemas: true });
  return {
    title: `Service ${name}`,
    body: (
      <>
        <p>
          {s.description} <span class="muted">({s.transport === "sse" ? "SSE" : "streamable HTTP"})</span>
        </p>
        <p>
          <span class={`status-${s.status}`}>{s.status}</span> · last discovery {when(s.last_discovered_at)}
          {s.last_error && ` · last error: ${s.last_error}`}
        </p>
        <ToolForm session={session} tool="refresh_service" back={back} fields={{ service_name: name }} busy="Refreshing…" class="inline">
          <button type="submit">Refresh now</button>
        </ToolForm>{" "}
        <a href={`${back}/remove`}>Remove…</a>
        <h2>Tools ({tools.length})</h2>
        <Table head={[["Id", "num"], "Tool", "Roles", "Definition"]}>
          {tools.map((t) => (
            <tr>
              <td class="num">{t.id}</td>
              <td>
                <strong>{t.name}</strong>
                {t.title && <div>{t.title}</div>}
                <div class="muted">{t.description}</div>
                {t.held && (
                  <div class="flags">
                    held for review{t.flags?.length ? `: ${t.flags.join(", ")}` : ""} (<a href="/console/changes">tool changes</a>)
                  </div>
                )}
              </td>
              <td>{t.roles.length ? t.roles.join(", ") : <span class="muted">none</span>}</td>
              <td>
                <details>
                  <summary>schemas</summary>
                  <pre>{JSON.stringify({ inputSchema: t.input_schema, outputSchema: t.output_schema, annotations: t.annotations }, null, 2)}</pre>
                </details>
              </td>
            </tr>
          ))}
        </Table>
        <h2>Update</h2>
        <ToolForm session={session} tool="update_service" back={back} fields={{ service_name: name }} busy="Discovering…">
          <fieldset>
            <legend>Settings (a new endpoint is discovered first)</legend>
            <Field label="Endpoint">
              <input type="url" name="endpoint" value={s.endpoint} required />
            </Field>
            <Field label="Description">
              <input type="text" name="description" value={s.description} />
            </Field>
            <AuthorizationFields requires={s.requires_authorization} method={s.method_authorization || "Bearer"} />
            <p class="muted">{s.has_discovery_token ? "A discovery token is stored; leave the field empty to keep it." : "No discovery token is stored."}</p>
            <button type="submit">Save</button>
          </fieldset>
        </ToolForm>
      </>
    ),
  };
};

export const removeServicePage: Page = async ({ c, serving, session }) => {
  const name = c.req.param("name")!;
  const s = await read<ServiceDetails>(c, serving, session, "get_service", { service_name: name });
  return {
    title: `Remove service ${name}?`,
    body: (
      <>
        <p>
          This removes <strong>{name}</strong> ({s.endpoint}) with its {s.tools} tools, their role attachments and the tokens users stored for it. It cannot be undone.
        </p>
        <ToolForm session={session} tool="remove_service" back="/console/services" fields={{ service_name: name }}>
          <button type="submit" class="danger">
            Remove {name}
          </button>{" "}
          <a href={servicePath(name)}>Cancel</a>
        </ToolForm>
      </>
    ),
  };
};
