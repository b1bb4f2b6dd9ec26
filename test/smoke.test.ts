import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, type Spawned, startEverything, startTestRegistry, type TestRegistry, text } from "./helpers.ts";

describe("smoke", () => {
  let reg: TestRegistry;
  let everything: Spawned;
  beforeAll(async () => {
    [reg, everything] = await Promise.all([startTestRegistry(), startEverything()]);
  });
  afterAll(async () => {
    await reg?.stop();
    await everything?.stop();
  });
  it("adds server-everything and lists it", async () => {
    const c = await reg.client();
    const r = await call(c, "add_service", { service_name: "everything", endpoint: everything.url, description: "" });
    expect(text(r)).toBe('Service "everything" added with 13 tools.');
    const res = await reg.http("/list_services");
    expect(await res.json()).toEqual({ services: { everything: { transport: "streamable_http", url: everything.url } } });
  });
});
