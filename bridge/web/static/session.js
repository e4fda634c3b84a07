// Being in the meeting: join over signaling, run the two peer connections, follow the
// others, and reconnect (with back-off) after a network drop until the end is final.

import { PublishConnection, ReceiveConnection } from "./peers.js";
import { PROTOCOL_VERSION, Signaling, signalingUrl } from "./signaling.js";
import { FINAL_ERRORS, WAITING_FOR_HOMESERVER } from "./words.js";

const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000];
const JOIN_TIMEOUT_MS = 15000;

/**
 * States: "connecting" → "joined" ⇄ "reconnecting", then one of the final states
 * "left", "ended" (see `endReason`).
 *
 * `view` is told everything shown (see ui.js, MeetingView).
 */
export class Session {
  constructor({ meetingId, auth, media, view, displayName }) {
    this.meetingId = meetingId;
    this.auth = auth;
    this.media = media;
    this.view = view;
    this.displayName = displayName;
    this.state = "idle";
    this.endReason = null;
    this.self = null;
    this.participants = new Map(); // the others, by participant id, in joining order
    this.remoteTracks = [];
    this.activeSpeaker = null;
    this.handRaised = false;
    this.signaling = null;
    this.publish = null;
    this.receive = null;
    this.generation = 0; // callbacks of an older connection attempt are ignored
    this.failures = 0;
    this.retryTimer = null;
    this.joinTimer = null;
    this.waiting = null; // while reconnecting: what we wait for, in words, if not the network
  }

  start() {
    this.connect();
  }

  setState(state) {
    this.state = state;
    this.view.setConnection(state, this.waiting);
  }

  async connect() {
    const generation = ++this.generation;
    const current = () => generation === this.generation && !this.endReason;
    this.setState(this.failures === 0 ? "connecting" : "reconnecting");
    let credentials;
    try {
      credentials = await this.auth.credentials();
    } catch (error) {
      if (current()) this.end("signin_failed", error.message);
      return;
    }
    if (!current()) return;
    const signaling = new Signaling(signalingUrl(this.meetingId), {
      onMessage: (message) => current() && this.onMessage(message),
      onClose: (reason) => current() && this.drop(`signaling ${reason}`),
    });
    this.signaling = signaling;
    try {
      await signaling.open();
    } catch (error) {
      if (current()) this.drop(error.message);
      return;
    }
    if (!current()) {
      signaling.close();
      return;
    }
    const join = { type: "join", version: PROTOCOL_VERSION, auth: credentials };
    if (this.displayName) join.display_name = this.displayName.slice(0, 100);
    signaling.send(join);
    this.joinTimer = setTimeout(() => current() && this.drop("no answer to join"), JOIN_TIMEOUT_MS);
  }

  send(message) {
    return this.signaling?.send(message) ?? false;
  }

  onMessage(message) {
    const handler = HANDLERS[message.type];
    if (handler) handler.call(this, message);
  }

  onJoined(message) {
    clearTimeout(this.joinTimer);
    const reconnected = this.failures > 0;
    this.failures = 0;
    this.waiting = null;
    this.self = {
      participant_id: message.participant_id,
      user_id: message.user_id,
      display_name: message.display_name,
      avatar_url: message.avatar_url ?? null,
      media_token: message.media_token ?? null, // lets the page fetch avatars (stage.js)
      role: message.role,
      audio_muted: !this.micOn(),
      video_muted: !this.cameraOn(),
      hand_raised: this.handRaised,
    };
    this.participants = new Map();
    for (const participant of message.participants ?? []) {
      this.participants.set(participant.participant_id, participant);
    }
    this.setState("joined");
    this.view.joined(this.self, [...this.participants.values()], message.meeting, reconnected);
    if (typeof message.active_speaker === "string") {
      this.activeSpeaker = message.active_speaker;
      this.view.setActiveSpeaker(this.activeSpeaker);
    }
    this.startPeers(message.ice_servers);
    this.sendMute();
    if (this.handRaised) this.send({ type: "hand", raised: true });
  }

  startPeers(iceServers) {
    const generation = this.generation;
    const failed = (reason) => generation === this.generation && !this.endReason && this.drop(reason);
    const send = (message) => generation === this.generation && this.send(message);
    this.iceServers = iceServers;
    this.receive = new ReceiveConnection(iceServers, send, (tracks) => {
      this.remoteTracks = tracks;
      this.view.setRemoteTracks(tracks);
    }, failed);
    this.publish = new PublishConnection(iceServers, send, failed);
    let sending = false;
    for (const source of ["microphone", "camera"]) {
      const track = this.media.tracks[source];
      if (track) {
        this.publish.attach(source, track, this.media.stream);
        sending = true;
      }
    }
    if (this.media.screen) {
      this.publish.attach("screen", this.media.screen, this.media.stream);
      sending = true;
    }
    this.view.setLocalMedia(this.media);
    if (sending) this.negotiated(this.publish.negotiate());
  }

  /** Reports a failed publish negotiation in words (the connection carries on). */
  negotiated(promise) {
    return promise.catch((error) => {
      if (this.state === "joined") {
        this.view.alert(`Your camera, microphone or screen could not be sent: ${error.message}`);
      }
    });
  }

  onError(message) {
    const code = String(message.code);
    const words = typeof message.message === "string" ? message.message : "";
    if (FINAL_ERRORS.has(code)) {
      this.end(code, words);
    } else if (code === "reconnect") {
      // The server ends this session but the meeting goes on: join again.
      this.drop(words || "the server asked to reconnect");
    } else if (code === "unavailable") {
      // The user's homeserver could not confirm the sign-in (down, slow): it may be back
      // soon, so wait for it and join again rather than give up.
      this.drop(words || "the homeserver could not be reached", WAITING_FOR_HOMESERVER);
    } else if (message.in_reply_to === "publish") {
      this.publish?.refuse(words || "refused by the server");
    } else if (this.state !== "joined") {
      // Errors before `joined` close the socket; only a server fault is worth a retry.
      if (code === "internal") this.drop(words);
      else this.end("failed", words);
    } else {
      this.view.alert(words || "The meeting server reported an error.");
    }
  }

  /** The connection dropped: tear down and try again after a back-off. `waiting` says
   * what the page waits for, when it is not the network. */
  drop(reason, waiting = null) {
    if (this.endReason) return;
    console.info("Meeting connection lost:", reason);
    this.teardown();
    this.failures += 1;
    const delay = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length) - 1];
    this.waiting = waiting;
    this.setState("reconnecting");
    this.retryTimer = setTimeout(() => this.connect(), delay * (0.8 + Math.random() * 0.4));
  }

  teardown() {
    this.generation += 1;
    clearTimeout(this.joinTimer);
    clearTimeout(this.retryTimer);
    this.signaling?.close();
    this.publish?.close();
    this.receive?.close();
    this.signaling = this.publish = this.receive = null;
    this.remoteTracks = [];
    this.activeSpeaker = null;
    this.view.clearMeeting();
  }

  /** The end for good: no more reconnects. */
  end(reason, detail = "") {
    if (this.endReason) return;
    this.teardown();
    this.endReason = reason;
    this.media.stop();
    this.setState(reason === "left" ? "left" : "ended");
    this.view.ended(reason, detail);
  }

  leave() {
    this.send({ type: "leave" });
    this.end("left");
  }

  micOn() {
    return Boolean(this.media.tracks.microphone) && this.media.wanted.microphone;
  }

  cameraOn() {
    return Boolean(this.media.tracks.camera) && this.media.wanted.camera;
  }

  sendMute() {
    const audio = !this.micOn();
    const video = !this.cameraOn();
    this.send({ type: "mute", audio, video });
    if (this.self) {
      this.self = { ...this.self, audio_muted: audio, video_muted: video };
      this.view.updateSelf(this.self);
    }
    this.view.setLocalMedia(this.media);
  }

  /** Turns the microphone or camera on or off; opens the device if there is none yet. */
  async toggle(source) {
    if (this.media.tracks[source]) {
      this.media.setEnabled(source, !this.media.wanted[source]);
    } else {
      this.media.wanted[source] = true;
      const track = await this.media.open(source);
      if (!track) {
        this.view.alert(this.media.problems[source]);
        return;
      }
      if (this.publish) await this.negotiated(this.publish.setTrack(source, track, this.media.stream));
    }
    this.sendMute();
  }

  async toggleScreen() {
    if (this.media.screen) {
      await this.stopScreen();
      return;
    }
    let track;
    try {
      track = await this.media.startScreen((ended) => {
        if (this.media.screen === ended) this.stopScreen();
      });
    } catch (error) {
      this.view.alert(error.message);
      return;
    }
    this.view.setLocalMedia(this.media);
    this.view.announce("You are sharing your screen.");
    if (this.publish) await this.negotiated(this.publish.setTrack("screen", track, this.media.stream));
  }

  async stopScreen() {
    this.media.stopScreen();
    this.view.setLocalMedia(this.media);
    this.view.announce("You stopped sharing your screen.");
    if (this.publish) await this.negotiated(this.publish.setTrack("screen", null));
  }

  toggleHand() {
    this.handRaised = !this.handRaised;
    this.send({ type: "hand", raised: this.handRaised });
    if (this.self) {
      this.self = { ...this.self, hand_raised: this.handRaised };
      this.view.updateSelf(this.self);
    }
  }

  /** Which participant each receiving mid belongs to (for audio levels). */
  midOwners() {
    return new Map(
      this.remoteTracks.filter((t) => t.kind === "audio").map((t) => [t.mid, t.participantId]),
    );
  }
}

const HANDLERS = {
  joined: Session.prototype.onJoined,
  publish_answer(message) {
    this.publish?.acceptAnswer(message.sdp);
  },
  offer(message) {
    const receive = this.receive;
    receive?.handleOffer(message.sdp).catch((error) => {
      if (this.receive === receive) this.drop(`the server's offer failed: ${error.message}`);
    });
  },
  participant_joined({ participant }) {
    if (!participant || participant.participant_id === this.self?.participant_id) return;
    this.participants.set(participant.participant_id, participant);
    this.view.participantJoined(participant);
  },
  participant_updated({ participant }) {
    if (!participant) return;
    if (participant.participant_id === this.self?.participant_id) {
      this.self = { ...this.self, display_name: participant.display_name, role: participant.role };
      this.view.updateSelf(this.self);
      return;
    }
    const before = this.participants.get(participant.participant_id);
    this.participants.set(participant.participant_id, participant);
    this.view.participantUpdated(participant, before);
  },
  participant_left({ participant_id: participantId }) {
    const participant = this.participants.get(participantId);
    if (!participant) return;
    this.participants.delete(participantId);
    this.view.participantLeft(participant);
  },
  track_added(message) {
    this.view.trackAnnounced(message, true);
  },
  track_removed(message) {
    this.view.trackAnnounced(message, false);
  },
  active_speaker({ participant_id: participantId }) {
    this.activeSpeaker = participantId ?? null;
    this.view.setActiveSpeaker(this.activeSpeaker);
  },
  capture_changed(message) {
    this.view.setCapture(message);
  },
  caption({ participant_id: participantId, text }) {
    if (typeof participantId === "string" && typeof text === "string") {
      this.view.caption(participantId, text);
    }
  },
  captions_status({ limited, message }) {
    this.view.setCaptionsStatus(limited === true, typeof message === "string" ? message : "");
  },
  meeting_ended() {
    this.end("meeting_ended");
  },
  pong() {},

  /** Fresh TURN credentials (the old ones are about to expire). */
  ice_servers(message) {
    if (!Array.isArray(message.ice_servers)) return;
    this.iceServers = message.ice_servers;
    for (const connection of [this.publish, this.receive]) {
      connection?.setIceServers(message.ice_servers);
    }
  },
  error: Session.prototype.onError,
};
