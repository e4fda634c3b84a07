// Tells everyone when the meeting is recorded or transcribed: a badge (icon and words) on
// the pre-join and meeting screens, and announcements for screen readers. The state
// comes from `/meet/<id>/info` before joining, then from `joined` and `capture_changed`.

import { icon } from "./icons.js";
import { captureBadges, captureChange, captureConsequence, captureSentence } from "./words.js";

const ICONS = { recording: "record", transcribing: "transcript" };

/** `{recording, transcribing}` from a message or `/info`, or null when it says neither. */
export function captureOf(source) {
  if (typeof source?.recording !== "boolean" && typeof source?.transcribing !== "boolean") {
    return null;
  }
  return { recording: source.recording === true, transcribing: source.transcribing === true };
}

function badgeItem({ kind, words }) {
  const item = document.createElement("span");
  item.className = `capture-item capture-${kind}`;
  const label = document.createElement("span");
  label.textContent = words;
  item.append(icon(ICONS[kind]), label);
  return item;
}

export class CaptureNotice {
  /**
   * @param {{badges: HTMLElement[], consequence: HTMLElement,
   *   announcer: import("./ui.js").Announcer}} options
   *   `badges`: every place that shows the badge (pre-join and meeting screens);
   *   `consequence`: the pre-join sentence that says what joining means (the Join
   *   button is described by it).
   */
  constructor({ badges, consequence, announcer }) {
    this.badges = badges;
    this.consequence = consequence;
    this.announcer = announcer;
    this.state = null; // unknown until /info or the meeting says
  }

  get recording() {
    return this.state?.recording ?? false;
  }

  get transcribing() {
    return this.state?.transcribing ?? false;
  }

  /** What `/info` said, on the pre-join screen: said when first known, then changes. */
  fromInfo(info) {
    const next = captureOf(info);
    if (next) this.update(next, this.state === null);
  }

  /** What `joined` said: a first join tells what runs; a reconnect only what changed. */
  joined(meeting, reconnected) {
    const next = captureOf(meeting) ?? { recording: false, transcribing: false };
    this.update(next, !reconnected);
  }

  /** `capture_changed`. */
  changed(message) {
    const next = captureOf(message);
    if (next) this.update(next, false);
  }

  update(next, tellAll) {
    const before = this.state ?? { recording: false, transcribing: false };
    this.state = next;
    this.render();
    if (tellAll) {
      const sentence = captureSentence(next);
      if (sentence) this.announcer.say(sentence);
      return;
    }
    const { started, stopped } = captureChange(before, next);
    // Being recorded from now on is urgent news; the rest can wait its turn.
    if (started && next.recording && !before.recording) this.announcer.alert(started);
    else if (started) this.announcer.say(started);
    if (stopped) this.announcer.say(stopped);
  }

  render() {
    const state = this.state ?? { recording: false, transcribing: false };
    const badges = captureBadges(state);
    for (const holder of this.badges) {
      holder.replaceChildren(...badges.map(badgeItem));
      holder.title = captureSentence(state);
      holder.hidden = badges.length === 0;
    }
    this.consequence.textContent = captureConsequence(state);
    this.consequence.hidden = !this.consequence.textContent;
  }
}
