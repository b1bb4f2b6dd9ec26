/** Keeping the catalogue true: re-discovering stored services, applying the difference, health, background refresh. */
import { setMaxListeners } from "node:events";
import { type AnyColumn, and, asc, eq, exists, inArray, isNotNull, isNull, lt, lte, notLike, or, type SQL, sql } from "drizzle-orm";
import type { Ctx } from "../../shared/context.ts";
import { reencryptSecrets } from "../../shared/crypto.ts";
import type { Db, Tables } from "../../shared/db/db.ts";
import type { BatchItem } from "drizzle-orm/batch";
import { AppError } from "../../shared/errors.ts";
import { countRefresh, outcomeOf, type RefreshTrigger } from "../metrics/metrics.ts";
import { notifyCatalogueChanged } from "./hook.ts";
import { type Definition, definitionColumns, definitionOf, digestOf } from "../tool_pinning/definition.ts";
import { changeStatements, namesOf, type PinnedTool, planChanges } from "../tool_pinning/pinning.ts";
import { type Discovery, discoverService, type SkippedTool } from "./discovery.ts";

export type StoredService = Tables["services"]["$inferSelect"];
/** Service columns to write besides what a write sets itself: values, or SQL computed from the row. */
type ServiceColumns = { [K in keyof StoredService]?: StoredService[K] | SQL };

/**
 * What a refresh changed: tool names added, removed, and changed (description, title, schemas, annotations:
 * served changed, policy accept); held (a change awaits review: features/tool_pinning) and released (a held
 * tool's service lists its approved definition again).
 */
export type CatalogueDiff = { added: string[]; removed: string[]; changed: string[]; held: string[]; released: string[] };

/** How long a claimed refresh may run past the discovery timeout before another instance may take it over. */
const LEASE_MARGIN_MS = 30_000;
const MAX_ATTEMPTS = 5;

// The service row a discovery token is sealed for: its name and creation time (the row id is not known
// before the row is written). A ciphertext copied to another service, or to a re-added one, does not open.
function discoveryTokenAad(service: { name: string; createdAt: string }): string {
  return `services.discovery_token\n${service.name}\n${service.createdAt}`;
}

/** Encrypts a discovery token for its service row. */
export function sealDiscoveryToken(ctx: Ctx, service: { name: string; createdAt: string }, token: string): Promise<string> {
  return ctx.vault.encrypt(token, discoveryTokenAad(service));
}

/** The stored discovery token of a service in plain text (null: none); unavailable when it cannot be decrypted. */
export async function openDiscoveryToken(ctx: Ctx, service: StoredService, action: string): Promise<string | null> {
  if (!service.discoveryToken) return null;
  try {
    return await ctx.vault.decrypt(service.discoveryToken, discoveryTokenAad(service));
  } catch {
    throw new AppError("unavailable", `Cannot ${action}: the stored discovery token cannot be decrypted; set it again with update_service (discovery_token)`);
  }
}

/** The headers discovery sends: `Authorization: <method> <token>` when there is a token. */
export function discoveryHeaders(method: string, token: string | null): Record<string, string> | undefined {
  return token ? { authorization: `${method} ${token}` } : undefined;
}

/** True when a diff changed anything. */
export function hasChanges(diff: CatalogueDiff): boolean {
  return diff.added.length + diff.removed.length + diff.changed.length + diff.held.length + diff.released.length > 0;
}

/** The next background refresh time: one interval from now, give or take 10 % so services drift apart. */
export function nextRefreshAt(ctx: Ctx, fromNow = ctx.config.refreshIntervalMs * (0.9 + 0.2 * Math.random())): string | null {
  return ctx.config.refreshIntervalMs > 0 ? new Date(Date.now() + fromNow).toISOString() : null;
}

/**
 * One statement inserting `found` as tools of `serviceId` (a row id, or a subquery that yields it), in
 * order: the rows travel as one JSON parameter that the engine takes apart (json_each,
 * jsonb_array_elements), so the statement's text is the same for any number of tools. Building a
 * many-row INSERT of bound values took more time than the engine's insert (1,000 tools: 10,000 values).
 */
export function insertTools(ctx: Ctx, q: Db, serviceId: number | SQL, found: Definition[]): BatchItem<"sqlite"> {
  const rows = JSON.stringify(found.map((t) => ({ ...definitionOf(t), digest: digestOf(t) })));
  const t = ctx.tables.tools;
  const columns = [t.serviceId, t.name, t.title, t.description, t.inputSchema, t.outputSchema, t.annotations, t.digest].map((c) => sql.identifier(c.name));
  const insert = sql`insert into ${t} (${sql.join(columns, sql`, `)})`;
  // A JSON null is SQL NULL in a column, as the builder writes it (SQLite's ->> gives NULL for it, PostgreSQL's -> a jsonb null).
  return ctx.statement(
    q,
    ctx.engine === "postgres"
      ? sql`${insert} select ${serviceId}, e.t ->> 'name', e.t ->> 'title', e.t ->> 'description', nullif(e.t -> 'inputSchema', 'null'::jsonb), nullif(e.t -> 'outputSchema', 'null'::jsonb), nullif(e.t -> 'annotations', 'null'::jsonb), e.t ->> 'digest' from jsonb_array_elements(${rows}::jsonb) with ordinality as e(t, n) order by e.n`
      : sql`${insert} select ${serviceId}, value ->> 'name', value ->> 'title', value ->> 'description', value ->> 'inputSchema', value ->> 'outputSchema', value ->> 'annotations', value ->> 'digest' from json_each(${rows}) order by key`,
  );
}

/**
 * Writes a discovered catalogue over a service's stored tools in one atomic unit: new tools inserted,
 * vanished ones deleted (with their role attachments), changed ones updated; the tools that remain keep
 * their ids and attachments. `set` holds further service columns to write with it. The difference is
 * computed from the stored tools and applies only if they are still what was read (catalogue_version)
 * and the service still has `endpoint`; otherwise it is read and computed again.
 */
export async function applyCatalogue(ctx: Ctx, serviceId: number, endpoint: string, found: Discovery, set: ServiceColumns, action: string): Promise<CatalogueDiff> {
  const { services, tools, toolChanges } = ctx.tables;
  for (let attempt = 1; ; attempt++) {
    if (attempt > MAX_ATTEMPTS) throw new AppError("conflict", `Cannot ${action}: the service keeps changing; try again`);
    const [row] = await ctx.db
      .select({ endpoint: services.endpoint, version: services.catalogueVersion, serverVersion: services.serverVersion })
      .from(services)
      .where(eq(services.id, serviceId))
      .limit(1);
    if (!row) throw new AppError("not_found", `Cannot ${action}: no such service`);
    if (row.endpoint !== endpoint) throw new AppError("conflict", `Cannot ${action}: its endpoint was changed meanwhile; try again`);
    const stored: PinnedTool[] = await ctx.db
      .select({
        ...definitionColumns(tools),
        digest: tools.digest,
        held: tools.held,
        openDigest: toolChanges.digest,
      })
      .from(tools)
      .leftJoin(toolChanges, and(eq(toolChanges.toolId, tools.id), inArray(toolChanges.status, ["pending", "rejected"])))
      .where(eq(tools.serviceId, serviceId))
      .orderBy(asc(tools.id));
    const known = new Set(stored.map((t) => t.name));
    const names = new Set(found.tools.map((t) => t.name));
    const added = found.tools.filter((t) => !known.has(t.name));
    const plans = planChanges(ctx, stored, found.tools);
    const removed = stored.filter((t) => !names.has(t.name)).map((t) => t.name);
    const diff = { added: added.map((t) => t.name), removed, changed: namesOf(plans, "accept"), held: namesOf(plans, "hold"), released: namesOf(plans, "release") };
    const now = new Date().toISOString();
    const healthy = { transport: found.transport, status: "ok" as const, lastDiscoveredAt: now, lastError: null, consecutiveFailures: 0, serverVersion: found.version };
    // The registry API's updated_since: the entry changed when its tools or its reported version did.
    const touched = hasChanges(diff) || found.version !== row.serverVersion ? { updatedAt: now } : {};

    if (!hasChanges(diff)) {
      // No tool to write: the catalogue version stays, so concurrent refreshes do not make each other retry.
      const written = await ctx.db
        .update(services)
        .set({ ...set, ...healthy, ...touched })
        .where(and(eq(services.id, serviceId), eq(services.endpoint, endpoint)))
        .returning({ id: services.id });
      if (written.length === 1) return diff;
      continue;
    }
    const version = crypto.randomUUID();
    // The service row is written first: on PostgreSQL its row lock orders concurrent writers, and every
    // later statement acts only if this one did (the version it wrote is unique).
    const mine = and(eq(services.id, serviceId), eq(services.catalogueVersion, version));
    let results: unknown[];
    try {
      results = await ctx.atomic((q) => {
        const ours = exists(q.select({ one: sql`1` }).from(services).where(mine));
        return [
          q
            .update(services)
            .set({ ...set, ...healthy, ...touched, catalogueVersion: version })
            .where(and(eq(services.id, serviceId), eq(services.catalogueVersion, row.version), eq(services.endpoint, endpoint)))
            .returning({ id: services.id }),
          ...(removed.length ? [q.delete(tools).where(and(eq(tools.serviceId, serviceId), inArray(tools.name, removed), ours))] : []),
          ...changeStatements(q, ctx, serviceId, plans, ours),
          // Without our version the subquery is NULL and the NOT NULL service_id fails the whole unit.
          ...(added.length ? [insertTools(ctx, q, sql`(select ${services.id} from ${services} where ${mine})`, added)] : []),
        ];
      });
    } catch (err) {
      const [now] = await ctx.db.select({ version: services.catalogueVersion }).from(services).where(eq(services.id, serviceId)).limit(1);
      if (!now) throw new AppError("not_found", `Cannot ${action}: no such service`);
      if (now.version === row.version) throw err;
      continue;
    }
    if ((results[0] as unknown[]).length === 1) return diff;
    // Otherwise another writer came first: the difference is computed again over what it wrote.
  }
}

/** Records a failed discovery of a service at `endpoint`: unreachable, the error, one more failure; tools stay. */
async function recordFailure(ctx: Ctx, serviceId: number, endpoint: string, error: string, set: ServiceColumns): Promise<void> {
  const { services } = ctx.tables;
  await ctx.db
    .update(services)
    .set({ ...set, status: "unreachable", lastError: error, consecutiveFailures: sql`${services.consecutiveFailures} + 1` })
    .where(and(eq(services.id, serviceId), eq(services.endpoint, endpoint)));
}

/**
 * Discovers a stored service again with its discovery token and applies the difference. A failed
 * discovery (a service past a limit too) is recorded (health) and thrown; the tools stay. Calls the reread
 * hook when something changed. Tools discovery skipped are not part of the catalogue: a stored one goes.
 * Counted in features/metrics by `trigger` and outcome. `set` holds further service columns for the
 * write that records the outcome (the background refresher's lease release: one commit, not two).
 */
export async function refreshStoredService(
  ctx: Ctx,
  service: StoredService,
  signal?: AbortSignal,
  trigger: RefreshTrigger = "manual",
  set: ServiceColumns = {},
): Promise<CatalogueDiff & { tools: number; skipped: SkippedTool[] }> {
  const action = `refresh service "${service.name}"`;
  let found: Discovery;
  try {
    const token = await openDiscoveryToken(ctx, service, action);
    found = await discoverService(service.endpoint, {
      timeoutMs: ctx.config.discoveryTimeoutMs,
      wantDescription: false,
      headers: discoveryHeaders(service.methodAuthorization, token),
      signal,
      limits: ctx.config.limits,
    });
  } catch (err) {
    if (signal?.aborted) throw err;
    // Whatever failed is recorded in the service's health; an unexpected failure in words that leak nothing.
    const known = err instanceof AppError;
    const reason = !known
      ? "an unexpected error (the registry's log has it)"
      : err.message.startsWith(`Cannot ${action}: `)
        ? err.message.slice(`Cannot ${action}: `.length)
        : err.message;
    try {
      await recordFailure(ctx, service.id, service.endpoint, reason, set);
    } finally {
      // Counted once the health is written: a scrape that sees the failed refresh sees the service unreachable.
      countRefresh(trigger, outcomeOf(err));
    }
    throw known ? new AppError(err.code, `Cannot ${action}: ${reason}`) : err;
  }
  const diff = await applyCatalogue(ctx, service.id, service.endpoint, found, set, action).catch((err) => {
    countRefresh(trigger, outcomeOf(err));
    throw err;
  });
  countRefresh(trigger, "ok");
  if (hasChanges(diff)) notifyCatalogueChanged(ctx);
  return { ...diff, tools: found.tools.length, skipped: found.skipped };
}

/** Start-up check of the stored discovery tokens against the vault, as for user tokens (shared/crypto.ts reencryptSecrets). */
export async function reencryptDiscoveryTokens(ctx: Ctx): Promise<number> {
  const { services } = ctx.tables;
  const rows = await ctx.db
    .select()
    .from(services)
    .where(and(isNotNull(services.discoveryToken), notLike(services.discoveryToken, `${ctx.vault.currentPrefix}%`)));
  return reencryptSecrets(
    ctx.vault,
    ctx.config,
    ctx.log,
    "discovery token",
    rows.map((r) => ({
      sealed: r.discoveryToken!,
      aad: discoveryTokenAad(r),
      names: { service_name: r.name },
      // Only if unchanged meanwhile (another instance may rotate, or an operator set a new token).
      replace: (sealed) =>
        ctx.db
          .update(services)
          .set({ discoveryToken: sealed })
          .where(and(eq(services.id, r.id), eq(services.discoveryToken, r.discoveryToken!))),
    })),
  );
}

// The background refresher's pace. A pass over every service should end within the interval whatever the
// catalogue's size, without a burst that slows agents: refreshes start at HEADROOM times the rate a pass
// needs (services / interval, at least MIN_RATE per second), each round at most one round's worth; as many
// run at once as that rate needs at the mean discovery time measured so far (a slow or silent service
// holds its slot until the discovery timeout), between MIN_PARALLEL and MAX_PARALLEL (the bound on
// discoveries one instance has open).
const HEADROOM = 1.5;
const MIN_RATE = 10;
const MIN_PARALLEL = 4;
const MAX_PARALLEL = 64;
/** Services one statement schedules or claims. */
const BATCH = 500;

/** One instance's refresher: the refreshes it runs, and what it knows of the pace. */
type Refresher = {
  running: Map<number, Promise<void>>;
  /** Refreshes it may start now (refilled with time at the rate, spent by claims). */
  credit: number;
  creditAt: number;
  /** The mean duration of its discoveries (moving average), ms. */
  meanMs: number;
  /** The last round filled every slot with services still due: a finished refresh starts the next round at once. */
  backlog: boolean;
  /** What each service's last refresh skipped (as logged), to log it again only when it changes. */
  skipped: Map<number, string>;
  /** The number of services, and when it was counted. */
  services: number;
  countedAt: number;
};

/**
 * Starts refreshing every service in the background, each about every REGISTRY_REFRESH_INTERVAL
 * (nothing when it is 0), paced as above. Instances sharing a database claim due services with a
 * conditional UPDATE (next_refresh_at, refresh_lease_until), so one service is refreshed by one instance
 * at a time. stop() cancels discoveries under way and waits for them.
 */
export function startRefresher(ctx: Ctx): { stop(): Promise<void> } {
  const interval = ctx.config.refreshIntervalMs;
  if (interval === 0) return { stop: async () => {} };
  const stopping = new AbortController();
  // Every discovery under way listens for the stop: up to MAX_PARALLEL of them (Node warns past 10).
  setMaxListeners(MAX_PARALLEL + 10, stopping.signal);
  const tickMs = Math.min(1000, Math.max(50, interval / 10));
  const r: Refresher = {
    running: new Map(),
    credit: 0,
    creditAt: performance.now(),
    meanMs: Math.min(1000, ctx.config.discoveryTimeoutMs / 10),
    backlog: false,
    skipped: new Map(),
    services: 0,
    countedAt: Number.NEGATIVE_INFINITY,
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  let ticking: Promise<void> | undefined;
  let again = false;
  // One round at a time: asked for during one, the next starts when it ends.
  const loop = () => {
    clearTimeout(timer);
    if (stopping.signal.aborted) return;
    if (ticking) {
      again = true;
      return;
    }
    ticking = round(ctx, r, tickMs, stopping.signal, loop)
      .catch((err) => ctx.log.error("Background refresh failed", { reason: String((err as Error)?.message ?? err) }))
      .finally(() => {
        ticking = undefined;
        if (again && !stopping.signal.aborted) {
          again = false;
          loop();
        } else if (!stopping.signal.aborted) timer = setTimeout(loop, tickMs);
      });
  };
  timer = setTimeout(loop, tickMs);
  return {
    async stop() {
      stopping.abort();
      clearTimeout(timer);
      await ticking;
      await Promise.allSettled(r.running.values());
    },
  };
}

// One round: schedule services that have no time yet, then claim as many due ones as the pace allows.
async function round(ctx: Ctx, r: Refresher, tickMs: number, signal: AbortSignal, wake: () => void): Promise<void> {
  // Scheduling new services and counting them once a tick: a finished refresh's round reuses the count.
  if (performance.now() - r.countedAt >= tickMs) {
    await scheduleNew(ctx);
    r.services = await ctx.db.$count(ctx.tables.services);
    r.countedAt = performance.now();
  }
  const rate = Math.max(MIN_RATE, (HEADROOM * r.services * 1000) / ctx.config.refreshIntervalMs);
  const now = performance.now();
  r.credit = Math.min(Math.max(MIN_PARALLEL, (rate * tickMs) / 1000), r.credit + (rate * (now - r.creditAt)) / 1000);
  r.creditAt = now;
  const slots = Math.min(MAX_PARALLEL, Math.max(MIN_PARALLEL, Math.ceil((rate * r.meanMs) / 1000))) - r.running.size;
  const want = Math.min(slots, Math.floor(r.credit), BATCH);
  if (want <= 0 || signal.aborted) return;
  const claimed = await claimDue(ctx, want, r.running);
  r.credit -= claimed.length;
  r.backlog = claimed.length === slots;
  for (const service of claimed) {
    const started = performance.now();
    const run = runClaimed(ctx, r, service, signal).finally(() => {
      r.running.delete(service.id);
      r.meanMs = 0.9 * r.meanMs + 0.1 * (performance.now() - started);
      if (r.backlog) wake();
    });
    r.running.set(service.id, run);
  }
}

// A service added while refresh was off (or imported) gets a random time within one interval, so a
// catalogue of many services is not discovered all at once. One statement per BATCH services.
async function scheduleNew(ctx: Ctx): Promise<void> {
  const { services } = ctx.tables;
  for (;;) {
    const ids = (await ctx.db.select({ id: services.id }).from(services).where(isNull(services.nextRefreshAt)).limit(BATCH)).map((s) => s.id);
    if (ids.length === 0) return;
    const at = byId(services.id, ids, () => nextRefreshAt(ctx, ctx.config.refreshIntervalMs * Math.random()));
    await ctx.db
      .update(services)
      .set({ nextRefreshAt: at })
      .where(and(inArray(services.id, ids), isNull(services.nextRefreshAt)));
    if (ids.length < BATCH) return;
  }
}

// Claims up to `n` due services this instance is not running, in one conditional UPDATE: a row another
// instance claimed meanwhile is no longer due and free when it is written, so only one instance gets it.
async function claimDue(ctx: Ctx, n: number, running: Map<number, unknown>): Promise<StoredService[]> {
  const { services } = ctx.tables;
  const now = new Date().toISOString();
  const dueAndFree = and(lte(services.nextRefreshAt, now), or(isNull(services.refreshLeaseUntil), lt(services.refreshLeaseUntil, now)));
  const due = await ctx.db
    .select({ id: services.id })
    .from(services)
    .where(dueAndFree)
    .orderBy(asc(services.nextRefreshAt))
    .limit(n + running.size);
  const ids = due
    .map((d) => d.id)
    .filter((id) => !running.has(id))
    .slice(0, n);
  if (ids.length === 0) return [];
  const lease = new Date(Date.now() + ctx.config.discoveryTimeoutMs + LEASE_MARGIN_MS).toISOString();
  return ctx.db
    .update(services)
    .set({ refreshLeaseUntil: lease, nextRefreshAt: byId(services.id, ids, () => nextRefreshAt(ctx)) })
    .where(and(inArray(services.id, ids), dueAndFree))
    .returning();
}

// A value per row of one UPDATE: CASE id WHEN <id> THEN <value> ... END.
function byId(id: AnyColumn, ids: number[], value: () => string | null): SQL {
  return sql`case ${id} ${sql.join(
    ids.map((id) => sql`when ${id} then ${value()}`),
    sql` `,
  )} end`;
}

async function runClaimed(ctx: Ctx, r: Refresher, service: StoredService, signal: AbortSignal): Promise<void> {
  const lease = service.refreshLeaseUntil!;
  const { services } = ctx.tables;
  // The lease is released by the write that records the outcome (ours only: a lease another instance took
  // over is left alone); the release in `finally` is then a write of nothing, which commits nothing to disk.
  const release = { refreshLeaseUntil: sql<string | null>`case when ${services.refreshLeaseUntil} = ${lease} then null else ${services.refreshLeaseUntil} end` };
  try {
    const { skipped, held } = await refreshStoredService(ctx, service, signal, "background", release);
    if (service.status !== "ok") ctx.log.info(`Service "${service.name}" is reachable again`);
    // A tool held for review is withheld from agents until an admin looks: the log tells the operator.
    if (held.length) ctx.log.warn(`Service "${service.name}" changed tools; held until an admin approves (list_tool_changes)`, { tools: held.join(", ") });
    // Nobody reads a background refresh's result: the log says what it left out (names already escaped),
    // when that changes, not at every refresh of a service that keeps listing the same tools.
    const left = skipped.map((s) => `"${s.name}" (${s.reason})`);
    const shown = left.join("\n");
    if (shown !== (r.skipped.get(service.id) ?? "")) {
      if (left.length) {
        ctx.log.warn(`Service "${service.name}" lists tools the registry skipped`, { skipped: left });
        r.skipped.set(service.id, shown);
      } else r.skipped.delete(service.id);
    }
  } catch (err) {
    if (signal.aborted) return;
    if (err instanceof AppError && err.code === "unavailable") {
      if (service.status === "ok") ctx.log.warn(`Service "${service.name}" is unreachable`, { reason: err.message });
    } else if (!(err instanceof AppError)) {
      ctx.log.error(`Background refresh of service "${service.name}" failed`, { reason: String((err as Error)?.message ?? err) });
    }
    // not_found or conflict: the service was removed or moved meanwhile; its next refresh sees the new state.
  } finally {
    // Free the service for its next refresh, which may be due before the lease would end (if nothing did).
    await ctx.db
      .update(services)
      .set({ refreshLeaseUntil: null })
      .where(and(eq(services.id, service.id), eq(services.refreshLeaseUntil, lease)))
      .catch((err) => ctx.log.error("Cannot release a refresh lease", { service_name: service.name, reason: String((err as Error)?.message ?? err) }));
  }
}
