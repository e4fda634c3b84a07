// The two peer connections of a participant (docs/protocol.md, "Signaling"):
// publish (we offer our tracks, send-only) and receive (the server offers the others').
// No trickle ICE: every offer and answer goes out once gathering is complete.

import { isSending, mediaSections } from "./sdp.js";

const GATHERING_TIMEOUT_MS = 5000;
const PUBLISH_ANSWER_TIMEOUT_MS = 20000;

function newPeerConnection(iceServers) {
  // Only the servers the bridge gave us: never a browser or public default.
  return new RTCPeerConnection({
    iceServers: Array.isArray(iceServers) ? iceServers : [],
    bundlePolicy: "max-bundle",
    rtcpMuxPolicy: "require",
  });
}

/** New ICE servers (fresh TURN credentials) for a connection that is already up. */
function updateIceServers(pc, iceServers) {
  if (!Array.isArray(iceServers) || pc.signalingState === "closed") return;
  try {
    pc.setConfiguration({ ...pc.getConfiguration(), iceServers });
  } catch (error) {
    console.warn("Could not renew the ICE servers", error);
  }
}

/** Resolves when ICE gathering is complete (or after `timeoutMs`, with what was found). */
export function iceGatheringComplete(pc, timeoutMs = GATHERING_TIMEOUT_MS) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

function watchFailure(pc, name, onFailed) {
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "failed") onFailed(`the ${name} connection failed`);
  });
}

/** Put VP8 first: the server forwards what publishers send, and every browser decodes VP8. */
function preferVp8(transceiver) {
  if (typeof transceiver.setCodecPreferences !== "function") return;
  for (const capabilities of [RTCRtpReceiver, RTCRtpSender].map((c) => c.getCapabilities?.("video"))) {
    const codecs = capabilities?.codecs ?? [];
    const vp8 = codecs.filter((c) => c.mimeType.toLowerCase() === "video/vp8");
    if (!vp8.length) continue;
    try {
      transceiver.setCodecPreferences([...vp8, ...codecs.filter((c) => !vp8.includes(c))]);
      return;
    } catch (error) {
      console.warn("VP8 preference not applied:", error);
    }
  }
}

function serialize(owner, task) {
  const run = owner.queue.then(task);
  owner.queue = run.catch(() => {});
  return run;
}

/** Our camera, microphone and screen, offered to the server (`publish` / `publish_answer`). */
export class PublishConnection {
  /**
   * @param {object[]} iceServers from `joined`
   * @param {(message: object) => boolean} send sends a signaling message
   * @param {(reason: string) => void} onFailed
   */
  constructor(iceServers, send, onFailed) {
    this.pc = newPeerConnection(iceServers);
    this.send = send;
    this.slots = new Map(); // source -> RTCRtpTransceiver
    this.queue = Promise.resolve();
    this.answerWaiter = null;
    watchFailure(this.pc, "publish", onFailed);
  }

  /** Fresh TURN credentials from the server (`ice_servers`). */
  setIceServers(iceServers) {
    updateIceServers(this.pc, iceServers);
  }

  /** Whether `source` is being sent. */
  has(source) {
    return this.slots.has(source);
  }

  /**
   * Sends `track` as `source` from now on (a null track stops sending it). Renegotiates when
   * the set of sent sources changes; swapping one device for another needs no renegotiation.
   */
  async setTrack(source, track, stream) {
    const transceiver = this.slots.get(source);
    if (track && transceiver) {
      await transceiver.sender.replaceTrack(track);
      return;
    }
    if (track) {
      this.attach(source, track, stream);
    } else if (transceiver) {
      // The section stays (inactive) and is reused by the next track of its kind: a stopped
      // transceiver's m-line would leave the BUNDLE group.
      await transceiver.sender.replaceTrack(null);
      transceiver.direction = "inactive";
      this.slots.delete(source);
    } else {
      return;
    }
    await this.negotiate();
  }

  /** Adds tracks without negotiating; call `negotiate()` after. */
  attach(source, track, stream) {
    const busy = new Set(this.slots.values());
    let transceiver = this.pc
      .getTransceivers()
      .find((t) => !busy.has(t) && t.direction === "inactive" && t.receiver.track.kind === track.kind);
    if (transceiver) {
      transceiver.sender.replaceTrack(track).catch((error) => console.warn("replaceTrack:", error));
      transceiver.sender.setStreams?.(stream);
      transceiver.direction = "sendonly";
    } else {
      transceiver = this.pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    }
    if (track.kind === "video") preferVp8(transceiver);
    this.slots.set(source, transceiver);
  }

  /** Offers the current tracks and applies the server's answer; one negotiation at a time. */
  negotiate() {
    return serialize(this, () => this.offer());
  }

  async offer() {
    if (this.pc.signalingState === "closed") return;
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await iceGatheringComplete(this.pc);
    const sources = {};
    for (const [source, transceiver] of this.slots) {
      if (transceiver.mid !== null) sources[transceiver.mid] = source;
    }
    const answer = new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error("The server did not answer our media offer.")),
        PUBLISH_ANSWER_TIMEOUT_MS,
      );
      this.answerWaiter = {
        resolve: (sdp) => { clearTimeout(timer); resolve(sdp); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      };
    });
    if (!this.send({ type: "publish", sdp: this.pc.localDescription.sdp, sources })) {
      this.answerWaiter.reject(new Error("Not connected to the meeting server."));
    }
    try {
      const sdp = await answer;
      await this.pc.setRemoteDescription({ type: "answer", sdp });
    } catch (error) {
      if (this.pc.signalingState === "have-local-offer") {
        await this.pc.setLocalDescription({ type: "rollback" });
      }
      throw error;
    } finally {
      this.answerWaiter = null;
    }
  }

  /** The server's `publish_answer`. */
  acceptAnswer(sdp) {
    this.answerWaiter?.resolve(sdp);
  }

  /** The server refused our last `publish` (an `error` with `in_reply_to: "publish"`). */
  refuse(message) {
    this.answerWaiter?.reject(new Error(message));
  }

  close() {
    this.answerWaiter?.reject(new Error("closed"));
    this.pc.close();
  }
}

/** The source in a forwarded track's msid track id, `<participant id>.<source>`. */
function sourceOf(streamId, trackId) {
  const prefix = `${streamId}.`;
  return trackId.startsWith(prefix) ? trackId.slice(prefix.length) : trackId;
}

/**
 * The others' tracks, offered by the server (`offer` / `answer`). After each offer,
 * `onTracks` gets every track being received: `{participantId, source, kind, track, mid}`,
 * from the offer's `a=msid:<participant id> <participant id>.<source>` (the same ids as
 * the track event's `streams[0].id` and the msid track id; read from the SDP because a
 * reused m-line keeps its first MediaStreamTrack object and id).
 */
export class ReceiveConnection {
  constructor(iceServers, send, onTracks, onFailed) {
    this.pc = newPeerConnection(iceServers);
    this.send = send;
    this.onTracks = onTracks;
    this.queue = Promise.resolve();
    this.current = [];
    watchFailure(this.pc, "receive", onFailed);
  }

  /** Fresh TURN credentials from the server (`ice_servers`). */
  setIceServers(iceServers) {
    updateIceServers(this.pc, iceServers);
  }

  handleOffer(sdp) {
    return serialize(this, () => this.answer(sdp));
  }

  async answer(sdp) {
    if (this.pc.signalingState === "closed") return;
    await this.pc.setRemoteDescription({ type: "offer", sdp });
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    await iceGatheringComplete(this.pc);
    this.send({ type: "answer", sdp: this.pc.localDescription.sdp });
    this.current = this.receivedTracks(sdp);
    this.onTracks(this.current);
  }

  receivedTracks(sdp) {
    const sections = new Map(mediaSections(sdp).map((s) => [s.mid, s]));
    const tracks = [];
    for (const transceiver of this.pc.getTransceivers()) {
      const section = sections.get(transceiver.mid);
      if (!section || !isSending(section) || !section.streamId || !section.trackId) continue;
      tracks.push({
        participantId: section.streamId,
        source: sourceOf(section.streamId, section.trackId),
        kind: section.kind,
        track: transceiver.receiver.track,
        mid: transceiver.mid,
      });
    }
    return tracks;
  }

  close() {
    this.pc.close();
  }
}
