// What the meeting screen shows: connection status, the stage, the list of people, the
// controls' state, and announcements for screen readers.

import { Captions } from "./captions.js";
import { Roster } from "./roster.js";
import { Stage } from "./stage.js";
import { ending } from "./words.js";

const $ = (id) => document.getElementById(id);

/** Tells screen readers (a polite live region; errors go to an assertive one). */
export class Announcer {
  constructor(polite, assertive) {
    this.polite = polite;
    this.assertive = assertive;
    this.pending = new Map(); // region -> words waiting to be set there
  }

  say(text, region = this.polite) {
    if (!text) return;
    // Words said together (a join, and what runs on the meeting) are read together,
    // rather than the last replacing the others before anyone heard them.
    const waiting = this.pending.get(region);
    if (waiting) {
      waiting.push(text);
      return;
    }
    const words = [text];
    this.pending.set(region, words);
    // Emptying first makes the same words be read again.
    region.textContent = "";
    setTimeout(() => {
      this.pending.delete(region);
      region.textContent = words.join(" ");
    }, 50);
  }

  alert(text) {
    this.say(text, this.assertive);
  }
}

/** Shows one of the page's screens: "notice", "prejoin" or "meeting". */
export function showScreen(name) {
  for (const screen of ["notice", "prejoin", "meeting", "handover"]) {
    $(`${screen}-screen`).hidden = screen !== name;
  }
}

/** The notice screen: a title, words and maybe a "Join again" button. */
export function showNotice(title, text, onRejoin = null) {
  $("notice-title").textContent = title;
  $("notice-text").textContent = text;
  const rejoin = $("notice-rejoin");
  rejoin.hidden = !onRejoin;
  rejoin.onclick = onRejoin;
  showScreen("notice");
  document.title = `${title} · Visio`;
  // Never pull focus into the widget frame while the user works elsewhere in Element.
  if (document.hasFocus()) $("notice-title").focus();
}

function name(participant) {
  return participant.display_name || participant.user_id || "Someone";
}

function setPressed(button, pressed) {
  button.setAttribute("aria-pressed", pressed ? "true" : "false");
}

export class MeetingView {
  /** `capture`: the page's CaptureNotice (capture.js), shared with the pre-join screen. */
  constructor({ announcer, capture, onRejoin }) {
    this.announcer = announcer;
    this.capture = capture;
    this.onRejoin = onRejoin;
    this.stage = new Stage({
      stage: $("stage"),
      grid: $("grid"),
      presentation: $("presentation"),
      onSoundBlocked: () => { $("sound-blocked").hidden = false; },
    });
    this.roster = new Roster({ list: $("people-list"), count: $("people-count") });
    this.captions = new Captions({
      stage: this.stage,
      toggle: $("control-captions"),
      status: $("captions-status"),
      announcer,
    });
    this.self = null;
    this.others = new Map();
    this.media = null;
    this.remoteTracks = [];
    $("sound-enable").onclick = () => {
      this.stage.resumeSound();
      $("sound-blocked").hidden = true;
    };
  }

  announce(text) {
    this.announcer.say(text);
  }

  alert(text) {
    this.announcer.alert(text);
  }

  /** `waiting`: while reconnecting, what the page waits for (words), if not the network. */
  setConnection(state, waiting = null) {
    const status = $("connection-status");
    const words = state === "reconnecting" && waiting
      ? waiting
      : { connecting: "Connecting…", reconnecting: "Reconnecting…" }[state];
    const before = document.body.dataset.state;
    const wordsBefore = status.textContent;
    status.hidden = !words;
    status.textContent = words ?? "";
    document.body.dataset.state = state;
    // Said once per change, not on every retry.
    if (state === "reconnecting" && (before !== state || wordsBefore !== words)) {
      this.announcer.alert(waiting ?? "Connection lost. Reconnecting…");
    }
    if (state === "connecting" || state === "reconnecting") showScreen("meeting");
  }

  joined(self, others, meeting, reconnected) {
    this.self = self;
    this.others = new Map(others.map((p) => [p.participant_id, p]));
    const title = meeting?.title || "Meeting";
    $("meeting-title").textContent = title;
    document.title = `${title} · Visio`;
    this.setHand(self.hand_raised);
    this.stage.upsert(self, true);
    for (const participant of others) this.stage.upsert(participant);
    this.renderRoster();
    const hadFocus = document.activeElement && document.activeElement !== document.body;
    showScreen("meeting");
    // The Join button just vanished: keep keyboard users in the page, at the controls.
    if (!reconnected && document.hasFocus() && !hadFocus) $("control-mic").focus();
    const count = others.length;
    const company = count === 0 ? "You are the only one here." : `${count} other${count > 1 ? "s" : ""} here.`;
    this.announce(`${reconnected ? "Reconnected" : "You joined the meeting"}. ${company}`);
    this.capture.joined(meeting, reconnected);
    if (this.capture.transcribing) this.captions.offer();
  }

  /** `capture_changed`: recording or transcription started or stopped. */
  setCapture(message) {
    this.capture.changed(message);
    if (this.capture.transcribing) this.captions.offer();
  }

  caption(participantId, text) {
    this.captions.show(participantId, text);
  }

  setCaptionsStatus(limited, message) {
    this.captions.setStatus(limited, message);
  }

  renderRoster() {
    this.roster.render(this.self, [...this.others.values()]);
  }

  updateSelf(self) {
    this.self = self;
    this.setHand(self.hand_raised);
    this.stage.upsert(self, true);
    this.renderRoster();
  }

  participantJoined(participant) {
    this.others.set(participant.participant_id, participant);
    this.stage.upsert(participant);
    // Tracks that came before the news of the person get their tile now.
    this.stage.setRemote(this.remoteTracks);
    this.renderRoster();
    this.announce(`${name(participant)} joined.`);
  }

  participantUpdated(participant, before) {
    this.others.set(participant.participant_id, participant);
    this.stage.upsert(participant);
    this.renderRoster();
    if (participant.hand_raised && !before?.hand_raised) this.announce(`${name(participant)} raised their hand.`);
    if (!participant.hand_raised && before?.hand_raised) this.announce(`${name(participant)} lowered their hand.`);
  }

  participantLeft(participant) {
    this.others.delete(participant.participant_id);
    this.stage.remove(participant.participant_id);
    this.renderRoster();
    this.announce(`${name(participant)} left.`);
  }

  trackAnnounced({ participant_id: participantId, source }, added) {
    const participant = this.others.get(participantId);
    if (participant && source === "screen") {
      this.announce(added ? `${name(participant)} is sharing their screen.` : `${name(participant)} stopped sharing their screen.`);
    }
  }

  setRemoteTracks(tracks) {
    this.remoteTracks = tracks;
    this.stage.setRemote(tracks);
  }

  /** Our own preview and the controls' pressed states. */
  setLocalMedia(media) {
    this.media = media;
    const micOn = Boolean(media.tracks.microphone) && media.wanted.microphone;
    const cameraOn = Boolean(media.tracks.camera) && media.wanted.camera;
    setPressed($("control-mic"), micOn);
    setPressed($("control-camera"), cameraOn);
    setPressed($("control-screen"), Boolean(media.screen));
    $("control-screen").querySelector(".label").textContent = media.screen ? "Stop sharing" : "Share screen";
    this.stage.setLocal(cameraOn ? media.tracks.camera : null, media.screen);
  }

  setHand(raised) {
    setPressed($("control-hand"), raised);
    $("control-hand").querySelector(".label").textContent = raised ? "Lower hand" : "Raise hand";
  }

  setActiveSpeaker(participantId) {
    this.stage.setActiveSpeaker(participantId);
  }

  setSpeaking(speaking) {
    this.stage.setSpeaking(speaking);
  }

  clearMeeting() {
    this.captions.reset();
    this.remoteTracks = [];
    this.stage.clear();
    this.others = new Map();
  }

  ended(reason, detail) {
    const { title, text, rejoin } = ending(reason, detail);
    showNotice(title, text, rejoin ? this.onRejoin : null);
    this.announcer.alert(`${title}. ${text}`);
  }
}
