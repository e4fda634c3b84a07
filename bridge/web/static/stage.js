// The videos: one tile per participant (camera, with their microphone's audio and their
// live caption), and a large tile per screen share. Tiles carry `data-participant-id`,
// `data-source` and, for our own, `data-local="true"`.

import { icon } from "./icons.js";

function initials(name) {
  const words = String(name || "?").replace(/^@/, "").split(/[\s._:-]+/).filter(Boolean);
  return words.slice(0, 2).map((w) => w[0].toUpperCase()).join("") || "?";
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function badge(className, iconName, words) {
  const node = element("span", `${className} badge-icon`);
  node.hidden = true;
  node.append(icon(iconName), element("span", "visually-hidden", words));
  return node;
}

// A screen tile shows the screen only: not the person's camera, hand or microphone state.
function shownOn(participant, source) {
  if (source !== "screen") return participant;
  return { ...participant, video_muted: false, hand_raised: false, audio_muted: false };
}

class Tile {
  /** `mediaToken()`: the token from `joined` that lets this page fetch avatars. */
  constructor(participantId, source, local, mediaToken) {
    this.mediaToken = mediaToken;
    this.node = element("figure", "tile no-video");
    this.node.dataset.participantId = participantId;
    this.node.dataset.source = source;
    if (local) this.node.dataset.local = "true";
    this.video = element("video");
    this.video.autoplay = true;
    this.video.playsInline = true;
    this.video.muted = true; // sound plays through the participant's <audio>
    this.avatar = element("div", "avatar");
    this.avatar.setAttribute("aria-hidden", "true");
    this.name = element("span", "name");
    this.hand = badge("hand", "hand", "hand raised");
    this.micOff = badge("mic-off", "mic-off", "microphone off");
    // Element Call encrypts end to end with keys this page does not have: say so
    // instead of playing what cannot be decoded (a black tile, noise).
    this.encryptedNote = element(
      "span",
      "encrypted-note",
      "End-to-end encrypted in Element Call: cannot be played here",
    );
    this.encryptedNote.hidden = true;
    // What they just said, when captions run (captions.js fills it, as text only).
    this.captionLine = element("p", "live-caption");
    this.captionLine.hidden = true;
    const caption = element("figcaption");
    caption.append(this.name, this.hand, this.micOff, this.encryptedNote);
    this.node.append(this.video, this.avatar, this.captionLine, caption);
    this.videoTrack = null;
    this.audio = null;
    this.videoOff = false;
    this.encrypted = false;
    this.onTrackMute = () => this.refreshVideo();
  }

  describe(participant, label) {
    this.name.textContent = label;
    this.showAvatar(participant);
    this.hand.hidden = !participant.hand_raised;
    this.micOff.hidden = !participant.audio_muted;
    this.videoOff = Boolean(participant.video_muted);
    this.encrypted = Boolean(participant.encrypted);
    this.encryptedNote.hidden = !this.encrypted;
    this.node.classList.toggle("encrypted", this.encrypted);
    if (this.audio) this.audio.muted = this.encrypted;
    this.refreshVideo();
  }

  /** The Matrix avatar (through the bridge, /avatar/<server>/<media id>?token=<media
   * token>), else initials. */
  showAvatar(participant) {
    const letters = initials(participant.display_name || participant.user_id);
    const match = /^mxc:\/\/([^/]+)\/([A-Za-z0-9_-]+)$/.exec(participant.avatar_url || "");
    if (!match) {
      this.avatar.textContent = letters;
      return;
    }
    const path = `/avatar/${encodeURIComponent(match[1])}/${encodeURIComponent(match[2])}`;
    const src = `${path}?token=${encodeURIComponent(this.mediaToken() ?? "")}`;
    if (this.avatar.firstElementChild?.getAttribute("src") === src) return;
    const img = document.createElement("img");
    img.alt = "";
    img.src = src;
    img.addEventListener("error", () => {
      this.avatar.textContent = letters;
    });
    this.avatar.replaceChildren(img);
  }

  setVideo(track) {
    if (track === this.videoTrack) return;
    this.videoTrack?.removeEventListener("mute", this.onTrackMute);
    this.videoTrack?.removeEventListener("unmute", this.onTrackMute);
    this.videoTrack = track;
    this.video.srcObject = track ? new MediaStream([track]) : null;
    if (track) {
      track.addEventListener("mute", this.onTrackMute);
      track.addEventListener("unmute", this.onTrackMute);
      this.video.play().catch(() => {});
    }
    this.refreshVideo();
  }

  refreshVideo() {
    const showing =
      Boolean(this.videoTrack) && !this.videoOff && !this.encrypted && this.videoTrack.readyState === "live";
    this.node.classList.toggle("no-video", !showing);
  }

  /** Plays a microphone track; `onBlocked` is told when the browser blocks autoplay. */
  setAudio(track, onBlocked) {
    if (this.audio?.srcObject?.getTracks()[0] === track) return;
    this.audio?.remove();
    this.audio = null;
    if (!track) return;
    this.audio = element("audio");
    this.audio.autoplay = true;
    this.audio.muted = this.encrypted;
    this.audio.srcObject = new MediaStream([track]);
    this.node.append(this.audio);
    this.audio.play().catch((error) => {
      if (error?.name === "NotAllowedError") onBlocked();
    });
  }

  remove() {
    this.setVideo(null);
    this.setAudio(null);
    this.node.remove();
  }
}

export class Stage {
  constructor({ stage, grid, presentation, onSoundBlocked }) {
    this.stageNode = stage;
    this.grid = grid;
    this.presentation = presentation;
    this.onSoundBlocked = onSoundBlocked;
    this.tiles = new Map(); // `${participantId}/${source}` -> Tile
    this.people = new Map(); // participantId -> participant
    this.localId = null;
    this.mediaToken = null; // from our own participant (`joined`): avatars need it
  }

  key(participantId, source) {
    return `${participantId}/${source}`;
  }

  label(participant, source) {
    const name = participant.display_name || participant.user_id || "Someone";
    const you = participant.participant_id === this.localId;
    if (source === "screen") return you ? "Your screen" : `${name}'s screen`;
    return you ? `${name} (you)` : name;
  }

  /** Where a participant's live caption goes: under their camera tile (null without one). */
  captionLine(participantId) {
    return this.tiles.get(this.key(participantId, "camera"))?.captionLine ?? null;
  }

  /** Shows (or updates) a participant's camera tile. */
  upsert(participant, local = false) {
    if (local) {
      this.localId = participant.participant_id;
      this.mediaToken = participant.media_token ?? null;
    }
    this.people.set(participant.participant_id, participant);
    for (const source of ["camera", "screen"]) {
      const tile = this.tiles.get(this.key(participant.participant_id, source));
      tile?.describe(shownOn(participant, source), this.label(participant, source));
    }
    if (!this.tiles.has(this.key(participant.participant_id, "camera"))) {
      this.tile(participant.participant_id, "camera");
    }
  }

  tile(participantId, source) {
    const key = this.key(participantId, source);
    let tile = this.tiles.get(key);
    if (tile) return tile;
    const participant = this.people.get(participantId) ?? { participant_id: participantId };
    tile = new Tile(participantId, source, participantId === this.localId, () => this.mediaToken);
    tile.describe(shownOn(participant, source), this.label(participant, source));
    this.tiles.set(key, tile);
    if (source === "screen") this.presentation.append(tile.node);
    else if (participantId === this.localId) this.grid.prepend(tile.node);
    else this.grid.append(tile.node);
    this.layout();
    return tile;
  }

  dropTile(participantId, source) {
    const key = this.key(participantId, source);
    this.tiles.get(key)?.remove();
    this.tiles.delete(key);
    this.layout();
  }

  remove(participantId) {
    for (const source of ["camera", "screen"]) this.dropTile(participantId, source);
    this.people.delete(participantId);
  }

  /** Our own camera and screen, shown from the local tracks. */
  setLocal(cameraTrack, screenTrack) {
    if (!this.localId) return;
    this.tile(this.localId, "camera").setVideo(cameraTrack);
    if (screenTrack) this.tile(this.localId, "screen").setVideo(screenTrack);
    else this.dropTile(this.localId, "screen");
  }

  /** Everything the receive connection carries now: `[{participantId, source, kind, track}]`. */
  setRemote(tracks) {
    const wanted = new Map(tracks.map((t) => [`${t.participantId}/${t.source}`, t]));
    for (const [key, tile] of this.tiles) {
      const [participantId, source] = key.split("/");
      if (participantId === this.localId) continue;
      if (source === "screen" && !wanted.has(key)) {
        this.dropTile(participantId, source);
        continue;
      }
      if (source === "camera") {
        tile.setVideo(wanted.get(key)?.track ?? null);
        tile.setAudio(wanted.get(`${participantId}/microphone`)?.track ?? null, this.onSoundBlocked);
      }
    }
    for (const t of tracks) {
      if (t.participantId === this.localId || !this.people.has(t.participantId)) continue;
      if (t.source === "screen") this.tile(t.participantId, "screen").setVideo(t.track);
      if (t.source === "camera") this.tile(t.participantId, "camera").setVideo(t.track);
      if (t.source === "microphone") {
        this.tile(t.participantId, "camera").setAudio(t.track, this.onSoundBlocked);
      }
    }
  }

  /** Retries audio the browser blocked (called from a click). */
  resumeSound() {
    for (const tile of this.tiles.values()) tile.audio?.play().catch(() => {});
  }

  setActiveSpeaker(participantId) {
    for (const [key, tile] of this.tiles) {
      const [id, source] = key.split("/");
      tile.node.classList.toggle("active-speaker", source === "camera" && id === participantId);
    }
  }

  /** `speaking`: the set of participant ids heard right now. */
  setSpeaking(speaking) {
    for (const [key, tile] of this.tiles) {
      const [id, source] = key.split("/");
      tile.node.classList.toggle("speaking", source === "camera" && speaking.has(id));
    }
  }

  layout() {
    const presenting = this.presentation.childElementCount > 0;
    this.presentation.hidden = !presenting;
    this.stageNode.classList.toggle("presenting", presenting);
    const count = this.grid.childElementCount;
    this.grid.dataset.count = String(count);
  }

  clear() {
    for (const tile of this.tiles.values()) tile.remove();
    this.tiles.clear();
    this.people.clear();
    this.localId = null;
    this.mediaToken = null;
    this.layout();
  }
}
