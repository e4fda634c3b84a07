// Live captions: each finished speech segment the server transcribes (`caption`) is
// shown under the speaker's tile for a few seconds, or until their next one. The words
// come from speech recognition of someone's voice: untrusted, so shown as text only and
// cut to a readable length. Whether captions show is the person's choice, kept in
// localStorage.

import { CAPTIONS_LIMITED } from "./words.js";

const PREFERENCE_KEY = "visio.captions";
const MAX_CAPTION_CHARS = 200;
const MAX_STATUS_CHARS = 300;
// Long enough to read: a base, a little more per character, within bounds.
const SHOWN_MS = 4000;
const SHOWN_PER_CHAR_MS = 50;
const SHOWN_AT_MOST_MS = 10000;
const FADE_MS = 600; // as the `.live-caption.fading` transition in style.css

/** `text` on one line, at most `limit` characters (an ellipsis marks a cut). */
export function clip(text, limit) {
  const chars = Array.from(String(text ?? "").replace(/\s+/g, " ").trim());
  if (chars.length <= limit) return chars.join("");
  return `${chars.slice(0, limit - 1).join("").trimEnd()}…`;
}

function rememberedChoice() {
  try {
    return localStorage.getItem(PREFERENCE_KEY) !== "off";
  } catch {
    return true; // storage may be blocked in a third-party frame
  }
}

function rememberChoice(shown) {
  try {
    localStorage.setItem(PREFERENCE_KEY, shown ? "on" : "off");
  } catch {
    // not remembered: the choice holds for this page
  }
}

export class Captions {
  /**
   * @param {{stage: import("./stage.js").Stage, toggle: HTMLButtonElement,
   *   status: HTMLElement, announcer: import("./ui.js").Announcer}} options
   *   `toggle`: the button that shows or hides captions (`aria-pressed`);
   *   `status`: where a limit on captions is said.
   */
  constructor({ stage, toggle, status, announcer }) {
    this.stage = stage;
    this.toggle = toggle;
    this.status = status;
    this.announcer = announcer;
    this.shown = rememberedChoice();
    this.timers = new Map(); // participant id -> timer of their caption line
    this.toggle.onclick = () => this.setShown(!this.shown);
    this.renderToggle();
  }

  /** Shows the control once captions may come (transcription on, or a caption came).
   * It stays after, so a focused control never vanishes from under the keyboard. */
  offer() {
    this.toggle.hidden = false;
  }

  setShown(shown) {
    this.shown = shown;
    rememberChoice(shown);
    this.renderToggle();
    if (!shown) this.clear();
  }

  renderToggle() {
    this.toggle.setAttribute("aria-pressed", this.shown ? "true" : "false");
    this.toggle.title = this.shown ? "Hide captions" : "Show captions";
  }

  /** A `caption`: `text` under `participantId`'s tile, replacing their last one. */
  show(participantId, text) {
    this.offer();
    if (!this.shown) return;
    const words = clip(text, MAX_CAPTION_CHARS);
    const line = this.stage.captionLine(participantId);
    if (!words || !line) return;
    clearTimeout(this.timers.get(participantId));
    line.textContent = words;
    line.classList.remove("fading");
    line.hidden = false;
    const shownMs = Math.min(SHOWN_AT_MOST_MS, SHOWN_MS + SHOWN_PER_CHAR_MS * words.length);
    this.timers.set(participantId, setTimeout(() => {
      line.classList.add("fading");
      this.timers.set(participantId, setTimeout(() => this.hideLine(participantId, line), FADE_MS));
    }, shownMs));
  }

  hideLine(participantId, line) {
    clearTimeout(this.timers.get(participantId));
    this.timers.delete(participantId);
    line.hidden = true;
    line.textContent = "";
    line.classList.remove("fading");
  }

  /** Takes every caption off the tiles. */
  clear() {
    for (const participantId of [...this.timers.keys()]) {
      const line = this.stage.captionLine(participantId);
      if (line) {
        this.hideLine(participantId, line);
      } else {
        clearTimeout(this.timers.get(participantId));
        this.timers.delete(participantId);
      }
    }
  }

  /** `captions_status`: when not everyone can be captioned, say so, discreetly. */
  setStatus(limited, message) {
    const before = this.status.hidden ? "" : this.status.textContent;
    const words = limited ? clip(message, MAX_STATUS_CHARS) || CAPTIONS_LIMITED : "";
    this.status.textContent = words;
    this.status.hidden = !words;
    if (words && words !== before) this.announcer.say(words);
    if (!limited && before) {
      const back = clip(message, MAX_STATUS_CHARS);
      if (back) this.announcer.say(back);
    }
  }

  /** The connection dropped: no caption or limit outlives it (`joined` tells again). */
  reset() {
    this.clear();
    this.status.textContent = "";
    this.status.hidden = true;
  }
}
