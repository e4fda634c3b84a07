// Before joining: camera and microphone preview, device choice, the name others see.

import { HOW_TO_GET_A_LINK } from "./words.js";

const $ = (id) => document.getElementById(id);
const NAME_KEY = "visio.displayName";

function rememberedName() {
  try {
    return localStorage.getItem(NAME_KEY) ?? "";
  } catch {
    return ""; // storage may be blocked in a third-party frame
  }
}

function rememberName(value) {
  try {
    localStorage.setItem(NAME_KEY, value);
  } catch {
    // not remembered: nothing else depends on it
  }
}

function setToggle(button, on) {
  button.setAttribute("aria-pressed", on ? "true" : "false");
}

export class Prejoin {
  /**
   * @param {{media: import("./media.js").LocalMedia, auth: ?object, title: string,
   *   suggestedName: string}} options
   */
  constructor({ media, auth, title, suggestedName }) {
    this.media = media;
    this.auth = auth;
    this.title = title;
    this.suggestedName = suggestedName;
    this.authReady = false;
    this.mediaReady = false;
  }

  /** Shows the screen; resolves with `{displayName}` when the user joins. */
  run() {
    $("prejoin-meeting").textContent = this.title;
    const nameInput = $("display-name");
    nameInput.value = this.suggestedName || rememberedName();
    this.bindToggles();
    this.bindDevices();
    this.checkAuth();
    this.startMedia();
    return new Promise((resolve) => {
      const join = (withoutMedia) => {
        if (!this.authReady || !this.mediaReady) return;
        if (withoutMedia) this.dropMedia();
        const displayName = nameInput.value.trim();
        if (displayName) rememberName(displayName);
        $("join-button").disabled = true;
        $("join-without-media").disabled = true;
        resolve({ displayName });
      };
      $("prejoin-form").onsubmit = (event) => {
        event.preventDefault();
        join(false);
      };
      $("join-without-media").onclick = () => join(true);
    });
  }

  status(text) {
    $("prejoin-status").textContent = text;
  }

  async checkAuth() {
    const problem = $("auth-problem");
    if (!this.auth) {
      problem.textContent = HOW_TO_GET_A_LINK;
      problem.hidden = false;
      return;
    }
    if (this.auth.kind === "openid") {
      this.auth.onWaiting = () => this.status("Confirm in Element that the meeting may know who you are.");
      this.status("Asking Element who you are…");
      try {
        await this.auth.credentials();
      } catch (error) {
        this.status("");
        problem.textContent = `${error.message} Reload the widget to try again.`;
        problem.hidden = false;
        return;
      }
      this.status("");
    }
    this.authReady = true;
    this.enableJoin();
  }

  enableJoin() {
    const ready = this.authReady && this.mediaReady;
    $("join-button").disabled = !ready;
    $("join-without-media").disabled = !ready;
  }

  async startMedia() {
    this.status("Starting your camera and microphone…");
    await this.media.start();
    this.status("");
    this.showPreview();
    await this.fillDevices();
    this.mediaReady = true;
    this.enableJoin();
  }

  showPreview() {
    const camera = this.media.tracks.camera;
    const showing = Boolean(camera) && this.media.wanted.camera;
    const video = $("preview-video");
    video.srcObject = camera ? new MediaStream([camera]) : null;
    video.hidden = !showing;
    $("preview-empty").hidden = showing;
    $("preview-empty").textContent = camera ? "Camera off" : "No camera";
    setToggle($("preview-mic"), Boolean(this.media.tracks.microphone) && this.media.wanted.microphone);
    setToggle($("preview-camera"), showing);
    const problems = [this.media.problems.microphone, this.media.problems.camera].filter(Boolean);
    const unique = [...new Set(problems)];
    $("media-problem").textContent = unique.join(" ");
    $("media-problem").hidden = unique.length === 0;
    $("join-without-media").hidden = unique.length === 0;
  }

  bindToggles() {
    for (const [id, source] of [["preview-mic", "microphone"], ["preview-camera", "camera"]]) {
      $(id).onclick = async () => {
        if (!this.media.tracks[source]) {
          this.media.wanted[source] = true;
          await this.media.open(source);
          await this.fillDevices();
        } else {
          this.media.setEnabled(source, !this.media.wanted[source]);
        }
        this.showPreview();
      };
    }
  }

  bindDevices() {
    for (const [id, source] of [["audio-device", "microphone"], ["video-device", "camera"]]) {
      $(id).onchange = async (event) => {
        await this.media.useDevice(source, event.target.value);
        this.showPreview();
      };
    }
  }

  async fillDevices() {
    const devices = await this.media.listDevices();
    for (const [id, source] of [["audio-device", "microphone"], ["video-device", "camera"]]) {
      const select = $(id);
      const options = devices[source].map(({ deviceId, label }) => {
        const option = document.createElement("option");
        option.value = deviceId;
        option.textContent = label;
        return option;
      });
      if (!options.length) {
        const none = document.createElement("option");
        none.value = "";
        none.textContent = `No ${source} found`;
        options.push(none);
      }
      select.replaceChildren(...options);
      select.disabled = devices[source].length === 0;
      const current = this.media.currentDevice(source);
      if (current) select.value = current;
    }
  }

  /** "Join without camera and microphone": give the devices back. */
  dropMedia() {
    for (const source of ["microphone", "camera"]) {
      const track = this.media.tracks[source];
      if (track) {
        this.media.stream.removeTrack(track);
        track.stop();
        this.media.tracks[source] = null;
      }
    }
  }
}
