/**
 * The console's style sheet and its one script, served from /console/static/ (the Content-Security-Policy
 * allows no inline style or script). The script only adds a progress indication: every page works without it.
 */

export const CSS = `
:root { --ink: #1d2330; --muted: #5b6475; --line: #d9dee7; --bg: #f6f7f9; --ok: #1f7a3f; --bad: #b3261e; --accent: #2753c7; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: var(--bg); }
header { display: flex; align-items: center; gap: 1.25rem; padding: .6rem 1.25rem; background: #fff; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
header strong { font-size: 1.05rem; }
nav { display: flex; gap: .9rem; flex-wrap: wrap; flex: 1; }
nav a { color: var(--muted); text-decoration: none; padding: .15rem 0; }
nav a[aria-current="page"] { color: var(--ink); border-bottom: 2px solid var(--accent); }
main { max-width: 1180px; margin: 1.25rem auto; padding: 0 1.25rem; }
h1 { font-size: 1.35rem; margin: 0 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .6rem; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.matrix { width: auto; min-width: 24rem; }
.matrix th.tool, .matrix td { text-align: center; min-width: 3rem; }
.matrix th.tool { writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap; font-weight: 500; }
form.inline { display: inline; }
fieldset { border: 1px solid var(--line); background: #fff; padding: .8rem 1rem; margin: 0 0 1rem; }
legend { font-weight: 600; padding: 0 .3rem; }
label { display: block; margin: .35rem 0; }
label > span { display: inline-block; min-width: 11rem; color: var(--muted); }
input[type="text"], input[type="password"], input[type="url"], input[type="search"], input[type="datetime-local"], select, textarea { font: inherit; padding: .3rem .45rem; border: 1px solid var(--line); border-radius: 4px; min-width: 18rem; }
textarea { width: 100%; min-height: 6rem; }
button { font: inherit; padding: .3rem .8rem; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: 4px; cursor: pointer; }
button.quiet { background: #fff; color: var(--accent); }
button.danger { background: var(--bad); border-color: var(--bad); }
button[disabled] { opacity: .6; cursor: progress; }
button.busy::after { content: ""; display: inline-block; width: .8em; height: .8em; margin-left: .45em; border: 2px solid currentColor; border-right-color: transparent; border-radius: 50%; animation: spin .8s linear infinite; vertical-align: -.1em; }
@keyframes spin { to { transform: rotate(360deg); } }
.flash { padding: .6rem .9rem; border-radius: 4px; margin: 0 0 1rem; background: #e8f3ec; border: 1px solid #b9dcc6; }
.flash.error { background: #fbeaea; border-color: #efbdbb; }
.status-ok { color: var(--ok); font-weight: 600; }
.status-unreachable { color: var(--bad); font-weight: 600; }
.muted { color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(10rem, 1fr)); gap: .8rem; margin-bottom: 1.2rem; }
.card { background: #fff; border: 1px solid var(--line); padding: .7rem .9rem; border-radius: 4px; }
.card b { display: block; font-size: 1.6rem; }
.card a { color: inherit; text-decoration: none; }
pre { background: #fff; border: 1px solid var(--line); padding: .6rem; overflow: auto; max-height: 22rem; font-size: 13px; margin: .3rem 0; }
.diff { display: grid; grid-template-columns: 1fr 1fr; gap: .8rem; }
.diff pre { max-height: 30rem; white-space: pre-wrap; word-break: break-word; }
.flags { color: var(--bad); font-weight: 600; }
.login { max-width: 28rem; margin: 4rem auto; }
.chart { background: #fff; border: 1px solid var(--line); padding: .5rem; }
.chart .calls { fill: #9db4ec; }
.chart .errors { fill: var(--bad); }
.chart text { font-size: 11px; fill: var(--muted); }
.pager { margin: .8rem 0; display: flex; gap: 1rem; }
`;

/** Progress while a form runs (a discovery can take seconds): its button is disabled and shows what is happening. */
export const JS = `
document.addEventListener("submit", (event) => {
  const form = event.target;
  const button = event.submitter || form.querySelector("button");
  if (!button || !form.dataset.busy) return;
  setTimeout(() => {
    button.disabled = true;
    button.classList.add("busy");
    button.textContent = form.dataset.busy;
  });
});
`;

/** The tab's icon (without one, browsers ask for /favicon.ico, which is not the console's). */
export const ICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#2753c7"/><path d="M4 11V5l4 3 4-3v6" stroke="#fff" stroke-width="1.6" fill="none"/></svg>`;
