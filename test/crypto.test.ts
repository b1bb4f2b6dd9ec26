/** The token vault (shared/crypto.ts) and its configuration (REGISTRY_SECRET, REGISTRY_SECRET_PREVIOUS). */
import { chmodSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../shared/config.ts";
import { createVault, decodeKey, keyFilePath, openVault } from "../shared/crypto.ts";
import { createLog } from "../shared/log.ts";
import { tempDir } from "./helpers.ts";

const A = new Uint8Array(32).fill(1);
const B = new Uint8Array(32).fill(2);
const b64 = (key: Uint8Array) => Buffer.from(key).toString("base64");

function capture() {
  const lines: string[] = [];
  return { log: createLog((line) => lines.push(line)), lines };
}

describe("createVault", () => {
  it("round-trips, in the v1:<key id>:<iv>:<ciphertext> format, with a fresh IV each time", async () => {
    const vault = await createVault(A, null, "test");
    const one = await vault.encrypt("secret-token", "row 1");
    const two = await vault.encrypt("secret-token", "row 1");
    expect(one).toMatch(/^v1:[0-9a-f]{8}:[A-Za-z0-9+/]+={0,2}:[A-Za-z0-9+/]+={0,2}$/);
    expect(one.startsWith(vault.currentPrefix)).toBe(true);
    expect(one).not.toBe(two);
    expect(one).not.toContain("secret-token");
    expect(await vault.decrypt(one, "row 1")).toBe("secret-token");
    expect(await vault.decrypt(await vault.encrypt("é ☃ 𝄞", "x"), "x")).toBe("é ☃ 𝄞");
  });

  it("refuses other additional data, a tampered ciphertext, another key and malformed text", async () => {
    const vault = await createVault(A, null, "test");
    const sealed = await vault.encrypt("secret-token", "row 1");
    await expect(vault.decrypt(sealed, "row 2")).rejects.toThrow();
    const [v, id, iv, ct] = sealed.split(":");
    const flipped = Buffer.from(ct, "base64");
    flipped[0] ^= 1;
    await expect(vault.decrypt([v, id, iv, flipped.toString("base64")].join(":"), "row 1")).rejects.toThrow();
    const other = await createVault(B, null, "test");
    expect(other.keyOf(sealed)).toBe("unknown");
    await expect(other.decrypt(sealed, "row 1")).rejects.toThrow("Cannot decrypt: unknown format or key");
    for (const bad of ["", "plaintext", "v2:x:y:z", `${sealed}:extra`]) await expect(vault.decrypt(bad, "row 1")).rejects.toThrow();
  });

  it("reads texts of the previous key and tells which key sealed a text", async () => {
    const old = await createVault(A, null, "old");
    const sealed = await old.encrypt("old-token", "row");
    const rotated = await createVault(B, A, "new");
    expect(rotated.keyOf(sealed)).toBe("previous");
    expect(await rotated.decrypt(sealed, "row")).toBe("old-token");
    const resealed = await rotated.encrypt("old-token", "row");
    expect(rotated.keyOf(resealed)).toBe("current");
    expect(old.keyOf(resealed)).toBe("unknown");
  });
});

describe("decodeKey and keyFilePath", () => {
  it("accepts 32 bytes in base64 or base64url, padded or not, and nothing else", () => {
    expect(decodeKey(b64(A))).toEqual(A);
    expect(decodeKey(b64(A).replace("=", ""))).toEqual(A);
    const url = Buffer.alloc(32, 0xfb).toString("base64url");
    expect(decodeKey(url)).toEqual(new Uint8Array(32).fill(0xfb));
    for (const bad of ["", "short", Buffer.alloc(16).toString("base64"), Buffer.alloc(33).toString("base64"), `${b64(A).slice(0, 42)}!=`]) expect(decodeKey(bad)).toBeNull();
  });

  it("puts the key file beside a file database", () => {
    expect(keyFilePath("file:/data/r.db")).toBe("/data/r.db.key");
    expect(keyFilePath("file:///data/r.db")).toBe("/data/r.db.key");
    expect(keyFilePath("file:registry.db")).toBe("registry.db.key");
    expect(keyFilePath("file:./dev.db?mode=rwc")).toBe("./dev.db.key");
    expect(keyFilePath(":memory:")).toBe(":memory:");
    expect(keyFilePath("libsql://db.example.com")).toBeNull();
    expect(keyFilePath("postgres://u:p@db/registry")).toBeNull();
  });
});

describe("openVault", () => {
  const dir = tempDir();
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("uses REGISTRY_SECRET (and REGISTRY_SECRET_PREVIOUS) when set, and writes no key file", async () => {
    const { log, lines } = capture();
    const db = join(dir, "with-secret.db");
    const vault = await openVault(loadConfig({ DATABASE_URL: `file:${db}`, REGISTRY_SECRET: b64(B), REGISTRY_SECRET_PREVIOUS: b64(A) }), log);
    expect(vault.source).toBe("REGISTRY_SECRET");
    expect(vault.keyOf(await (await createVault(A, null, "a")).encrypt("t", "r"))).toBe("previous");
    expect(existsSync(`${db}.key`)).toBe(false);
    expect(lines.join("\n")).toContain("Token encryption key: REGISTRY_SECRET (tokens under REGISTRY_SECRET_PREVIOUS are re-encrypted)");
    expect(lines.join("\n")).not.toContain(b64(B));
  });

  it("generates a key file with mode 0600 once, logs its path, and reads it back", async () => {
    const { log, lines } = capture();
    const db = join(dir, "generated.db");
    const config = loadConfig({ DATABASE_URL: `file:${db}` });
    const first = await openVault(config, log);
    expect(statSync(`${db}.key`).mode & 0o777).toBe(0o600);
    expect(decodeKey(readFileSync(`${db}.key`, "utf8"))).not.toBeNull();
    expect(first.source).toBe(`the key file ${db}.key`);
    const second = await openVault(config, log);
    expect(await second.decrypt(await first.encrypt("t", "r"), "r")).toBe("t");
    expect(lines[0]).toContain(`Token encryption key generated into ${db}.key (mode 0600)`);
    expect(lines[1]).toContain(`Token encryption key read from ${db}.key`);
    chmodSync(`${db}.key`, 0o640);
    await openVault(config, log);
    expect(lines.join("\n")).toContain("is readable by other users: chmod 600 it");
  });

  it("refuses a key file that does not hold a key, naming it and REGISTRY_SECRET", async () => {
    const db = join(dir, "corrupt.db");
    writeFileSync(`${db}.key`, "not a key\n", { mode: 0o600 });
    await expect(openVault(loadConfig({ DATABASE_URL: `file:${db}` }), capture().log)).rejects.toThrow(
      `The token encryption key file ${db}.key does not hold 32 bytes in base64: restore it, or set REGISTRY_SECRET`,
    );
  });

  it("uses an ephemeral key for an in-memory database, and says so", async () => {
    const { log, lines } = capture();
    const vault = await openVault(loadConfig({ DATABASE_URL: ":memory:" }), log);
    expect(await vault.decrypt(await vault.encrypt("t", "r"), "r")).toBe("t");
    expect(lines.join("\n")).toContain("Token encryption key: ephemeral, in this process only (in-memory database)");
  });

  it("requires REGISTRY_SECRET with a remote database", async () => {
    for (const url of ["libsql://db.example.com", "postgres://u:p@db.example.com/registry"]) {
      await expect(openVault(loadConfig({ DATABASE_URL: url }), capture().log)).rejects.toThrow(/^REGISTRY_SECRET is required with a remote database/);
    }
  });
});

describe("REGISTRY_SECRET configuration", () => {
  it("decodes valid keys", () => {
    const config = loadConfig({ REGISTRY_SECRET: b64(B), REGISTRY_SECRET_PREVIOUS: b64(A) });
    expect(config.secret).toEqual(B);
    expect(config.previousSecret).toEqual(A);
    expect(loadConfig({}).secret).toBeNull();
  });

  it.each([
    ["REGISTRY_SECRET", Buffer.alloc(16, 9).toString("base64")],
    ["REGISTRY_SECRET", "a secret that is not base64 at all!!!!!!!!!!"],
    ["REGISTRY_SECRET_PREVIOUS", "c2hvcnQ="],
  ])("refuses a bad %s without echoing it", (name, value) => {
    const env = { REGISTRY_SECRET: b64(B), [name]: value };
    expect(() => loadConfig(env)).toThrow(ConfigError);
    // The whole message, so the value is certainly not in it.
    const message = (() => {
      try {
        loadConfig(env);
        return "";
      } catch (err) {
        return (err as Error).message;
      }
    })();
    expect(message).toBe(`Invalid configuration: ${name} must be 32 bytes encoded in base64 (openssl rand -base64 32)`);
  });

  it("refuses REGISTRY_SECRET_PREVIOUS without REGISTRY_SECRET", () => {
    expect(() => loadConfig({ REGISTRY_SECRET_PREVIOUS: b64(A) })).toThrow("Invalid configuration: REGISTRY_SECRET_PREVIOUS is set but REGISTRY_SECRET (the new key) is not");
  });
});
