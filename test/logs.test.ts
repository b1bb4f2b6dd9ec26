/** The log formats: text for people, one JSON object per line for log shippers (LOG_FORMAT=json). */
import { describe, expect, it } from "vitest";
import { loadConfig } from "../shared/config.ts";
import { createLog, logFormatOf } from "../shared/log.ts";

describe("log lines", () => {
  const capture = (format: "text" | "json") => {
    const lines: string[] = [];
    return { log: createLog((line) => lines.push(line), format), lines };
  };

  it("text: time, level, message and the fields as JSON", () => {
    const { log, lines } = capture("text");
    log.warn('Service "weather" is unreachable', { reason: "no answer" });
    log.info("plain");
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARN Service "weather" is unreachable \{"reason":"no answer"\}$/);
    expect(lines[1]).toMatch(/Z INFO plain$/);
  });

  it("json: one object per line with time, level, msg and the fields; a field never replaces those three", () => {
    const { log, lines } = capture("json");
    log.error("Internal error", { requestId: "1a2b3c4d", path: "/token", msg: "not this", level: "not this", time: "not this" });
    log.info("line\nbreak");
    expect(lines).toHaveLength(2);
    const first = JSON.parse(lines[0]);
    expect(first).toEqual({ time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), level: "error", msg: "Internal error", requestId: "1a2b3c4d", path: "/token" });
    expect(Object.keys(first).slice(0, 3)).toEqual(["time", "level", "msg"]);
    // A message with a line break stays one line.
    expect(JSON.parse(lines[1]).msg).toBe("line\nbreak");
  });

  it("LOG_FORMAT: json or text, anything else refused by the configuration", () => {
    expect(logFormatOf({ LOG_FORMAT: "json" })).toBe("json");
    expect(logFormatOf({})).toBe("text");
    expect(loadConfig({ LOG_FORMAT: "json" }).logFormat).toBe("json");
    expect(() => loadConfig({ LOG_FORMAT: "xml" })).toThrow('Invalid configuration: LOG_FORMAT must be "text" or "json" (got "xml")');
  });
});
