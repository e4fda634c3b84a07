// The meeting page (served at /meet/<meeting_id>): sign in, pre-join, then the meeting.
// The contract with the server is docs/protocol.md ("The meeting page", "Signaling").
//
// Modules: auth.js + widget-api.js (sign-in), prejoin.js (before joining), media.js (own
// devices), session.js (join, reconnect) with signaling.js and peers.js (+ sdp.js),
// ui.js (screen) with stage.js (videos), roster.js (people), levels.js (who speaks),
// captions.js (live captions), capture.js (recording and transcription notice),
// words.js (what the page says), icons.js (drawn icons).
//
// Test hook, read by tests/integration/browser.py (Playwright), not an API:
//   window.visio.state        "loading" | "prejoin" | "connecting" | "joined" |
//                             "reconnecting" | "left" | "ended"
//   window.visio.endReason    why the page stopped ("left", "meeting_ended", an error
//                             code, "no_auth", "signin_failed", "failed")
//   window.visio.publishPc    RTCPeerConnection sending our media (or null)
//   window.visio.receivePc    RTCPeerConnection receiving the others' media (or null)
//   window.visio.self         our participant ({participant_id, user_id, display_name, ...})
//   window.visio.participants the others, as protocol participants (array)
//   window.visio.remoteTracks [{participantId, source, kind, mid}] being received

import { WidgetAuth, chooseAuth } from "./auth.js";
import { CaptureNotice } from "./capture.js";
import { placeIcons } from "./icons.js";
import { SpeakingMonitor } from "./levels.js";
import { LocalMedia } from "./media.js";
import { Prejoin } from "./prejoin.js";
import { Session } from "./session.js";
import { Announcer, MeetingView, showNotice, showScreen } from "./ui.js";
import { ending } from "./words.js";

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
const meetingId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] ?? "");
// Read first, at once: Element's first widget API request may come any moment, and the
// token must leave the address bar before anything else runs.
const auth = chooseAuth();
const announcer = new Announcer($("announce-polite"), $("announce-alert"));
const capture = new CaptureNotice({
  badges: [$("prejoin-capture"), $("meeting-capture")],
  consequence: $("prejoin-capture-note"),
  announcer,
});
// While someone waits on the pre-join screen, recording may start: look again this often.
const INFO_EVERY_MS = 10000;
let session = null;
let levels = null;
let pageState = "loading";
let pageEndReason = null;

window.visio = {
  get state() { return session?.state && session.state !== "idle" ? session.state : pageState; },
  get handedOverTo() { return pageState === "handed_over" ? $("handover-frame").src : null; },
  get endReason() { return session?.endReason ?? pageEndReason; },
  get publishPc() { return session?.publish?.pc ?? null; },
  get receivePc() { return session?.receive?.pc ?? null; },
  get self() { return session?.self ?? null; },
  get participants() { return session ? [...session.participants.values()] : []; },
  get remoteTracks() {
    return (session?.remoteTracks ?? []).map(({ participantId, source, kind, mid }) => ({ participantId, source, kind, mid }));
  },
};

function applyTheme() {
  const theme = query.get("theme") ?? "";
  if (/dark/i.test(theme)) document.documentElement.classList.add("theme-dark");
  else if (/light/i.test(theme)) document.documentElement.classList.add("theme-light");
}

async function meetingInfo() {
  try {
    const response = await fetch(`/meet/${encodeURIComponent(meetingId)}/info`, { cache: "no-store" });
    if (response.status === 404) return { missing: true };
    if (!response.ok) return {};
    return await response.json();
  } catch {
    return {}; // the WebSocket will say more
  }
}

/**
 * Inside Element, for a person whose own agency's bridge also serves this meeting's
 * room: that bridge serves them, and its page takes over this one (framed here, so it
 * keeps the widget's camera and microphone). Their OpenID token goes to it in the
 * address fragment, which no server sees; this server only learns their server name.
 * Resolves true when handed over.
 */
async function handOver(widgetAuth) {
  widgetAuth.onWaiting = () => showNotice("Signing in", "Confirm in Element that the meeting may know who you are.");
  let credentials;
  try {
    credentials = await widgetAuth.credentials();
  } catch {
    return false; // the pre-join screen says what went wrong
  }
  let door = {};
  try {
    const response = await fetch(
      `/meet/${encodeURIComponent(meetingId)}/door?server=${encodeURIComponent(credentials.server)}`,
      { cache: "no-store" },
    );
    if (response.ok) door = await response.json();
  } catch {
    return false;
  }
  if (typeof door.url !== "string" || !/^https?:\/\//.test(door.url)) return false;
  const target = new URL(door.url);
  for (const key of ["theme", "displayName"]) {
    const value = query.get(key);
    if (value !== null) target.searchParams.set(key, value);
  }
  target.hash = new URLSearchParams({
    openid: credentials.token,
    server: credentials.server,
    expires: String(widgetAuth.expiresAt),
  }).toString();
  pageState = "handed_over";
  const frame = $("handover-frame");
  frame.src = target.toString();
  showScreen("handover");
  announcer.say("Opening the meeting on your agency's server.");
  return true;
}

function stop(reason, detail = "") {
  pageState = "ended";
  pageEndReason = reason;
  const { title, text } = ending(reason, detail);
  showNotice(title, text);
  announcer.alert(`${title}. ${text}`);
}

async function prejoinThenJoin(info) {
  session = null;
  pageState = "prejoin";
  const media = new LocalMedia();
  const prejoin = new Prejoin({
    media,
    auth,
    title: info.title || "",
    suggestedName:
      query.get("widget") === "1"
        ? query.get("displayName") ?? ""
        : auth?.suggestedName?.() ?? "",
  });
  showScreen("prejoin");
  document.title = `${info.title || "Meeting"} · Visio`;
  if (document.hasFocus()) $("display-name").focus();
  capture.fromInfo(info);
  let waiting = true; // an answer that comes after joining is older than `joined`
  const watching = setInterval(async () => {
    const fresh = await meetingInfo();
    if (waiting) capture.fromInfo(fresh);
  }, INFO_EVERY_MS);
  let displayName;
  try {
    ({ displayName } = await prejoin.run());
  } finally {
    waiting = false;
    clearInterval(watching);
  }
  const view = new MeetingView({ announcer, capture, onRejoin: () => rejoin(info) });
  session = new Session({ meetingId, auth, media, view, displayName });
  bindControls(session, view);
  levels?.stop();
  levels = new SpeakingMonitor(() => ({
    receive: session?.receive?.pc ?? null,
    publish: session?.publish?.pc ?? null,
    midOwners: session?.midOwners() ?? new Map(),
    localId: session?.self?.participant_id ?? null,
    localMicOn: session?.micOn() ?? false,
  }), (speaking) => view.setSpeaking(speaking));
  levels.start();
  session.start();
}

/** "Join again" after leaving: what runs on the meeting is asked afresh, not taken
 * from the first visit (the page knows the latest until then). */
async function rejoin(info) {
  const { recording, transcribing, ...rest } = info;
  const fresh = await meetingInfo();
  await prejoinThenJoin(fresh.missing ? rest : { ...rest, ...fresh });
}

function bindControls(current, view) {
  const on = (id, action) => {
    $(id).onclick = () => {
      if (session === current && current.state === "joined") action();
    };
  };
  on("control-mic", () => current.toggle("microphone"));
  on("control-camera", () => current.toggle("camera"));
  on("control-screen", () => current.toggleScreen());
  on("control-hand", () => current.toggleHand());
  $("control-leave").onclick = () => session === current && current.leave();
  const panel = $("people-panel");
  const peopleButton = $("control-people");
  const showPeople = (open) => {
    panel.hidden = !open;
    peopleButton.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) $("people-close").focus();
    else peopleButton.focus();
  };
  peopleButton.onclick = () => showPeople(panel.hidden);
  $("people-close").onclick = () => showPeople(false);
  view.setLocalMedia(current.media);
}

// Ctrl+D microphone, Ctrl+E camera (as in other meeting apps); Escape closes the panel.
document.addEventListener("keydown", (event) => {
  if (!session || session.state !== "joined") return;
  const key = event.key.toLowerCase();
  if ((event.ctrlKey || event.metaKey) && !event.altKey && (key === "d" || key === "e")) {
    event.preventDefault();
    session.toggle(key === "d" ? "microphone" : "camera");
  } else if (key === "escape" && !$("people-panel").hidden) {
    $("people-close").click();
  }
});

async function main() {
  applyTheme();
  placeIcons();
  if (!/^[A-Za-z0-9]{1,64}$/.test(meetingId)) {
    stop("meeting_not_found");
    return;
  }
  const info = await meetingInfo();
  if (info.missing) {
    stop("meeting_not_found");
    return;
  }
  if (info.state === "ended") {
    stop("meeting_ended");
    return;
  }
  if (!auth) {
    stop("no_auth");
    return;
  }
  if (auth instanceof WidgetAuth && (await handOver(auth))) return;
  await prejoinThenJoin(info);
}

main().catch((error) => {
  console.error(error);
  stop("failed", error.message);
});
