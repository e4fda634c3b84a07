// The user's own media: microphone and camera (with device choice), and the screen.

const CAMERA = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 } };
const MICROPHONE = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
const SCREEN = { video: { frameRate: { ideal: 15, max: 15 } }, audio: false };

/** Plain words for a getUserMedia / getDisplayMedia failure. */
export function describeMediaError(error, what) {
  switch (error?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return `The browser was not allowed to use your ${what}. Allow it in the address bar ` +
        "(or in Element's settings), or join without it.";
    case "NotFoundError":
    case "OverconstrainedError":
      return `No ${what} was found.`;
    case "NotReadableError":
    case "AbortError":
      return `Your ${what} could not be started: another program may be using it.`;
    default:
      return `Your ${what} could not be used (${error?.message || error}).`;
  }
}

export class LocalMedia {
  constructor() {
    // The stream every published track belongs to (its id means nothing to the server).
    this.stream = new MediaStream();
    this.tracks = { microphone: null, camera: null };
    this.wanted = { microphone: true, camera: true }; // on/off as the user chose
    this.devices = { microphone: "", camera: "" }; // chosen deviceIds ("" = default)
    this.problems = { microphone: null, camera: null }; // words, when a device failed
    this.screen = null;
  }

  /** Opens microphone and camera; what fails is recorded in `problems`, never thrown. */
  async start() {
    if (!navigator.mediaDevices?.getUserMedia) {
      const words = "This browser cannot use a camera or microphone here (a secure page is needed).";
      this.problems = { microphone: words, camera: words };
      return;
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: this.constraints("microphone"),
        video: this.constraints("camera"),
      });
      for (const track of stream.getTracks()) this.adopt(track.kind === "audio" ? "microphone" : "camera", track);
    } catch {
      // One device may work without the other: ask for each alone to say which failed.
      await Promise.all([this.open("microphone"), this.open("camera")]);
    }
  }

  constraints(source) {
    const base = source === "microphone" ? MICROPHONE : CAMERA;
    const deviceId = this.devices[source];
    return deviceId ? { ...base, deviceId: { exact: deviceId } } : base;
  }

  /** Opens (or reopens, on another device) one source; returns its track or null. */
  async open(source) {
    const kind = source === "microphone" ? "audio" : "video";
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ [kind]: this.constraints(source) });
      const track = stream.getTracks()[0];
      this.adopt(source, track);
      return track;
    } catch (error) {
      this.problems[source] = describeMediaError(error, source === "microphone" ? "microphone" : "camera");
      return null;
    }
  }

  adopt(source, track) {
    const old = this.tracks[source];
    if (old) {
      this.stream.removeTrack(old);
      old.stop();
    }
    track.enabled = this.wanted[source];
    this.tracks[source] = track;
    this.problems[source] = null;
    this.stream.addTrack(track);
  }

  /** Switches `source` to another device; returns the new track (null if it failed). */
  async useDevice(source, deviceId) {
    this.devices[source] = deviceId;
    return this.open(source);
  }

  /** Turns a source on or off without giving up the device. */
  setEnabled(source, enabled) {
    this.wanted[source] = enabled;
    if (this.tracks[source]) this.tracks[source].enabled = enabled;
  }

  /** Devices to choose from: `{microphone: [{deviceId, label}], camera: [...]}`. */
  async listDevices() {
    const result = { microphone: [], camera: [] };
    if (!navigator.mediaDevices?.enumerateDevices) return result;
    const devices = await navigator.mediaDevices.enumerateDevices();
    for (const device of devices) {
      const source = { audioinput: "microphone", videoinput: "camera" }[device.kind];
      if (!source || !device.deviceId) continue;
      const number = result[source].length + 1;
      result[source].push({ deviceId: device.deviceId, label: device.label || `${source} ${number}` });
    }
    return result;
  }

  /** The device a source uses now. */
  currentDevice(source) {
    return this.tracks[source]?.getSettings().deviceId ?? this.devices[source];
  }

  /** Asks the user for a screen, window or tab; returns its video track. Throws words. */
  async startScreen(onEnded) {
    if (!navigator.mediaDevices?.getDisplayMedia) {
      throw new Error("This browser cannot share its screen from here.");
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia(SCREEN);
    } catch (error) {
      if (error?.name === "NotAllowedError") throw new Error("Screen sharing was cancelled or not allowed.");
      throw new Error(describeMediaError(error, "screen"));
    }
    const track = stream.getVideoTracks()[0];
    track.contentHint = "detail";
    // The browser's own "Stop sharing" button ends the track.
    track.addEventListener("ended", () => onEnded(track));
    this.screen = track;
    return track;
  }

  stopScreen() {
    this.screen?.stop();
    this.screen = null;
  }

  stop() {
    for (const track of this.stream.getTracks()) track.stop();
    this.stopScreen();
  }
}
