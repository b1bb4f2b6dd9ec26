/** Registry configuration: read once from the environment (and .env) by main.ts, validated with valibot. */
import { existsSync, readFileSync } from "node:fs";
import * as v from "valibot";
import { decodeKey } from "./crypto.ts";

export type Config = {
  host: string;
  port: number;
  databaseUrl: string;
  rereadHook: string | null;
  discoveryTimeoutMs: number;
  /** REGISTRY_REFRESH_INTERVAL: how often every service is discovered again in the background (0: never). */
  refreshIntervalMs: number;
  adminKeys: string[];
  agentKeys: string[];
  /** "off" only when REGISTRY_AUTH=off was set explicitly. */
  auth: "on" | "off";
  /** REGISTRY_SECRET: the 32-byte key encrypting user tokens (null: a key file beside the database). */
  secret: Uint8Array | null;
  /** REGISTRY_SECRET_PREVIOUS: the key being rotated out; its tokens are re-encrypted at start-up. */
  previousSecret: Uint8Array | null;
  /** REGISTRY_SQLITE_SYNC: "full" (every commit on disk before it is acknowledged) or "normal" (the last commits may be lost on power loss). */
  sqliteSync: "full" | "normal";
  /** REGISTRY_SQLITE_BUSY_TIMEOUT: how long a write waits while another process holds a local SQLite file's write lock. */
  busyTimeoutMs: number;
  /** REGISTRY_ALLOWED_ORIGINS: browser origins besides the registry's own that may call it (e.g. a browser-based MCP client). */
  allowedOrigins: string[];
  /** REGISTRY_AUDIT_RETENTION_DAYS: audit events older than this are deleted in the background (0: kept forever). */
  auditRetentionDays: number;
  /** What one service may bring into the catalogue (REGISTRY_MAX_*): past a limit its discovery is refused and nothing is written. */
  limits: DiscoveryLimits;
};

/** Bounds on what a downstream service's discovery may bring in. */
export type DiscoveryLimits = {
  /** REGISTRY_MAX_TOOLS: tools per service. */
  tools: number;
  /** REGISTRY_MAX_DESCRIPTION_BYTES: UTF-8 bytes of one tool's description (and of the service's own). */
  descriptionBytes: number;
  /** REGISTRY_MAX_SCHEMA_BYTES: bytes of one tool's inputSchema, outputSchema or annotations as JSON. */
  schemaBytes: number;
  /** REGISTRY_MAX_DISCOVERY_BYTES: bytes of one answer of the service (one HTTP response body). */
  answerBytes: number;
  /** REGISTRY_MAX_CATALOGUE_BYTES: bytes of all kept tool definitions of one service together (descriptions, titles, schemas). */
  catalogueBytes: number;
  /** REGISTRY_MAX_DISCOVERY_PAGES: pages of tools/list. */
  pages: number;
};

/** Thrown for a bad setting; its message is the one line start-up prints. */
export class ConfigError extends Error {}

// One check: valibot runs later checks even after v.url failed, and new URL() would then throw.
const HttpUrl = v.pipe(
  v.string(),
  v.check((s) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol), "must be an http(s) URL"),
);

// Each variable: its schema from the raw string, and its default when unset or empty.
const VARIABLES = {
  MCP_HOST: { schema: v.pipe(v.string(), v.regex(/^[\w.:-]+$/, "must be a host name or IP address")), fallback: "127.0.0.1" },
  MCP_PORT: {
    schema: v.pipe(v.string(), v.regex(/^\d+$/, "must be an integer from 0 to 65535"), v.transform(Number), v.maxValue(65535, "must be an integer from 0 to 65535")),
    fallback: "8000",
  },
  DATABASE_URL: { schema: v.pipe(v.string(), v.rawTransform(({ dataset, addIssue, NEVER }) => {
    try { return normalizeDatabaseUrl(dataset.value); } catch (e) { addIssue({ message: (e as Error).message }); return NEVER; }
  })), fallback: "file:registry.db" },
  AGENT_REREAD_HOOK: { schema: HttpUrl, fallback: "" },
  REGISTRY_DISCOVERY_TIMEOUT: {
    schema: v.pipe(v.string(), v.regex(/^\d+(\.\d+)?$/, "must be a number of seconds"), v.transform(Number), v.minValue(0.1, "must be at least 0.1 seconds"), v.maxValue(600, "must be at most 600 seconds")),
    fallback: "10",
  },
  REGISTRY_REFRESH_INTERVAL: {
    schema: v.pipe(v.string(), v.regex(/^\d+(\.\d+)?$/, "must be a number of seconds"), v.transform(Number),
      v.check((n) => n === 0 || n >= 0.1, "must be 0 (off) or at least 0.1 seconds"), v.maxValue(604800, "must be at most 604800 seconds (a week)")),
    fallback: "300",
  },
  REGISTRY_ADMIN_KEYS: { schema: keyList(), fallback: "" },
  REGISTRY_AGENT_KEYS: { schema: keyList(), fallback: "" },
  REGISTRY_AUTH: { schema: v.picklist(["on", "off"], 'must be "on" or "off"'), fallback: "on" },
  REGISTRY_SECRET: { schema: secretKey(), fallback: "" },
  REGISTRY_SECRET_PREVIOUS: { schema: secretKey(), fallback: "" },
  REGISTRY_ALLOWED_ORIGINS: { schema: originList(), fallback: "" },
  REGISTRY_AUDIT_RETENTION_DAYS: { schema: count(0, 36500), fallback: "90" },
  REGISTRY_MAX_TOOLS: { schema: count(1, 100_000), fallback: "1000" },
  REGISTRY_MAX_DESCRIPTION_BYTES: { schema: count(256, 1_048_576), fallback: "16384" },
  REGISTRY_MAX_SCHEMA_BYTES: { schema: count(256, 4_194_304), fallback: "65536" },
  REGISTRY_MAX_DISCOVERY_BYTES: { schema: count(65_536, 268_435_456), fallback: "8388608" },
  REGISTRY_MAX_DISCOVERY_PAGES: { schema: count(1, 10_000), fallback: "100" },
  REGISTRY_MAX_CATALOGUE_BYTES: { schema: count(65_536, 1_073_741_824), fallback: "8388608" },
  REGISTRY_SQLITE_SYNC: { schema: v.picklist(["full", "normal"], 'must be "full" or "normal"'), fallback: "full" },
  REGISTRY_SQLITE_BUSY_TIMEOUT: {
    schema: v.pipe(v.string(), v.regex(/^\d+(\.\d+)?$/, "must be a number of seconds"), v.transform(Number), v.minValue(0.1, "must be at least 0.1 seconds"), v.maxValue(600, "must be at most 600 seconds")),
    fallback: "5",
  },
} as const;

// A whole number within bounds, e.g. a limit or a number of days.
function count(min: number, max: number) {
  return v.pipe(v.string(), v.regex(/^\d+$/, "must be a whole number"), v.transform(Number),
    v.minValue(min, `must be at least ${min}`), v.maxValue(max, `must be at most ${max}`));
}

// Comma-separated browser origins (scheme://host[:port]), each compared exactly as a browser sends it.
function originList() {
  return v.pipe(
    v.string(),
    v.transform((s) => s.split(",").map((o) => o.trim()).filter(Boolean)),
    v.check((list) => list.every((o) => URL.canParse(o) && new URL(o).origin === o), "must hold origins like https://console.example.com (scheme, host and port only)"),
  );
}

// A 32-byte AES key in base64, e.g. from `openssl rand -base64 32`.
function secretKey() {
  return v.pipe(v.string(), v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const key = decodeKey(dataset.value);
    if (!key) addIssue({ message: "must be 32 bytes encoded in base64 (openssl rand -base64 32)" });
    return key ?? NEVER;
  }));
}

// Comma-separated keys; short keys are refused because they can be guessed.
function keyList() {
  return v.pipe(
    v.string(),
    v.transform((s) => s.split(",").map((k) => k.trim()).filter(Boolean)),
    v.check((keys) => keys.every((k) => k.length >= 16), "must hold keys of at least 16 characters each"),
  );
}

/** Builds the configuration from an environment; throws ConfigError naming the first bad variable. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const read = <K extends keyof typeof VARIABLES>(name: K) => {
    const { schema, fallback } = VARIABLES[name];
    const raw = env[name]?.trim() || fallback;
    if (raw === "") return null;
    const result = v.safeParse(schema as v.GenericSchema<string, unknown>, raw);
    // Never echo a key back, even a malformed one, nor a database URL (it may carry a password).
    const shown = name.endsWith("_KEYS") || name.startsWith("REGISTRY_SECRET") || name === "DATABASE_URL" ? "" : ` (got "${raw}")`;
    if (!result.success) throw new ConfigError(`Invalid configuration: ${name} ${result.issues[0].message}${shown}`);
    return result.output;
  };
  const config: Config = {
    host: read("MCP_HOST") as string,
    port: read("MCP_PORT") as number,
    databaseUrl: read("DATABASE_URL") as string,
    rereadHook: read("AGENT_REREAD_HOOK") as string | null,
    discoveryTimeoutMs: Math.round((read("REGISTRY_DISCOVERY_TIMEOUT") as number) * 1000),
    refreshIntervalMs: Math.round((read("REGISTRY_REFRESH_INTERVAL") as number) * 1000),
    adminKeys: (read("REGISTRY_ADMIN_KEYS") as string[] | null) ?? [],
    agentKeys: (read("REGISTRY_AGENT_KEYS") as string[] | null) ?? [],
    auth: read("REGISTRY_AUTH") as "on" | "off",
    secret: read("REGISTRY_SECRET") as Uint8Array | null,
    previousSecret: read("REGISTRY_SECRET_PREVIOUS") as Uint8Array | null,
    sqliteSync: read("REGISTRY_SQLITE_SYNC") as "full" | "normal",
    busyTimeoutMs: Math.round((read("REGISTRY_SQLITE_BUSY_TIMEOUT") as number) * 1000),
    allowedOrigins: (read("REGISTRY_ALLOWED_ORIGINS") as string[] | null) ?? [],
    auditRetentionDays: read("REGISTRY_AUDIT_RETENTION_DAYS") as number,
    limits: {
      tools: read("REGISTRY_MAX_TOOLS") as number,
      descriptionBytes: read("REGISTRY_MAX_DESCRIPTION_BYTES") as number,
      schemaBytes: read("REGISTRY_MAX_SCHEMA_BYTES") as number,
      answerBytes: read("REGISTRY_MAX_DISCOVERY_BYTES") as number,
      pages: read("REGISTRY_MAX_DISCOVERY_PAGES") as number,
      catalogueBytes: read("REGISTRY_MAX_CATALOGUE_BYTES") as number,
    },
  };
  if (config.previousSecret && !config.secret) throw new ConfigError("Invalid configuration: REGISTRY_SECRET_PREVIOUS is set but REGISTRY_SECRET (the new key) is not");
  return config;
}

/** Maps the accepted DATABASE_URL forms (including the predecessor's sqlite:/// ones) to a libSQL URL. */
export function normalizeDatabaseUrl(raw: string): string {
  if (raw === ":memory:") return raw;
  const old = /^sqlite(\+aiosqlite)?:\/\/\/(.*)$/.exec(raw);
  if (old) {
    // sqlite:///./dev.db is relative, sqlite:////abs/dev.db absolute, as in SQLAlchemy.
    if (old[2] === "" || old[2] === ":memory:") return ":memory:";
    return `file:${old[2]}`;
  }
  if (/^(file:|libsql:\/\/|https?:\/\/|postgres(ql)?:\/\/)/.test(raw)) return raw;
  const scheme = /^([a-z][\w+.-]*):/i.exec(raw)?.[1] ?? raw;
  throw new Error(`uses an unsupported database "${scheme}"; supported: SQLite (file:<path>, :memory:, sqlite:///<path>), remote libSQL (libsql://, http(s)://) and PostgreSQL (postgres://)`);
}

/** A database URL fit for a log line: remote URLs may carry credentials, so those are blanked out. */
export function redactDatabaseUrl(url: string): string {
  return url.replace(/\/\/[^/@]*@/, "//***@").replace(/([?&](authToken|password)=)[^&]*/gi, "$1***");
}

/** Reads KEY=VALUE lines of a .env file into env, never overriding a variable already set. */
export function readDotEnv(path: string, env: Record<string, string | undefined>): void {
  if (!existsSync(path)) return;
  for (const line of readFileSync(path, "utf8").split(/\r?\n/)) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][\w]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (!m || line.trimStart().startsWith("#")) continue;
    // A quoted value keeps everything inside its quotes; a comment may follow the closing quote.
    const quoted = /^(["'])(.*?)\1(?:\s+#.*)?$/.exec(m[2]);
    const value = quoted ? quoted[2] : m[2].replace(/\s+#.*$/, "");
    if (env[m[1]] === undefined) env[m[1]] = value;
  }
}
