/** Encryption of secrets at rest: AES-256-GCM, encrypted with WebCrypto, decrypted with node:crypto (same code on Node and Deno). */
import { Buffer } from "node:buffer";
import { createDecipheriv } from "node:crypto";
import { chmodSync, readFileSync, statSync, writeFileSync } from "node:fs";
import type { Config } from "./config.ts";
import type { Log } from "./log.ts";

/**
 * Encrypts and decrypts short secrets with the current key; texts stored under the previous key
 * (REGISTRY_SECRET_PREVIOUS) stay readable until they are re-encrypted.
 */
export type Vault = {
  /** Where the current key comes from, named so an operator knows what to fix ("REGISTRY_SECRET", "key file <path>", ...). */
  source: string;
  /** Encrypts `plaintext` bound to `aad` (it must be given again to decrypt): "v1:<key id>:<iv>:<ciphertext>". */
  encrypt(plaintext: string, aad: string): Promise<string>;
  /** Decrypts a stored text; throws when it is malformed, under an unknown key, tampered or bound to other `aad`. */
  decrypt(stored: string, aad: string): Promise<string>;
  /** Which key a stored text was encrypted with, from its key id (no decryption). */
  keyOf(stored: string): "current" | "previous" | "unknown";
  /** The prefix every text encrypted with the current key starts with. */
  currentPrefix: string;
};

const VERSION = "v1";
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const encoder = new TextEncoder();

/** A vault over raw 32-byte keys: the current one and optionally the previous one. */
export async function createVault(current: Uint8Array, previous: Uint8Array | null, source: string): Promise<Vault> {
  // Keys are imported once; the hot path only decrypts.
  const cur = { id: await keyId(current), key: await importKey(current), raw: Buffer.from(current) };
  const prev = previous ? { id: await keyId(previous), key: await importKey(previous), raw: Buffer.from(previous) } : null;
  const currentPrefix = `${VERSION}:${cur.id}:`;
  return {
    source,
    currentPrefix,
    async encrypt(plaintext, aad) {
      const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
      const sealed = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: encoder.encode(aad) }, cur.key, encoder.encode(plaintext));
      return `${currentPrefix}${b64(iv)}:${b64(new Uint8Array(sealed))}`;
    },
    async decrypt(stored, aad) {
      const [version, id, iv, sealed, extra] = stored.split(":");
      const key = id === cur.id ? cur.raw : id === prev?.id ? prev.raw : null;
      if (version !== VERSION || !key || !iv || !sealed || extra !== undefined) throw new Error("Cannot decrypt: unknown format or key");
      // node:crypto, synchronous: /token decrypts on every call, and a WebCrypto decrypt is a round trip
      // to a worker thread costing ten times as much (bench/). Same format: ciphertext then 16-byte tag.
      const bytes = Buffer.from(sealed, "base64");
      if (bytes.length < TAG_BYTES) throw new Error("Cannot decrypt: unknown format or key");
      const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(iv, "base64"), { authTagLength: TAG_BYTES });
      decipher.setAAD(encoder.encode(aad));
      decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
      // final() throws when the tag does not match (wrong key, aad or bytes).
      return Buffer.concat([decipher.update(bytes.subarray(0, bytes.length - TAG_BYTES)), decipher.final()]).toString("utf8");
    },
    keyOf(stored) {
      const id = stored.split(":", 2)[1];
      return id === cur.id ? "current" : prev && id === prev.id ? "previous" : "unknown";
    },
  };
}

/**
 * Opens the vault for a configuration: REGISTRY_SECRET when set; else a key file beside a file
 * database (generated once, mode 0600); else, for :memory:, an ephemeral key. Logs where the key is.
 */
export async function openVault(config: Config, log: Log): Promise<Vault> {
  if (config.secret) {
    log.info(`Token encryption key: REGISTRY_SECRET${config.previousSecret ? " (tokens under REGISTRY_SECRET_PREVIOUS are re-encrypted)" : ""}`);
    return createVault(config.secret, config.previousSecret, "REGISTRY_SECRET");
  }
  const path = keyFilePath(config.databaseUrl);
  if (path === ":memory:") {
    log.info("Token encryption key: ephemeral, in this process only (in-memory database)");
    return createVault(crypto.getRandomValues(new Uint8Array(KEY_BYTES)), null, "the ephemeral key");
  }
  if (path === null) {
    // Instances sharing a remote database must share the key; a key file per machine would split them.
    throw new Error("REGISTRY_SECRET is required with a remote database: set it to 32 random bytes in base64 (openssl rand -base64 32), the same on every instance");
  }
  return createVault(readOrCreateKeyFile(path, log), null, `the key file ${path}`);
}

/** The key file of a database URL: "<path>.key" for file:<path>, ":memory:" for an in-memory database, null for a remote one. */
export function keyFilePath(databaseUrl: string): string | null {
  if (databaseUrl === ":memory:") return ":memory:";
  if (!databaseUrl.startsWith("file:")) return null;
  // file:/abs, file:///abs and file:relative, without libSQL query options.
  const path = databaseUrl
    .slice("file:".length)
    .split("?")[0]
    .replace(/^\/\/(?=\/)/, "");
  return path === "" || path === ":memory:" ? ":memory:" : `${path}.key`;
}

/** Decodes a base64 (or base64url) 32-byte key; null when it is not one. */
export function decodeKey(text: string): Uint8Array | null {
  const s = text.trim();
  if (!/^[A-Za-z0-9+/_-]{43}=?$/.test(s)) return null;
  const bytes = new Uint8Array(Buffer.from(s, "base64"));
  return bytes.length === KEY_BYTES ? bytes : null;
}

function readOrCreateKeyFile(path: string, log: Log): Uint8Array {
  const key = crypto.getRandomValues(new Uint8Array(KEY_BYTES));
  try {
    // "wx": never overwrite a key another process has just written.
    writeFileSync(path, `${b64(key)}\n`, { mode: 0o600, flag: "wx" });
    chmodSync(path, 0o600);
    log.info(`Token encryption key generated into ${path} (mode 0600): back it up with the database, or set REGISTRY_SECRET`);
    return key;
  } catch (err) {
    if ((err as { code?: string }).code !== "EEXIST") throw new Error(`Cannot write the token encryption key file ${path}: ${(err as Error).message}; set REGISTRY_SECRET instead`);
  }
  const stored = decodeKey(readFileSync(path, "utf8"));
  if (!stored) throw new Error(`The token encryption key file ${path} does not hold 32 bytes in base64: restore it, or set REGISTRY_SECRET`);
  if ((statSync(path).mode & 0o077) !== 0) log.warn(`Token encryption key file ${path} is readable by other users: chmod 600 it`);
  log.info(`Token encryption key read from ${path}`);
  return stored;
}

async function importKey(raw: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", new Uint8Array(raw), { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
}

// A short public id of a key, so a stored text says which key sealed it (a hash prefix reveals nothing of the key).
async function keyId(raw: Uint8Array): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(raw)));
  return Buffer.from(hash.subarray(0, 4)).toString("hex");
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** A stored secret to check at start-up: its text, the data it is bound to, how to name it in a warning, how to store it anew. */
export type StoredSecret = { sealed: string; aad: string; names: Record<string, string>; replace(sealed: string): Promise<unknown> };

/**
 * Start-up check of one kind of stored secret (e.g. "user token", "discovery token") against the vault:
 * those under REGISTRY_SECRET_PREVIOUS are re-encrypted with the current key (`replace` writes only if the
 * row is unchanged); any under an unknown key stops start-up with a message naming what to fix; one that
 * does not open for its row (moved or altered) is left as it is, with a warning. Returns how many were re-encrypted.
 */
export async function reencryptSecrets(vault: Vault, config: Config, log: Log, kind: string, rows: StoredSecret[]): Promise<number> {
  const unknown = rows.filter((r) => vault.keyOf(r.sealed) === "unknown").length;
  if (unknown > 0) throw new Error(undecryptable(vault, config, kind, unknown));
  let reencrypted = 0;
  for (const r of rows) {
    let plain: string;
    try {
      plain = await vault.decrypt(r.sealed, r.aad);
    } catch {
      log.warn(`Stored ${kind} cannot be decrypted for its row; left as is`, r.names);
      continue;
    }
    await r.replace(await vault.encrypt(plain, r.aad));
    reencrypted++;
  }
  if (reencrypted > 0) log.info(`Re-encrypted ${reencrypted} stored ${kind}${reencrypted === 1 ? "" : "s"} with the current key`);
  return reencrypted;
}

function undecryptable(vault: Vault, config: Config, kind: string, count: number): string {
  const what = `${count} stored ${kind}${count === 1 ? " was" : "s were"} encrypted with another key than ${vault.source}`;
  if (config.secret) {
    return (
      `${what}${config.previousSecret ? " or REGISTRY_SECRET_PREVIOUS" : ""}: set REGISTRY_SECRET to the key they were stored with, ` +
      "or, to rotate keys, set REGISTRY_SECRET to the new key and REGISTRY_SECRET_PREVIOUS to the old one"
    );
  }
  return `${what}: restore the original key file, or set REGISTRY_SECRET to the key they were stored with`;
}
