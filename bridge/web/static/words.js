// What the page says when it cannot (or may no longer) be in the meeting.

export const HOW_TO_GET_A_LINK =
  "To join, open the meeting from its room in Element, or ask for your personal link: " +
  "type !visio link in the meeting's room and the bridge sends it to you privately.";

/**
 * End states: `{title, text, rejoin}` for each reason the page stops for good.
 * Keys are the signaling error codes that end a session, plus the page's own reasons.
 */
const ENDINGS = {
  left: { title: "You left the meeting", text: "", rejoin: true },
  meeting_ended: { title: "The meeting has ended", text: "The host ended this meeting.", rejoin: false },
  replaced: {
    title: "You joined from somewhere else",
    text: "You are in this meeting in another tab or on another device, so this page stopped.",
    rejoin: true,
  },
  unauthorized: {
    title: "You are not allowed in",
    text: "The meeting server did not accept your sign-in: your link is not valid, or you are " +
      "not a member of the meeting's room. " + HOW_TO_GET_A_LINK,
    rejoin: false,
  },
  link_expired: {
    title: "Your link has expired",
    text: "Ask for a new one: type !visio link in the meeting's room.",
    rejoin: false,
  },
  server_not_allowed: {
    title: "Your homeserver is not allowed in",
    text: "This bridge does not accept users of your Matrix server. Ask the meeting's " +
      "organiser to add your server to the bridge's allowed servers.",
    rejoin: false,
  },
  meeting_not_found: {
    title: "Meeting not found",
    text: "This meeting does not exist. Check the link.",
    rejoin: false,
  },
  version: {
    title: "This page is out of date",
    text: "The meeting server speaks a newer protocol. Reload the page.",
    rejoin: false,
  },
  no_auth: { title: "Sign-in needed", text: HOW_TO_GET_A_LINK, rejoin: false },
  signin_failed: { title: "Sign-in failed", text: "", rejoin: false },
  failed: { title: "Something went wrong", text: "", rejoin: false },
};

/** Shown while the page joins again after `unavailable` (the sign-in could not be checked). */
export const WAITING_FOR_HOMESERVER = "Waiting for your homeserver to confirm who you are…";

/** Signaling error codes after which the page must not reconnect. */
export const FINAL_ERRORS = new Set([
  "meeting_ended", "replaced", "unauthorized", "link_expired", "server_not_allowed",
  "meeting_not_found", "version",
]);

export function ending(reason, detail) {
  const base = ENDINGS[reason] ?? ENDINGS.failed;
  const text = [base.text, detail && !base.text.includes(detail) ? detail : ""]
    .filter(Boolean)
    .join(" ");
  return { ...base, text };
}

// Recording and transcription: nobody may be recorded without being told (in France it
// is an offence), so the page says it in words, never by colour alone.

/** The badge's words, one per thing that runs: `[{kind, words}]` (empty when neither). */
export function captureBadges({ recording, transcribing }) {
  const badges = [];
  if (recording) badges.push({ kind: "recording", words: "Recording" });
  if (transcribing) badges.push({ kind: "transcribing", words: "Transcribing" });
  return badges;
}

/** One sentence for what runs now, or "" when neither. */
export function captureSentence({ recording, transcribing }) {
  if (recording && transcribing) return "This meeting is being recorded and transcribed.";
  if (recording) return "This meeting is being recorded.";
  if (transcribing) return "This meeting is being transcribed.";
  return "";
}

/** Before joining: what joining means for the person. */
export function captureConsequence({ recording, transcribing }) {
  if (recording) return "If you join, what you say and show will be recorded.";
  if (transcribing) return "If you join, what you say will be written down.";
  return "";
}

/** What changed, in words: `{started, stopped}` sentences ("" when nothing did). */
export function captureChange(before, after) {
  const started = [];
  const stopped = [];
  if (after.recording && !before.recording) started.push("recorded");
  if (after.transcribing && !before.transcribing) started.push("transcribed");
  if (before.recording && !after.recording) stopped.push("Recording stopped.");
  if (before.transcribing && !after.transcribing) stopped.push("Transcription stopped.");
  return {
    started: started.length ? `This meeting is now being ${started.join(" and ")}.` : "",
    stopped: stopped.join(" "),
  };
}

/** Said when the server limits captions without saying why. */
export const CAPTIONS_LIMITED = "Captions cannot be made for everyone right now.";
