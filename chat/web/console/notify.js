// Telling the agent a conversation was assigned: a short beep (WebAudio, no sound file) and a
// desktop notification when the agent allowed them.

let audio = null;

/** Create or wake the audio context; browsers allow it only after a user gesture. */
export function unlockAudio() {
  try {
    audio = audio || new AudioContext();
    if (audio.state === "suspended") audio.resume();
  } catch {
    audio = null;  // no WebAudio: stay silent
  }
}

/** Two short tones. */
export function beep() {
  if (!audio || audio.state !== "running") return;
  const now = audio.currentTime;
  for (const [i, freq] of [880, 1320].entries()) {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = "sine";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, now + i * 0.18);
    gain.gain.exponentialRampToValueAtTime(0.2, now + i * 0.18 + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.18 + 0.16);
    osc.connect(gain).connect(audio.destination);
    osc.start(now + i * 0.18);
    osc.stop(now + i * 0.18 + 0.17);
  }
}

/** Whether asking for permission makes sense (not decided yet). */
export function canAsk() {
  return "Notification" in window && Notification.permission === "default";
}

/** Ask for permission (call from a click). */
export async function askPermission() {
  if (canAsk()) await Notification.requestPermission().catch(() => "denied");
}

/** A desktop notification, when allowed; clicking it focuses the console and runs onClick. */
export function desktop(title, body, onClick) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  try {
    const note = new Notification(title, {body, tag: "chat-console-assigned"});
    note.onclick = () => { window.focus(); onClick(); note.close(); };
  } catch {
    // some browsers allow notifications only from a service worker: the beep is enough
  }
}
