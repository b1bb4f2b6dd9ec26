/** The registry's tables (SQLite dialect). Every table the design needs lives here from the start. */
import { sql } from "drizzle-orm";
import { index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

const now = (column: string) => text(column).notNull().default(sql`(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))`);

/** Registered MCP services. */
export const services = sqliteTable(
  "services",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    name: text("name").notNull().unique(),
    endpoint: text("endpoint").notNull().unique(),
    description: text("description").notNull().default(""),
    transport: text("transport", { enum: ["streamable_http", "sse"] }).notNull(),
    requiresAuthorization: integer("requires_authorization", { mode: "boolean" }).notNull().default(false),
    methodAuthorization: text("method_authorization").notNull().default(""),
    // Encrypted credential used to discover a service that refuses anonymous tools/list (never shown).
    discoveryToken: text("discovery_token"),
    status: text("status", { enum: ["ok", "unreachable"] })
      .notNull()
      .default("ok"),
    lastDiscoveredAt: text("last_discovered_at"),
    lastError: text("last_error"),
    consecutiveFailures: integer("consecutive_failures").notNull().default(0),
    // Background refresh: when the service is due, and until when an instance holds it (ISO times).
    nextRefreshAt: text("next_refresh_at"),
    refreshLeaseUntil: text("refresh_lease_until"),
    // Changes with every write of the tool catalogue: a write applies only over the catalogue it was computed from.
    catalogueVersion: text("catalogue_version").notNull().default(""),
    // The version the service reports (serverInfo.version), and when an add, update or refresh last changed its entry (features/registry_api).
    serverVersion: text("server_version"),
    updatedAt: text("updated_at"),
    createdAt: now("created_at"),
  },
  // The background refresher reads due (and unscheduled) services by this column every round.
  (t) => [index("services_next_refresh").on(t.nextRefreshAt)],
);

/** Tools discovered on a service. AUTOINCREMENT: an id is never reused, even after a delete. */
export const tools = sqliteTable(
  "tools",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    serviceId: integer("service_id")
      .notNull()
      .references(() => services.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    title: text("title"),
    description: text("description").notNull().default(""),
    inputSchema: text("input_schema", { mode: "json" }),
    outputSchema: text("output_schema", { mode: "json" }),
    annotations: text("annotations", { mode: "json" }),
    // The approved definition's digest (features/tool_pinning); held: a changed definition awaits review, so agents do not see the tool.
    digest: text("digest"),
    held: integer("held", { mode: "boolean" }).notNull().default(false),
  },
  (t) => [uniqueIndex("tools_service_name").on(t.serviceId, t.name)],
);

/** Roles users can have, each with the system prompt agents use for it. */
export const roles = sqliteTable("roles", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  name: text("name").notNull().unique(),
  defaultSystemPrompt: text("default_system_prompt").notNull().default(""),
  createdAt: now("created_at"),
});

/** Which roles may use which tools. */
export const toolRoles = sqliteTable(
  "tool_roles",
  {
    toolId: integer("tool_id")
      .notNull()
      .references(() => tools.id, { onDelete: "cascade" }),
    roleId: integer("role_id")
      .notNull()
      .references(() => roles.id, { onDelete: "cascade" }),
  },
  (t) => [primaryKey({ columns: [t.toolId, t.roleId] }), index("tool_roles_role").on(t.roleId)],
);

/** Users the agents act for; a user has at most one role. */
export const users = sqliteTable("users", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  userId: text("user_id").notNull().unique(),
  roleId: integer("role_id").references(() => roles.id, { onDelete: "set null" }),
  createdAt: now("created_at"),
});

/** A user's credential for a service, AES-256-GCM encrypted (iv + ciphertext, base64). */
export const userTokens = sqliteTable(
  "user_tokens",
  {
    userId: integer("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    serviceId: integer("service_id")
      .notNull()
      .references(() => services.id, { onDelete: "cascade" }),
    ciphertext: text("ciphertext").notNull(),
    updatedAt: now("updated_at"),
  },
  (t) => [primaryKey({ columns: [t.userId, t.serviceId] }), index("user_tokens_service").on(t.serviceId)],
);

/**
 * Changes of tool definitions seen downstream (features/tool_pinning): before (the approved definition then)
 * and after (what the service lists), their flags, and what became of them. A tool has at most one
 * undecided change (pending or rejected: it holds the tool; accepted: served, not yet acknowledged).
 */
export const toolChanges = sqliteTable(
  "tool_changes",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    toolId: integer("tool_id")
      .notNull()
      .references(() => tools.id, { onDelete: "cascade" }),
    status: text("status", { enum: ["pending", "rejected", "approved", "accepted"] }).notNull(),
    before: text("before", { mode: "json" }).notNull(),
    after: text("after", { mode: "json" }).notNull(),
    digest: text("digest").notNull(),
    flags: text("flags", { mode: "json" }).notNull(),
    seenAt: now("seen_at"),
    decidedAt: text("decided_at"),
    decidedBy: text("decided_by"),
  },
  (t) => [index("tool_changes_tool").on(t.toolId, t.status)],
);

/** Keys an admin issued to users: each opens only the gateway, only as its user. Stored as a SHA-256 digest, never the key. */
export const userKeys = sqliteTable(
  "user_keys",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    userId: integer("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    label: text("label").notNull(),
    digest: text("digest").notNull().unique(),
    createdAt: now("created_at"),
    lastUsedAt: text("last_used_at"),
  },
  (t) => [uniqueIndex("user_keys_user_label").on(t.userId, t.label)],
);

/** One-time links to the connect page, where a user stores a missing credential (SHA-256 digest of the code, never the code). */
export const connectLinks = sqliteTable(
  "connect_links",
  {
    digest: text("digest").primaryKey(),
    userId: integer("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    serviceId: integer("service_id")
      .notNull()
      .references(() => services.id, { onDelete: "cascade" }),
    expiresAt: text("expires_at").notNull(),
    // Set, with a value only the spending request knows, when the link is used: a link is spent once.
    spentBy: text("spent_by"),
    createdAt: now("created_at"),
  },
  (t) => [index("connect_links_user_service").on(t.userId, t.serviceId), index("connect_links_expires").on(t.expiresAt)],
);

/**
 * Sessions of the web console (features/console): an admin logged in with a key. The SHA-256 digest of the
 * session id (the cookie), never the id nor the key; the key's label, to check it is still configured.
 */
export const consoleSessions = sqliteTable(
  "console_sessions",
  {
    digest: text("digest").primaryKey(),
    label: text("label").notNull(),
    // The token every form of the session carries (CSRF), and a message for the next page (an action's result).
    csrf: text("csrf").notNull(),
    flash: text("flash"),
    createdAt: now("created_at"),
    expiresAt: text("expires_at").notNull(),
  },
  (t) => [index("console_sessions_expires").on(t.expiresAt)],
);

/** Who did what to which target, and how it ended. Never holds a secret. */
export const auditEvents = sqliteTable(
  "audit_events",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    at: now("at"),
    actor: text("actor").notNull(),
    action: text("action").notNull(),
    target: text("target").notNull().default(""),
    outcome: text("outcome").notNull(),
    detail: text("detail").notNull().default(""),
  },
  (t) => [index("audit_events_action").on(t.action), index("audit_events_at").on(t.at)],
);

/**
 * One row (id 1): a number that database triggers raise in the transaction of every change to what
 * get_tools and /tools_for_role show (services, tools, roles, tool_roles). A registry keeps an answer
 * only while this number is unchanged, read from the database on every request (shared/catalogue.ts).
 */
export const catalogueState = sqliteTable("catalogue_state", {
  id: integer("id").primaryKey(),
  generation: integer("generation").notNull().default(0),
});
