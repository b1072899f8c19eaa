// The widget's stylesheet, adopted by its shadow root (a constructed stylesheet: allowed by a host
// page's CSP that forbids inline <style>, and isolated from the host's CSS both ways).

export const WIDGET_CSS = `
:host { all: initial; }
* { box-sizing: border-box; }
.root {
  --accent: #2563eb; --accent-ink: #fff; --bg: #fff; --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb;
  --bubble: #f3f4f6; --radius: 14px;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "PingFang SC", "Noto Sans CJK SC", "Microsoft YaHei", sans-serif;
  color: var(--ink);
  position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;
}
button { font: inherit; cursor: pointer; }
.launcher {
  width: 56px; height: 56px; border-radius: 50%; border: none; background: var(--accent); color: var(--accent-ink);
  box-shadow: 0 6px 20px rgba(0,0,0,.2); display: grid; place-items: center; position: relative; margin-left: auto;
}
.launcher:focus-visible, .panel button:focus-visible, textarea:focus-visible { outline: 3px solid #93c5fd; outline-offset: 2px; }
.launcher svg { width: 28px; height: 28px; fill: currentColor; }
.badge {
  position: absolute; top: -4px; right: -4px; min-width: 20px; height: 20px; padding: 0 5px; border-radius: 10px;
  background: #dc2626; color: #fff; font-size: 12px; line-height: 20px; text-align: center;
}
.badge[hidden], [hidden] { display: none !important; }
.panel {
  position: absolute; right: 0; bottom: 72px; width: 370px; height: min(600px, calc(100vh - 110px));
  background: var(--bg); border-radius: var(--radius); box-shadow: 0 12px 40px rgba(0,0,0,.25);
  display: flex; flex-direction: column; overflow: hidden;
}
header { background: var(--accent); color: var(--accent-ink); padding: 12px 14px; display: flex; align-items: center; gap: 10px; }
header .titles { flex: 1; min-width: 0; }
header h2 { font-size: 15px; margin: 0; font-weight: 600; }
header .sub { font-size: 12px; opacity: .9; display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
.status { display: inline-flex; align-items: center; gap: 4px; }
.status::before { content: ""; width: 8px; height: 8px; border-radius: 50%; background: #fbbf24; }
.status[data-state="online"]::before { background: #34d399; }
.status[data-state="offline"]::before { background: #f87171; }
header button {
  background: rgba(255,255,255,.18); color: inherit; border: none; border-radius: 8px; padding: 5px 9px; font-size: 12px;
}
header button.icon { font-size: 18px; line-height: 1; padding: 3px 9px; }
.banner { padding: 8px 14px; font-size: 13px; background: #fef3c7; color: #92400e; border-bottom: 1px solid var(--line); }
.banner.agent { background: #dcfce7; color: #166534; }
.banner.closed { background: #f3f4f6; color: var(--muted); }
.banner.notice { background: #fee2e2; color: #991b1b; }
.log { flex: 1; overflow-y: auto; padding: 14px; display: flex; flex-direction: column; gap: 8px; overscroll-behavior: contain; }
.messages, .pending { display: flex; flex-direction: column; gap: 8px; }
.msg { max-width: 82%; padding: 8px 12px; border-radius: var(--radius); background: var(--bubble); white-space: pre-wrap;
  overflow-wrap: anywhere; align-self: flex-start; }
.msg .who { display: block; font-size: 11px; color: var(--muted); margin-bottom: 2px; }
.msg[data-sender-type="customer"] { align-self: flex-end; background: var(--accent); color: var(--accent-ink); }
.msg[data-sender-type="customer"] .who { color: rgba(255,255,255,.8); }
.msg[data-sender-type="system"] { align-self: center; background: transparent; color: var(--muted); font-size: 12px; text-align: center; }
.msg[data-sender-type="agent"] { background: #ecfdf5; }
.msg.pending-msg { opacity: .65; }
.msg.failed { background: #fee2e2; color: #991b1b; }
.msg.stream::after { content: "▍"; animation: blink 1s steps(2) infinite; }
@keyframes blink { 50% { opacity: 0; } }
.welcome { color: var(--muted); align-self: center; font-size: 13px; }
.typing { font-size: 12px; color: var(--muted); font-style: italic; }
.csat { border-top: 1px solid var(--line); padding: 10px 14px; font-size: 13px; }
.csat .scores { display: flex; gap: 6px; margin-top: 6px; }
.csat .scores button { flex: 1; border: 1px solid var(--line); background: #fff; border-radius: 8px; padding: 6px 0; }
.csat .scores button:hover { border-color: var(--accent); }
footer { border-top: 1px solid var(--line); padding: 10px; display: flex; gap: 8px; align-items: flex-end; }
textarea {
  flex: 1; resize: none; border: 1px solid var(--line); border-radius: 10px; padding: 8px 10px; font: inherit; color: inherit;
  max-height: 120px; min-height: 38px; background: #fff;
}
footer button { border: none; border-radius: 10px; background: var(--accent); color: var(--accent-ink); padding: 9px 14px; }
footer button:disabled { opacity: .5; cursor: default; }
@media (max-width: 480px) {
  .root { right: 12px; bottom: 12px; }
  .root.open { inset: 0; }
  .root.open .launcher { display: none; }
  .panel { position: fixed; inset: 0; width: 100vw; height: 100dvh; border-radius: 0; }
  textarea { font-size: 16px; } /* iOS zooms into smaller inputs */
}
`;
