/**
 * The two engines keep one schema: after their migrations, SQLite and PostgreSQL have the same tables,
 * columns (and which may be null), indexes (columns, uniqueness) and catalogue triggers (table, event,
 * columns). schema.ts and schema.pg.ts are written by hand; this fails when they drift apart.
 */
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStore, type Store } from "../shared/db/db.ts";
import { temporaryPostgres } from "../shared/db/temporary.ts";
import { ENGINE } from "./helpers.ts";

type Shape = {
  columns: Record<string, Record<string, { nullable: boolean }>>;
  indexes: Record<string, { table: string; columns: string[]; unique: boolean }>;
  triggers: string[];
};

async function sqliteShape(store: Store): Promise<Shape> {
  const rows = async <T>(q: ReturnType<typeof sql>) => (await store.db.all(q)) as T[];
  const tables = (await rows<[string]>(sql`select name from sqlite_master where type = 'table' and name not like 'sqlite_%' and name not like '__drizzle%' order by name`)).map(
    (r) => r[0],
  );
  const shape: Shape = { columns: {}, indexes: {}, triggers: [] };
  for (const table of tables) {
    // table_info rows: cid, name, type, notnull, default, pk. A primary key column is never null.
    const columns = await rows<[number, string, string, number, unknown, number]>(sql.raw(`pragma table_info(${table})`));
    shape.columns[table] = Object.fromEntries(columns.map(([, name, , notnull, , pk]) => [name, { nullable: notnull === 0 && pk === 0 }]));
    // index_list rows: seq, name, unique, origin (pk for a primary key), partial.
    for (const [, name, unique, origin] of await rows<[number, string, number, string]>(sql.raw(`pragma index_list(${table})`))) {
      if (origin === "pk") continue;
      const cols = (await rows<[number, number, string]>(sql.raw(`pragma index_info(${name})`))).map((r) => r[2]);
      shape.indexes[name] = { table, columns: cols, unique: unique === 1 };
    }
  }
  for (const [text] of await rows<[string]>(sql`select sql from sqlite_master where type = 'trigger'`)) {
    // AFTER UPDATE OF `a`, `b` ON `t`: the columns, sorted, as PostgreSQL's are below.
    const m = /AFTER (INSERT|DELETE|UPDATE)(?: OF ((?:`\w+`(?:,\s*)?)+))? ON `(\w+)`/i.exec(text)!;
    const columns = m[2] ? [...m[2].matchAll(/`(\w+)`/g)].map((c) => c[1]).sort() : [];
    shape.triggers.push(`${m[3]} ${m[1].toLowerCase()}${columns.length ? ` of ${columns.join(",")}` : ""}`);
  }
  shape.triggers.sort();
  return shape;
}

async function postgresShape(url: string): Promise<Shape> {
  const { default: postgres } = await import("postgres");
  const pg = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const shape: Shape = { columns: {}, indexes: {}, triggers: [] };
    for (const c of await pg`select table_name, column_name, is_nullable from information_schema.columns where table_schema = 'public' and table_name not like '__drizzle%'`) {
      shape.columns[c.table_name] = { ...shape.columns[c.table_name], [c.column_name]: { nullable: c.is_nullable === "YES" } };
    }
    const indexes = await pg`select t.relname as table, i.relname as name, ix.indisunique as unique, ix.indisprimary as primary,
        array(select a.attname from unnest(ix.indkey) with ordinality k(attnum, n) join pg_attribute a on a.attrelid = t.oid and a.attnum = k.attnum order by k.n) as columns
      from pg_index ix join pg_class t on t.oid = ix.indrelid join pg_class i on i.oid = ix.indexrelid join pg_namespace s on s.oid = t.relnamespace
      where s.nspname = 'public' and t.relname not like '__drizzle%'`;
    for (const ix of indexes) if (!ix.primary) shape.indexes[ix.name] = { table: ix.table, columns: ix.columns, unique: ix.unique };
    const triggers = await pg`select t.event_object_table as table, t.event_manipulation as event,
        (select string_agg(u.event_object_column, ',') from information_schema.triggered_update_columns u
          where u.trigger_name = t.trigger_name and u.event_object_table = t.event_object_table) as columns
      from information_schema.triggers t where t.trigger_schema = 'public'`;
    const sorted = (columns: string) => columns.split(",").sort().join(",");
    shape.triggers = triggers.map((t) => `${t.table} ${String(t.event).toLowerCase()}${t.event === "UPDATE" && t.columns ? ` of ${sorted(t.columns)}` : ""}`).sort();
    return shape;
  } finally {
    await pg.end();
  }
}

// Needs both engines: PostgreSQL is there when the suite runs on it (TEST_DATABASE_URL), SQLite always.
describe.runIf(ENGINE === "postgres")("the SQLite and PostgreSQL schemas", () => {
  let sqlite: Shape;
  let pg: Shape;
  let db: { url: string; drop(): Promise<void> };
  beforeAll(async () => {
    const local = await openStore(":memory:");
    sqlite = await sqliteShape(local);
    await local.close();
    db = await temporaryPostgres(process.env.TEST_DATABASE_URL!, "parity");
    await (await openStore(db.url)).close();
    pg = await postgresShape(db.url);
  });
  afterAll(async () => db?.drop());

  it("have the same tables and columns, with the same nullability", () => {
    expect(Object.keys(pg.columns).sort()).toEqual(Object.keys(sqlite.columns).sort());
    for (const table of Object.keys(sqlite.columns)) expect(pg.columns[table], table).toEqual(sqlite.columns[table]);
  });

  it("have the same indexes, on the same columns, equally unique", () => {
    expect(pg.indexes).toEqual(sqlite.indexes);
  });

  it("raise the catalogue generation on the same changes", () => {
    expect(pg.triggers).toEqual(sqlite.triggers);
    expect(sqlite.triggers.length).toBeGreaterThan(0);
  });
});
