/** AGENT_REREAD_HOOK: tells agents the catalogue changed, in the background, never failing the change. */
import { type Ctx, inBackground } from "../../shared/context.ts";

const TIMEOUT_MS = 5000;
const RETRY_DELAYS_MS = [500, 1500];

/** Calls the reread hook (GET) after a catalogue change: 5 s timeout, retried twice, failures logged. */
export function notifyCatalogueChanged(ctx: Ctx): void {
  const url = ctx.config.rereadHook;
  if (!url) return;
  inBackground(ctx, `Reread hook ${url}`, async () => {
    let last = "";
    for (let attempt = 0; attempt <= RETRY_DELAYS_MS.length; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, RETRY_DELAYS_MS[attempt - 1]));
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
        await res.body?.cancel();
        if (res.ok) return;
        last = `status ${res.status}`;
      } catch (err) {
        last = (err as Error).name === "TimeoutError" ? `no answer within ${TIMEOUT_MS / 1000} s` : String((err as Error).message);
      }
    }
    throw new Error(`${RETRY_DELAYS_MS.length + 1} attempts, last: ${last}`);
  });
}
