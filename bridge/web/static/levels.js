// Who is speaking right now, from the audio levels WebRTC reports (getStats), so that
// tiles light up without decoding anything ourselves. The server's `active_speaker`
// picks one person; this shows everyone heard.

const POLL_MS = 400;
const SPEAKING_LEVEL = 0.04; // audioLevel is 0..1, linear

export class SpeakingMonitor {
  /**
   * @param {() => {receive: ?RTCPeerConnection, publish: ?RTCPeerConnection,
   *   midOwners: Map<string, string>, localId: ?string, localMicOn: boolean}} sources
   * @param {(speaking: Set<string>) => void} onChange
   */
  constructor(sources, onChange) {
    this.sources = sources;
    this.onChange = onChange;
    this.last = "";
    this.timer = null;
  }

  start() {
    this.stop();
    this.timer = setInterval(() => this.poll().catch(() => {}), POLL_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async poll() {
    const { receive, publish, midOwners, localId, localMicOn } = this.sources();
    const speaking = new Set();
    if (receive && receive.connectionState !== "closed") {
      for (const report of (await receive.getStats()).values()) {
        if (report.type !== "inbound-rtp" || report.kind !== "audio") continue;
        const owner = midOwners.get(report.mid);
        if (owner && report.audioLevel > SPEAKING_LEVEL) speaking.add(owner);
      }
    }
    if (publish && localId && localMicOn && publish.connectionState !== "closed") {
      for (const report of (await publish.getStats()).values()) {
        if (report.type === "media-source" && report.kind === "audio" && report.audioLevel > SPEAKING_LEVEL) {
          speaking.add(localId);
        }
      }
    }
    const key = [...speaking].sort().join(" ");
    if (key !== this.last) {
      this.last = key;
      this.onChange(speaking);
    }
  }
}
